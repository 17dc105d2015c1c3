"""The ledger: movements (single, bulk, transfers), balances kept with them, history, stock
and the drift check."""

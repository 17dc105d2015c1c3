"""The event log: what changed in a tenant, written by the transaction that changed it."""

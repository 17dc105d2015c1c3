"""Inventory: the catalogue, the ledger and reservations, each a sub-package with the same
file roles (endpoints, service, repository); models, schemas and exceptions are shared."""

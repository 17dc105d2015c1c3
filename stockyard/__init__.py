"""Stockyard: a multi-tenant inventory API walled off by PostgreSQL row-level security."""

__version__ = "0.1.0"

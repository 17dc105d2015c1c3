"""Operating Stockyard: a tenant's data exported or erased on request, and backups."""

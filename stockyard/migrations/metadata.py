"""Every domain's tables, imported so Alembic and the schema-drift test see one MetaData."""

from stockyard.auth import models as auth_models  # noqa: F401
from stockyard.core import audit_trail  # noqa: F401 - the audit_event table
from stockyard.core.models import Base
from stockyard.idempotency import models as idempotency_models  # noqa: F401
from stockyard.inventory import models as inventory_models  # noqa: F401
from stockyard.tenants import models as tenant_models  # noqa: F401

target_metadata = Base.metadata

"""Every domain's tables, imported so Alembic and the schema-drift test see one MetaData."""

from stockyard.audit import models as audit_models  # noqa: F401
from stockyard.auth import models as auth_models  # noqa: F401
from stockyard.core.models import Base
from stockyard.idempotency import models as idempotency_models  # noqa: F401
from stockyard.inventory import models as inventory_models  # noqa: F401
from stockyard.tenants import models as tenant_models  # noqa: F401

target_metadata = Base.metadata

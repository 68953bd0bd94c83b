"""The migrations build exactly the schema the models describe, on both databases."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from fhir_gateway.access import models as access_models  # noqa: F401
from fhir_gateway.audit import models as audit_models  # noqa: F401
from fhir_gateway.auth import models as auth_models  # noqa: F401
from fhir_gateway.db import Base
from fhir_gateway.feeds import models as feed_models  # noqa: F401
from fhir_gateway.identity import models as identity_models  # noqa: F401
from fhir_gateway.store import models as store_models  # noqa: F401


def test_models_and_migrations_agree(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []

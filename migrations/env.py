"""Alembic environment: the URL comes from the one Settings (or the caller's connection)."""

from alembic import context
from sqlalchemy import Connection

from coordination import models as coordination_models  # noqa: F401  (registers the tables)
from fhir_gateway.access import models as access_models  # noqa: F401  (registers the tables)
from fhir_gateway.audit import models as audit_models  # noqa: F401  (registers the tables)
from fhir_gateway.auth import models as auth_models  # noqa: F401  (registers the tables)
from fhir_gateway.db import Base, create_engine_for
from fhir_gateway.feeds import models as feed_models  # noqa: F401  (registers the tables)
from fhir_gateway.identity import models as identity_models  # noqa: F401  (registers the tables)
from fhir_gateway.store import models  # noqa: F401  (registers the tables)

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        version_table_schema=None,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        from carejoin.settings import get_settings

        url = get_settings().database_url
    engine = create_engine_for(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()

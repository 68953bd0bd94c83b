"""Applying the Alembic migrations, safely from several replicas at once.

On PostgreSQL the upgrade runs under a transaction-level advisory lock, so replicas that
start together wait for the first one instead of racing to create the same tables.
"""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text


def _migrations_dir() -> Path:
    """The Alembic scripts: beside the packages in a checkout, or in the working directory of
    an installed deployment (the Dockerfile copies them to /app/migrations)."""
    for candidate in (
        Path(__file__).resolve().parent.parent / "migrations",
        Path.cwd() / "migrations",
    ):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError(
        "The migrations folder was not found beside the code or in the working directory"
    )


ADVISORY_LOCK_KEY = 0x6361726A  # "carj"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    config.set_main_option("file_template", "%%(year)d-%%(month).2d-%%(day).2d_%%(slug)s")
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (idempotent)."""
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


class SchemaBehind(RuntimeError):
    """The database lacks migrations this version of the code needs."""


def missing(engine: Engine) -> list[str]:
    """The revisions this code has that the database has not applied, oldest first. A
    database at a revision these scripts do not know (a newer version's) lacks nothing
    this code can name: an older version may run beside a newer schema during a rollout."""
    script = ScriptDirectory.from_config(alembic_config())
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    known = {r.revision for r in script.walk_revisions()}
    if len(current) > 1 or any(revision not in known for revision in current):
        return []
    lower = current[0] if current else "base"
    return [r.revision for r in reversed(list(script.iterate_revisions("heads", lower)))]


def require_current(engine: Engine) -> None:
    """SchemaBehind unless the database has every migration of this code (checked when the
    service starts, so that it refuses to run rather than fail request by request)."""
    lacking = missing(engine)
    if lacking:
        raise SchemaBehind(
            f"The database lacks {len(lacking)} migration(s) of this version "
            f"({', '.join(lacking)}): run 'carejoin db upgrade' (or 'carejoin serve', which "
            "applies them) before starting the service"
        )

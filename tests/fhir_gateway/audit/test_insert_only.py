"""The database itself refuses to rewrite the audit trail, on both backends."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from fhir_gateway import migrate
from fhir_gateway.audit import sealer
from fhir_gateway.audit.models import INSERT_ONLY_TABLES
from fhir_gateway.db import create_engine_for
from tests.fhir_gateway.audit.records import add, record

# One column of each table to "change" (to itself: the trigger refuses any UPDATE).
COLUMN = {"audit_event": "detail", "audit_block": "hash", "audit_seal": "block_number"}


@pytest.fixture
def sealed(session: Session) -> None:
    """At least one row in each audit table."""
    add(session, record(detail="synthetic"))
    assert sealer.seal(session, now=datetime.now(UTC), block_size=10000) is not None


@pytest.mark.usefixtures("sealed")
@pytest.mark.parametrize("table", INSERT_ONLY_TABLES)
@pytest.mark.parametrize("verb", ["UPDATE", "DELETE"])
def test_update_and_delete_are_refused(session: Session, table: str, verb: str) -> None:
    before = session.scalar(select(func.count()).select_from(text(table)))
    statement = (
        f"UPDATE {table} SET {COLUMN[table]} = {COLUMN[table]}"
        if verb == "UPDATE"
        else f"DELETE FROM {table}"
    )
    with pytest.raises(DBAPIError, match="insert-only"), session.begin_nested():
        session.execute(text(statement))
    # The savepoint rolled back; the test's transaction and the rows are still there.
    assert session.scalar(select(func.count()).select_from(text(table))) == before


@pytest.mark.usefixtures("sealed")
def test_truncate_is_refused_on_postgresql(session: Session) -> None:
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    with pytest.raises(DBAPIError, match="insert-only"), session.begin_nested():
        session.execute(text("TRUNCATE audit_seal, audit_block, audit_event"))


def test_sqlite_keeps_the_sealed_trail_and_its_guards_across_migration_0018(
    tmp_path: Path,
) -> None:
    """SQLite rebuilds ``audit_seal`` to drop its key to the event: the rows, the index, the
    key to the block and the insert-only triggers all come through, both ways."""
    engine = create_engine_for(f"sqlite:///{tmp_path / 'before-0018.db'}")

    def state() -> tuple[list[tuple[int, int]], set[str], bool]:
        with engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(text("SELECT * FROM audit_seal ORDER BY 1"))]
            names = {
                r[0]
                for r in conn.execute(
                    text("SELECT name FROM sqlite_master WHERE tbl_name = 'audit_seal'")
                )
            }
            sql = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'audit_seal'")
            ).scalar_one()
        assert "REFERENCES audit_block" in sql
        return rows, names, "REFERENCES audit_event" in sql

    def refused() -> None:
        with Session(engine) as session:
            for statement in ("UPDATE audit_seal SET block_number = 1", "DELETE FROM audit_seal"):
                with pytest.raises(DBAPIError, match="insert-only"), session.begin_nested():
                    session.execute(text(statement))

    try:
        migrate.upgrade(engine, "0017")
        with Session(engine) as session, session.begin():
            add(session, record(detail="synthetic"), record(detail="synthetic"))
            assert sealer.seal(session, now=datetime.now(UTC), block_size=10000) == 1
        before, names, event_key = state()
        assert len(before) == 2
        assert event_key
        guards = {"audit_seal", "ix_audit_seal_block_number"} | {
            f"audit_seal_no_{verb}" for verb in ("update", "delete")
        }
        assert guards <= names

        migrate.upgrade(engine)
        after, names, event_key = state()
        assert after == before
        assert guards <= names
        assert not event_key
        refused()
        with Session(engine) as session:
            assert sealer.verify(session).intact

        config = migrate.alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0017")
        back, names, event_key = state()
        assert back == before
        assert guards <= names
        assert event_key
        refused()
    finally:
        engine.dispose()

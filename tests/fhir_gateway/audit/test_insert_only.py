"""The database itself refuses to rewrite the audit trail, on both backends."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from fhir_gateway.audit import sealer
from fhir_gateway.audit.models import INSERT_ONLY_TABLES
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

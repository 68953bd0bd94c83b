"""audit: seal rows without a foreign key to their event

Each seal row's foreign key to ``audit_event`` made PostgreSQL lock the event's row (``FOR KEY
SHARE``) as the block was sealed: every event row written a second time, more than doubling
the sealer's WAL (470 bytes an event against 204) and adding a third to its database time.
The key guarded nothing the trail does not guard already: events are insert-only (no row a
seal names can go), and ``carejoin audit verify`` counts each block's seal rows against the
events they name. The key to ``audit_block`` stays (a seal row naming no block would hide its
event from the unsealed count).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENT_KEY = "fk_audit_seal_event_pk_audit_event"
EVENT_KEY_SQL = f"CONSTRAINT {EVENT_KEY} FOREIGN KEY(event_pk) REFERENCES audit_event (pk)"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(EVENT_KEY, "audit_seal", type_="foreignkey")
    else:
        _rebuild_sqlite(with_event_key=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key(EVENT_KEY, "audit_seal", "audit_event", ["event_pk"], ["pk"])
    else:
        _rebuild_sqlite(with_event_key=True)


def _rebuild_sqlite(*, with_event_key: bool) -> None:
    """SQLite cannot drop a constraint: the table is rebuilt from its own definition, its
    rows copied, and its index and insert-only triggers made again (they go with the old
    table; dropping a table fires no trigger)."""
    bind = op.get_bind()
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'audit_seal'"
    ).scalar_one()
    body = sql[sql.index("(") + 1 : sql.rindex(")")]
    parts = [p.strip() for p in body.split(",")]
    parts = [p for p in parts if EVENT_KEY not in p]
    if with_event_key:
        parts.append(EVENT_KEY_SQL)
    op.execute("CREATE TABLE audit_seal_rebuilt (" + ", ".join(parts) + ")")
    op.execute(
        "INSERT INTO audit_seal_rebuilt (event_pk, block_number) "
        "SELECT event_pk, block_number FROM audit_seal"
    )
    op.execute("DROP TABLE audit_seal")
    op.execute("ALTER TABLE audit_seal_rebuilt RENAME TO audit_seal")
    op.execute("CREATE INDEX ix_audit_seal_block_number ON audit_seal (block_number)")
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER audit_seal_no_{verb.lower()} BEFORE {verb} ON audit_seal "
            f"BEGIN SELECT RAISE(ABORT, 'the audit trail is insert-only ({verb} on audit_seal)'); END"
        )

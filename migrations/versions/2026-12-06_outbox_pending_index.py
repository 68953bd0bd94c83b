"""outbox: index only the events still to dispatch

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

The dispatcher asks for the oldest pending events (``processed_at IS NULL ORDER BY pk``).
With an index over every event, PostgreSQL preferred walking the primary key and filtering,
which grew with the processed history (2 s per poll at three million events); a partial
index of the pending events keeps the poll an index read.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("processed_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_pending")
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["pk"],
        unique=False,
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_pending", table_name="outbox")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_pending", ["processed_at", "pk"], unique=False)

"""search index: no foreign key from an index row to its resource

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

Index rows are written only by the repository, in the transaction that writes the row of
the resource they index, and resource rows are never deleted; the per-row check of the key
cost about as much as writing the row (``fhir_gateway.store.models``).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("search_token", "search_string", "search_date", "search_reference", "search_quantity")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"fk_{table}_resource_pk_resource"), type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_foreign_key(
                op.f(f"fk_{table}_resource_pk_resource"),
                "resource",
                ["resource_pk"],
                ["pk"],
                ondelete="CASCADE",
            )

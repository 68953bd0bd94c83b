"""source systems: the registry of what sends data, and the clients that may send as each

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

One row per source system (one per organisation: the ODS code is unique), with its kind,
name and active flag; ``source_system_client`` lists the OAuth client ids that may send as
it (a client may send for several, an integration engine for the partnership).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "source_system",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("ods_code", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=140), nullable=False),
        sa.CheckConstraint(
            "kind IN ('gp', 'hospital', 'social-care', 'other')",
            name=op.f("ck_source_system_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_system")),
        sa.UniqueConstraint("ods_code", name=op.f("uq_source_system_ods_code")),
    )
    op.create_table(
        "source_system_client",
        sa.Column("client_id", sa.String(length=140), nullable=False),
        sa.Column("source_system_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_system_id"],
            ["source_system.id"],
            name=op.f("fk_source_system_client_source_system_id_source_system"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "client_id", "source_system_id", name=op.f("pk_source_system_client")
        ),
    )


def downgrade() -> None:
    op.drop_table("source_system_client")
    op.drop_table("source_system")

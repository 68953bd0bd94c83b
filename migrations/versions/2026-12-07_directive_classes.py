"""consent directives: the resource type a choice is narrowed to

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07

A directive derived from a ``Consent`` provision narrowed by ``class`` ("not my care plans to
the council") names the resource type it applies to. Null for a directive that names none,
which is every directive recorded before this revision (such a Consent was refused until
now), so nothing needs rewriting.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("consent_directive", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resource_class", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("consent_directive", schema=None) as batch_op:
        batch_op.drop_column("resource_class")

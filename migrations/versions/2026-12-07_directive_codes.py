"""consent directives: the code a choice is narrowed to

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07

A directive derived from a ``Consent`` provision narrowed by ``code`` ("not my depression
diagnosis, wherever it is recorded") names the coded concept it applies to, as a system and
a code matched against the resource's token index. Null for a directive that names none,
which is every directive recorded before this revision (such a Consent was refused until
now), so nothing needs rewriting.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("consent_directive", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code_system", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("code", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("consent_directive", schema=None) as batch_op:
        batch_op.drop_column("code")
        batch_op.drop_column("code_system")

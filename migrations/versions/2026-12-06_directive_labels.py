"""consent directives: the security label a choice is narrowed to

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

A directive derived from a ``Consent`` provision narrowed by ``securityLabel`` ("not my
mental health detail to the council") names the label it applies to: a sensitive-data
category (``mental_health``) or a confidentiality code (``R``, ``V``). Null for a directive
that names none, which is every directive recorded before this revision (such a Consent was
refused until now), so nothing needs rewriting.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("consent_directive", schema=None) as batch_op:
        batch_op.add_column(sa.Column("label", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("consent_directive", schema=None) as batch_op:
        batch_op.drop_column("label")

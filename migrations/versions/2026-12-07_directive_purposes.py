"""consent directives: the purpose of use a choice is narrowed to

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07

A directive derived from a ``Consent`` provision narrowed by ``purpose`` ("not for
case-finding") names the purpose of use it applies to (``TREAT``, ``BTG``, ``PATRQT``,
``CASEFIND``). Null for a directive that names none, which is every directive recorded before
this revision (such a Consent was refused until now), so nothing needs rewriting.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("consent_directive", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purpose", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("consent_directive", schema=None) as batch_op:
        batch_op.drop_column("purpose")

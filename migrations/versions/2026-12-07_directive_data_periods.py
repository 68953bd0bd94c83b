"""consent directives: the period of data a choice is narrowed to

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07

A directive derived from a ``Consent`` provision narrowed by ``dataPeriod`` ("not my records
from 2010 to 2015") names the period, as a closed range either end of which may be open,
matched against each resource's care date in the date index. Null (both) for a directive
that names none, which is every directive recorded before this revision (such a Consent was
refused until now), so nothing needs rewriting.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("consent_directive", schema=None) as batch_op:
        batch_op.add_column(sa.Column("data_from", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("data_to", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("consent_directive", schema=None) as batch_op:
        batch_op.drop_column("data_to")
        batch_op.drop_column("data_from")

"""identity: how many records carry each normalised family and first name

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06

Term-frequency adjustment of name agreement needs, when one record is matched against the
index, how many records carry its family name and its first name, and how many carry any.
``identity_name_count`` keeps those counts as rows to be summed (see
``identity.models.IdentityNameCount``). The counts of the records already filed are written
here from their stored features: one row per name, and one per field for the total.
"""

import json
from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIELDS = {"family_name": "family", "given_name": "given"}


def upgrade() -> None:
    table = op.create_table(
        "identity_name_count",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("field", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_identity_name_count")),
    )
    with op.batch_alter_table("identity_name_count", schema=None) as batch_op:
        batch_op.create_index("ix_identity_name_count_name", ["field", "value", "n"], unique=False)

    counts: Counter[tuple[str, str]] = Counter()
    bind = op.get_bind()
    for (features,) in bind.execute(sa.text("SELECT features FROM identity_record")):
        data = json.loads(features)
        for name, attribute in FIELDS.items():
            value = data.get(attribute)
            if value:
                counts[name, str(value)[:255]] += 1
                counts[name, ""] += 1
    rows = [{"field": f, "value": v, "n": n} for (f, v), n in sorted(counts.items())]
    for start in range(0, len(rows), 5000):
        op.bulk_insert(table, rows[start : start + 5000])


def downgrade() -> None:
    with op.batch_alter_table("identity_name_count", schema=None) as batch_op:
        batch_op.drop_index("ix_identity_name_count_name")
    op.drop_table("identity_name_count")

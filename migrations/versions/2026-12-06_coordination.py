"""coordination: teams, members, case-finding results, caseloads, tasks, person state

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "coord_team",
        sa.Column("team_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=32), nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_coord_team")),
    )
    op.create_table(
        "coord_team_practice",
        sa.Column("practice", sa.String(length=32), nullable=False),
        sa.Column("team_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["coord_team.team_id"],
            name=op.f("fk_coord_team_practice_team_id_coord_team"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("practice", name=op.f("pk_coord_team_practice")),
    )
    op.create_index(
        op.f("ix_coord_team_practice_team_id"), "coord_team_practice", ["team_id"], unique=False
    )
    op.create_table(
        "coord_member",
        sa.Column("team_id", sa.String(length=64), nullable=False),
        sa.Column("practitioner", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("discipline", sa.String(length=32), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("hours_per_week", sa.Float(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["coord_team.team_id"],
            name=op.f("fk_coord_member_team_id_coord_team"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("team_id", "practitioner", name=op.f("pk_coord_member")),
    )
    op.create_index(
        op.f("ix_coord_member_practitioner"), "coord_member", ["practitioner"], unique=False
    )
    op.create_table(
        "coord_case_finding",
        sa.Column("person_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("practice", sa.String(length=32), nullable=True),
        sa.Column("team_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("birth_date", sa.String(length=10), nullable=True),
        sa.Column("age", sa.Integer(), nullable=True),
        sa.Column("hfrs", sa.Float(), nullable=True),
        sa.Column("hfrs_band", sa.String(length=16), nullable=True),
        sa.Column("charlson", sa.Integer(), nullable=False),
        sa.Column("conditions", sa.Integer(), nullable=False),
        sa.Column("emergency_admissions", sa.Integer(), nullable=False),
        sa.Column("emergency_bed_days", sa.Integer(), nullable=False),
        sa.Column("ae_attendances", sa.Integer(), nullable=False),
        sa.Column("services", sa.Integer(), nullable=False),
        sa.Column("cohorts", sa.String(length=512), nullable=False),
        sa.Column("found", sa.Boolean(), nullable=False),
        sa.Column("need", sa.Float(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("labels", sa.String(length=512), nullable=True),
        sa.Column("computed_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_coord_case_finding")),
    )
    op.create_index(
        "ix_coord_case_finding_team",
        "coord_case_finding",
        ["team_id", "found", "need"],
        unique=False,
    )

    op.create_table(
        "coord_case",
        sa.Column("case_id", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("team_id", sa.String(length=64), nullable=False),
        sa.Column("coordinator", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("route", sa.String(length=16), nullable=False),
        sa.Column("referral", sa.String(length=80), nullable=True),
        sa.Column("care_plan", sa.String(length=64), nullable=True),
        sa.Column("care_plan_since", UTC_DATETIME, nullable=True),
        sa.Column("need", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("opened_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("review_due", sa.Date(), nullable=True),
        sa.Column("closed_at", UTC_DATETIME, nullable=True),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_coord_case")),
    )
    op.create_index(op.f("ix_coord_case_person_id"), "coord_case", ["person_id"], unique=False)
    op.create_index("ix_coord_case_coordinator", "coord_case", ["coordinator", "status"], unique=False)
    op.create_index("ix_coord_case_team", "coord_case", ["team_id", "status", "need"], unique=False)
    op.create_table(
        "coord_task",
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.String(length=64), nullable=True),
        sa.Column("team_id", sa.String(length=64), nullable=True),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("due", sa.Date(), nullable=True),
        sa.Column("trigger", sa.String(length=160), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_coord_task")),
    )
    op.create_index(op.f("ix_coord_task_person_id"), "coord_task", ["person_id"], unique=False)
    op.create_index("ix_coord_task_owner", "coord_task", ["owner", "status", "due"], unique=False)
    op.create_index("ix_coord_task_trigger", "coord_task", ["trigger"], unique=False)
    op.create_table(
        "coord_rescore",
        sa.Column("person_id", sa.String(length=64), nullable=False),
        sa.Column("queued_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_coord_rescore")),
    )
    op.create_index(op.f("ix_coord_rescore_queued_at"), "coord_rescore", ["queued_at"], unique=False)
    op.create_table(
        "coord_person_state",
        sa.Column("person_id", sa.String(length=64), nullable=False),
        sa.Column("admitted_at", UTC_DATETIME, nullable=True),
        sa.Column("admission", sa.String(length=140), nullable=True),
        sa.Column("discharged_at", UTC_DATETIME, nullable=True),
        sa.Column("discharge", sa.String(length=140), nullable=True),
        sa.Column("care_plan", sa.String(length=140), nullable=True),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_coord_person_state")),
    )


def downgrade() -> None:
    op.drop_table("coord_person_state")
    op.drop_index(op.f("ix_coord_rescore_queued_at"), table_name="coord_rescore")
    op.drop_table("coord_rescore")
    op.drop_index("ix_coord_task_trigger", table_name="coord_task")
    op.drop_index("ix_coord_task_owner", table_name="coord_task")
    op.drop_index(op.f("ix_coord_task_person_id"), table_name="coord_task")
    op.drop_table("coord_task")
    op.drop_index("ix_coord_case_team", table_name="coord_case")
    op.drop_index("ix_coord_case_coordinator", table_name="coord_case")
    op.drop_index(op.f("ix_coord_case_person_id"), table_name="coord_case")
    op.drop_table("coord_case")
    op.drop_index("ix_coord_case_finding_team", table_name="coord_case_finding")
    op.drop_table("coord_case_finding")
    op.drop_index(op.f("ix_coord_member_practitioner"), table_name="coord_member")
    op.drop_table("coord_member")
    op.drop_index(op.f("ix_coord_team_practice_team_id"), table_name="coord_team_practice")
    op.drop_table("coord_team_practice")
    op.drop_table("coord_team")

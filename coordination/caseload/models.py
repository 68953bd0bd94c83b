"""Coordination's read models for caseloads and worklists.

The FHIR resources (EpisodeOfCare with ``careManager``, Task) are the record others read;
these rows, written with them in the same transaction or by the outbox consumer, are what
worklists query.
"""

from datetime import date, datetime

from sqlalchemy import Date, Float, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fhir_gateway.api import Base, UtcDateTime


class CaseRow(Base):
    """A person's coordination episode with a team (FHIR ``EpisodeOfCare/<case_id>``).

    ``status``: ``waiting`` (accepted by the team, no coordinator has room yet: the queue,
    ordered by ``need``), ``active`` (a named coordinator), ``closed``.
    """

    __tablename__ = "coord_case"

    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    patient_id: Mapped[str] = mapped_column(String(64))
    team_id: Mapped[str] = mapped_column(String(64))
    coordinator: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    route: Mapped[str] = mapped_column(String(16))  # case-finding | referral
    referral: Mapped[str | None] = mapped_column(String(80))  # ServiceRequest/<id>
    care_plan: Mapped[str | None] = mapped_column(String(64))  # the shared CarePlan's id
    care_plan_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    need: Mapped[float] = mapped_column(Float, default=0.0)
    reason: Mapped[str] = mapped_column(Text)  # JSON: why this coordinator (or the queue)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    review_due: Mapped[date | None] = mapped_column(Date)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_coord_case_coordinator", "coordinator", "status"),
        Index("ix_coord_case_team", "team_id", "status", "need"),
    )


class TaskRow(Base):
    """A coordination Task (FHIR ``Task/<task_id>``) as worklists need it."""

    __tablename__ = "coord_task"

    task_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[str | None] = mapped_column(String(64), index=True)
    team_id: Mapped[str | None] = mapped_column(String(64))
    owner: Mapped[str | None] = mapped_column(String(64))  # practitioner id; None: the pool
    code: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    due: Mapped[date | None] = mapped_column(Date)
    trigger: Mapped[str | None] = mapped_column(String(160))  # what raised it, e.g. A01:<encounter>
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_coord_task_owner", "owner", "status", "due"),
        Index("ix_coord_task_trigger", "trigger"),
    )


class PersonStateRow(Base):
    """What a worklist shows about a person's hospital use now: in hospital since when
    (an open inpatient stay), and the last discharge. Kept by the outbox consumer."""

    __tablename__ = "coord_person_state"

    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    admitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    admission: Mapped[str | None] = mapped_column(String(140))  # Encounter/<id>
    discharged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    discharge: Mapped[str | None] = mapped_column(String(140))
    care_plan: Mapped[str | None] = mapped_column(String(140))  # active CarePlan/<id>
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

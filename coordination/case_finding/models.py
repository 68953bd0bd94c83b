"""Case-finding results: one row per person, refreshed as their record changes."""

from datetime import datetime

from sqlalchemy import Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fhir_gateway.api import Base, UtcDateTime


class CaseFindingRow(Base):
    """A person's latest assessment. ``explanation`` (JSON) names every contributing fact
    with its source; ``labels`` are the sensitive categories of those facts (a derived item
    carries the labels of what it was derived from)."""

    __tablename__ = "coord_case_finding"

    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str | None] = mapped_column(String(64))  # the registered (GP) record
    practice: Mapped[str | None] = mapped_column(String(32))
    team_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(255))
    birth_date: Mapped[str | None] = mapped_column(String(10))
    age: Mapped[int | None] = mapped_column(Integer)
    hfrs: Mapped[float | None] = mapped_column(Float)
    hfrs_band: Mapped[str | None] = mapped_column(String(16))
    charlson: Mapped[int] = mapped_column(Integer, default=0)
    conditions: Mapped[int] = mapped_column(Integer, default=0)
    emergency_admissions: Mapped[int] = mapped_column(Integer, default=0)
    emergency_bed_days: Mapped[int] = mapped_column(Integer, default=0)
    ae_attendances: Mapped[int] = mapped_column(Integer, default=0)
    services: Mapped[int] = mapped_column(Integer, default=0)
    cohorts: Mapped[str] = mapped_column(String(512), default="")
    found: Mapped[bool] = mapped_column(Boolean, default=False)
    need: Mapped[float] = mapped_column(Float, default=0.0)
    explanation: Mapped[str] = mapped_column(Text)
    labels: Mapped[str | None] = mapped_column(String(512))
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_coord_case_finding_team", "team_id", "found", "need"),)


class RescoreRow(Base):
    """A person whose record changed and who waits to be re-scored (the outbox consumer
    queues them; the dispatcher's deferred work re-scores them in bulk)."""

    __tablename__ = "coord_rescore"

    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    queued_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)

"""Coordination's tables for teams. The FHIR Organization and PractitionerRoles written with
them are what other systems read; these rows are what coordination queries."""

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from fhir_gateway.api import Base, UtcDateTime


class TeamRow(Base):
    __tablename__ = "coord_team"

    team_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(32))  # ODS code of the hosting organisation
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class TeamPracticeRow(Base):
    """A GP practice aligned with a team; a practice is aligned with one team at most."""

    __tablename__ = "coord_team_practice"

    practice: Mapped[str] = mapped_column(String(32), primary_key=True)  # ODS code
    team_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("coord_team.team_id", ondelete="CASCADE"), index=True
    )


class MemberRow(Base):
    """A member of a team: a coordinator (with a caseload) or a team lead."""

    __tablename__ = "coord_member"

    team_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("coord_team.team_id", ondelete="CASCADE"), primary_key=True
    )
    practitioner: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16))  # coordinator | lead
    discipline: Mapped[str] = mapped_column(String(32))
    capacity: Mapped[int] = mapped_column(Integer)
    hours_per_week: Mapped[float] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

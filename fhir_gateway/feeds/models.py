"""The feeds' own tables: every HL7 v2 message received (de-duplication on MSH-10, the
dead-letter store and replay; kept as received), the events of each social care
extract (so that a withdrawn event can be marked entered-in-error), and the registry of
source systems with the client ids that may send as each (``feeds.sources``)."""

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from fhir_gateway.db import Base
from fhir_gateway.store.models import BigId, UtcDateTime


class Hl7Message(Base):
    __tablename__ = "hl7_message"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sender: Mapped[str] = mapped_column(String(64))  # MSH-4, the sending facility (ODS code)
    control_id: Mapped[str] = mapped_column(String(64))  # MSH-10
    event: Mapped[str | None] = mapped_column(String(8))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16))  # processed | rejected
    ack_code: Mapped[str] = mapped_column(String(2))  # AA | AE | AR
    error: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("sender", "control_id"),
        Index("ix_hl7_message_status", "status", "pk"),
    )


class CldEventRecord(Base):
    """Which events each social care extract reported for a period, so that one missing from
    a later extract for the same period can be withdrawn (entered-in-error)."""

    __tablename__ = "cld_event"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    la: Mapped[str] = mapped_column(String(16))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    event_reference: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (UniqueConstraint("la", "period_start", "period_end", "event_reference"),)


class SourceSystemRow(Base):
    """A registered source system (``feeds.sources.SourceSystem``): one per organisation."""

    __tablename__ = "source_system"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ods_code: Mapped[str] = mapped_column(String(16), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_by: Mapped[str] = mapped_column(String(140))

    __table_args__ = (
        CheckConstraint("kind IN ('gp', 'hospital', 'social-care', 'other')", name="kind"),
    )


class SourceSystemClientRow(Base):
    """A system client (OAuth ``client_id``) allowed to send as a source system."""

    __tablename__ = "source_system_client"

    client_id: Mapped[str] = mapped_column(String(140), primary_key=True)
    source_system_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("source_system.id", ondelete="CASCADE"), primary_key=True
    )

"""The audit tables. All three are insert-only: the database refuses UPDATE and DELETE on them
(triggers created by the migration), so no path in the application can rewrite history.

Sealing never touches an event row: a block lists its events in ``audit_seal`` and chains
its hash to the previous block's, so an event committed late (after a later one was sealed)
simply waits for the next block.
"""

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fhir_gateway.db import Base
from fhir_gateway.store.models import BigId, UtcDateTime

INSERT_ONLY_TABLES = ("audit_event", "audit_block", "audit_seal")


class AuditEventRow(Base):
    """One audited access for one person (see ``consent.audit.AuditRecord``)."""

    __tablename__ = "audit_event"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(32), unique=True)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    action: Mapped[str] = mapped_column(String(1))
    interaction: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(1))
    caller_kind: Mapped[str] = mapped_column(String(16))
    agent: Mapped[str] = mapped_column(String(128))
    organisation: Mapped[str | None] = mapped_column(String(32))
    role: Mapped[str | None] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(16))
    break_glass: Mapped[bool] = mapped_column(Boolean)
    query: Mapped[str] = mapped_column(String(2048))
    person: Mapped[str | None] = mapped_column(String(80))
    resource: Mapped[str | None] = mapped_column(String(140))
    detail: Mapped[str | None] = mapped_column(Text)

    # Indexes for the searches privacy officers run most (by person, by user, by time); each
    # one more is paid on every audited read. By organisation is a time-range scan.
    __table_args__ = (
        Index("ix_audit_event_person", "person", "recorded_at"),
        Index("ix_audit_event_agent", "agent", "recorded_at"),
        Index("ix_audit_event_recorded", "recorded_at"),
    )


class AuditBlockRow(Base):
    """A sealed block: the hash of its events chained to the previous block's hash."""

    __tablename__ = "audit_block"

    number: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    sealed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    event_count: Mapped[int] = mapped_column(Integer)
    previous_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditSealRow(Base):
    """Which block sealed which event (each event at most once).

    No foreign key to the event: checking it locked each event's row as its block was sealed
    (every event row written twice, the sealer's WAL more than doubled), and it guarded
    nothing that the insert-only events and ``verify`` (which counts a block's seal rows
    against the events they name) do not (migration 0018)."""

    __tablename__ = "audit_seal"

    event_pk: Mapped[int] = mapped_column(BigId, primary_key=True)
    block_number: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("audit_block.number"), index=True
    )

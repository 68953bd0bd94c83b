"""Tables for consent: derived relationships and directives, break-glass grants, agreements."""

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fhir_gateway.db import Base
from fhir_gateway.store.models import BigId, UtcDateTime


class CareRelationshipRow(Base):
    """A legitimate relationship (``consent.relationships.Relationship``) of a source patient.

    ``resource_pk`` is the resource it was derived from (rewritten with it); self-claimed
    relationships have none.
    """

    __tablename__ = "care_relationship"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("resource.pk", ondelete="CASCADE"), index=True
    )
    patient_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    organisation: Mapped[str | None] = mapped_column(String(32))
    practitioner: Mapped[str | None] = mapped_column(String(80))
    source_organisation: Mapped[str | None] = mapped_column(String(32))
    ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_care_relationship_patient", "patient_id", "organisation"),)


class ConsentDirectiveRow(Base):
    """A person's directive (``consent.directives.Directive``), from a Consent resource."""

    __tablename__ = "consent_directive"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = mapped_column(
        BigId, ForeignKey("resource.pk", ondelete="CASCADE"), index=True
    )
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    decision: Mapped[str] = mapped_column(String(8))
    level: Mapped[int] = mapped_column(Integer)
    recipient_organisation: Mapped[str | None] = mapped_column(String(32))
    recipient_role: Mapped[str | None] = mapped_column(String(64))
    source_organisation: Mapped[str | None] = mapped_column(String(32))
    item: Mapped[str | None] = mapped_column(String(140))
    # The security label a narrowed choice applies to: a sensitive-data category
    # (``mental_health``) or a confidentiality code (``R``, ``V``); null for none.
    label: Mapped[str | None] = mapped_column(String(64))
    # The purpose of use a narrowed choice applies to (``CASEFIND``); null for any.
    purpose: Mapped[str | None] = mapped_column(String(16))
    # The resource type a narrowed choice applies to (``CarePlan``); null for any.
    resource_class: Mapped[str | None] = mapped_column(String(64))
    # The coded concept a narrowed choice applies to (``provision.code``): data whose token
    # index holds this system and code; null (both) for any.
    code_system: Mapped[str | None] = mapped_column(String(255))
    code: Mapped[str | None] = mapped_column(String(255))
    # The period of data a narrowed choice applies to (``provision.dataPeriod``), closed,
    # either end open; null (both) for any.
    data_from: Mapped[datetime | None] = mapped_column(UtcDateTime)
    data_to: Mapped[datetime | None] = mapped_column(UtcDateTime)
    starts_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class BreakGlassGrantRow(Base):
    """One user's time-limited break-glass access to one person's record."""

    __tablename__ = "break_glass_grant"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    grant_id: Mapped[str] = mapped_column(String(32), unique=True)
    practitioner: Mapped[str] = mapped_column(String(80))
    organisation: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_break_glass_grant_user", "practitioner", "patient_id"),)


class SharingAgreementRow(Base):
    """A version of the sharing agreement as loaded (the newest active one is in force)."""

    __tablename__ = "sharing_agreement"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    loaded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    loaded_by: Mapped[str] = mapped_column(String(128))
    document: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

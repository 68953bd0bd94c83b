"""Identity's tables: the matching view of each source Patient, its blocking keys and the
review queue.

The Person resources themselves (with their links) and a Provenance per link are ordinary
FHIR resources in the store; these tables are what makes matching fast and reviewable.
"""

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fhir_gateway.db import Base
from fhir_gateway.store.models import BigId, UtcDateTime


class IdentityRecord(Base):
    """One source Patient as identity sees it, and the Person it belongs to."""

    __tablename__ = "identity_record"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(String(64), unique=True)
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str | None] = mapped_column(String(255))
    nhs_number: Mapped[str | None] = mapped_column(String(10), index=True)
    nhs_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    assurance: Mapped[str | None] = mapped_column(String(8))
    features: Mapped[str] = mapped_column(Text)  # JSON of the normalised demographics
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # When it was last filed under its current Person (who saw a wrongly joined record in
    # that time is what an unlink reports to privacy officers).
    linked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class IdentityBlockKey(Base):
    __tablename__ = "identity_block_key"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    record_pk: Mapped[int] = mapped_column(
        BigId, ForeignKey("identity_record.pk", ondelete="CASCADE"), primary_key=True, index=True
    )


class IdentityNameCount(Base):
    """How many of identity's records carry a normalised family or first name, for weighing
    a name's agreement by how common it is (``scoring.NameCounts``).

    The count of (``field``, ``value``) is the **sum** of ``n`` over its rows: filing a record
    adds rows (+1, or -1 when a record is removed or its name changes) rather than updating
    one, so concurrent dispatchers never wait on, or deadlock over, a common name's row or
    the total. ``value`` '' holds a field's total (records with the field at all). The
    dispatcher's deferred work folds each name's rows back into one
    (``service.fold_name_counts``)."""

    __tablename__ = "identity_name_count"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    field: Mapped[str] = mapped_column(String(16))  # family_name | given_name
    value: Mapped[str] = mapped_column(String(255))  # the normalised name; '' for the total
    n: Mapped[int] = mapped_column(Integer)

    # (field, value, n): the sums are read from the index alone.
    __table_args__ = (Index("ix_identity_name_count_name", "field", "value", "n"),)


class IdentityReview(Base):
    """A candidate link a human must decide: ``record`` may belong to ``person_id``."""

    __tablename__ = "identity_review"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    record_pk: Mapped[int] = mapped_column(
        BigId, ForeignKey("identity_record.pk", ondelete="CASCADE"), index=True
    )
    person_id: Mapped[str] = mapped_column(String(64))
    weight: Mapped[float] = mapped_column(Float)
    probability: Mapped[float] = mapped_column(Float)
    evidence: Mapped[str] = mapped_column(Text)  # JSON: [{field, level, weight}]
    reasons: Mapped[str] = mapped_column(Text)  # JSON: [str]
    status: Mapped[str] = mapped_column(String(16), default="open")  # open|accepted|rejected
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (Index("ix_identity_review_status", "status", "pk"),)


class IdentityUnlink(Base):
    """A record taken out of a Person it had been wrongly joined to: who saw the joined
    record in that time is what privacy officers need (``GET /identity/unlinks``)."""

    __tablename__ = "identity_unlink"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    person_id: Mapped[str] = mapped_column(String(64))  # the Person it was wrongly part of
    joined_at: Mapped[datetime] = mapped_column(UtcDateTime)
    unlinked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    steward: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)

"""The store's tables: current resources, their history, the write-time search index, the outbox.

Decision 2 of the design brief: resource bodies are kept as JSON text exactly as they will be
returned (the client's JSON plus ``id`` and ``meta``), so a read is one indexed lookup and no
parse. Every table carries the owning patient or can reach it through ``resource_pk``, so the
store can be partitioned by patient later (decision 9).

Index tables have no primary key of their own: they are only ever read through their indexes
and rewritten whole for a resource on each write, and a key would be one more index to
maintain on the ingest path.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column

from fhir_gateway.db import Base

BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both backends.

    PostgreSQL stores ``timestamptz``; SQLite stores ISO text, which sorts correctly because
    every value is normalised to UTC before it is written.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ResourceRow(Base):
    """The current version of every resource (deleted ones stay, flagged, so read says 410)."""

    __tablename__ = "resource"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(UtcDateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # The Patient this resource belongs to (the Patient compartment), for consent and
    # partitioning; a Patient owns itself.
    patient_id: Mapped[str | None] = mapped_column(String(64))
    # meta.source as sent: the source system that contributed this resource.
    source: Mapped[str | None] = mapped_column(String(255))
    # meta.security codes, space separated, for the consent layer's label predicates.
    security: Mapped[str | None] = mapped_column(String(1024))
    # The ODS code of the organisation that recorded it (from meta.source), and its
    # sensitive-data categories (" a b ", see consent.visibility.labels_text): the labels
    # consent's predicates test. A delete keeps them, so history stays governed.
    source_org: Mapped[str | None] = mapped_column(String(32))
    sensitivity: Mapped[str | None] = mapped_column(String(512))
    body: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("resource_type", "resource_id"),
        Index("ix_resource_type_updated", "resource_type", "last_updated"),
        Index("ix_resource_patient", "patient_id", "resource_type"),
    )


class HistoryRow(Base):
    """Every version of every resource, including the current one; insert-only."""

    __tablename__ = "resource_history"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = mapped_column(BigId, ForeignKey("resource.pk", ondelete="CASCADE"))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(UtcDateTime)
    # POST, PUT or DELETE: what Bundle.entry.request.method says in a history bundle.
    method: Mapped[str] = mapped_column(String(8))
    body: Mapped[str | None] = mapped_column(Text)
    # The labels this version had (see ResourceRow): an old version is governed by what it
    # said, so recoding a sensitive entry does not open its earlier versions.
    patient_id: Mapped[str | None] = mapped_column(String(64))
    source_org: Mapped[str | None] = mapped_column(String(32))
    sensitivity: Mapped[str | None] = mapped_column(String(512))
    security: Mapped[str | None] = mapped_column(String(1024))

    __table_args__ = (
        UniqueConstraint("resource_pk", "version_id"),
        Index("ix_resource_history_type_updated", "resource_type", "last_updated"),
        Index("ix_resource_history_updated", "last_updated"),
    )


class OutboxRow(Base):
    """A change event, written in the same transaction as the change (decision 7)."""

    __tablename__ = "outbox"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))  # create | update | delete
    patient_id: Mapped[str | None] = mapped_column(String(64))
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    # Only the events still to dispatch are indexed: the dispatcher's "oldest pending first"
    # stays an index read however long the processed history grows (with a full index the
    # planner walked the primary key through millions of processed rows).
    __table_args__ = (
        Index(
            "ix_outbox_pending",
            "pk",
            postgresql_where=text("processed_at IS NULL"),
            sqlite_where=text("processed_at IS NULL"),
        ),
    )


def _index_table(name: str, *columns: Column[Any], indexes: tuple[Index, ...] = ()) -> Table:
    # ``resource_pk`` has no foreign key: index rows are derived data that only the repository
    # writes, in the transaction that writes their resource's row (whose key it has just been
    # given), and resource rows are never deleted (a delete is a version). Checking the key
    # of every row cost about as much as writing it (a resource's index rows took 198 µs
    # with the check and 107 without, in a fresh database; docs/benchmarks.md).
    return Table(
        name,
        Base.metadata,
        Column("resource_pk", BigId, nullable=False, index=True),
        Column("resource_type", String(64), nullable=False),
        Column("param", String(64), nullable=False),
        *columns,
        *indexes,
    )


search_token = _index_table(
    "search_token",
    Column("system", String(255)),
    Column("code", String(255)),
    indexes=(Index("ix_search_token_lookup", "resource_type", "param", "code", "system"),),
)

search_string = _index_table(
    "search_string",
    Column("value", String(255), nullable=False),
    Column("exact", String(255), nullable=False),
    indexes=(
        Index(
            "ix_search_string_lookup",
            "resource_type",
            "param",
            "value",
            postgresql_ops={"value": "varchar_pattern_ops"},
        ),
    ),
)

search_date = _index_table(
    "search_date",
    Column("low", UtcDateTime, nullable=False),
    Column("high", UtcDateTime, nullable=False),
    indexes=(
        Index("ix_search_date_low", "resource_type", "param", "low"),
        Index("ix_search_date_high", "resource_type", "param", "high"),
    ),
)

search_reference = _index_table(
    "search_reference",
    Column("target_type", String(64)),
    Column("target_id", String(64)),
    Column("url", String(1024)),
    indexes=(
        Index("ix_search_reference_lookup", "target_id", "target_type", "resource_type", "param"),
    ),
)

search_quantity = _index_table(
    "search_quantity",
    Column("value", Numeric(36, 12), nullable=False),
    Column("system", String(255)),
    Column("code", String(255)),
    Column("unit", String(255)),
    indexes=(Index("ix_search_quantity_lookup", "resource_type", "param", "value"),),
)

INDEX_TABLES = (search_token, search_string, search_date, search_reference, search_quantity)

__all__ = [
    "INDEX_TABLES",
    "HistoryRow",
    "OutboxRow",
    "ResourceRow",
    "UtcDateTime",
    "search_date",
    "search_quantity",
    "search_reference",
    "search_string",
    "search_token",
]

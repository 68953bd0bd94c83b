"""Every audit query: writing records, reading and searching them, and the sealing bookkeeping.
Flushes, never commits: the caller's unit of work commits records with the data they describe.
"""

import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import BigInteger, Connection, Row, func, insert, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from consent.audit import SEALED_COLUMNS, Action, AuditRecord, Outcome, SealedRow
from fhir_gateway.audit.models import AuditBlockRow, AuditEventRow, AuditSealRow
from fhir_gateway.db import is_postgresql

QUERY_LIMIT = 2048


def row_values(record: AuditRecord) -> dict[str, object]:
    """The ``audit_event`` columns of a record (a fresh event id each time)."""
    return {
        # Time-ordered (nanoseconds, then randomness), so the unique index grows at its
        # right edge instead of taking random inserts on every audited read.
        "event_id": f"{time.time_ns():016x}{secrets.token_hex(8)}",
        "recorded_at": record.recorded_at,
        "action": record.action.value,
        "interaction": record.interaction,
        "outcome": record.outcome.value,
        "caller_kind": record.caller_kind,
        "agent": record.agent[:128],
        # Claims come from tokens: cut to the columns' sizes so an odd claim cannot make the
        # audit insert (and with it the access) fail.
        "organisation": record.organisation[:32] if record.organisation else None,
        "role": record.role[:64] if record.role else None,
        "purpose": record.purpose,
        "break_glass": record.break_glass,
        "query": record.query[:QUERY_LIMIT],
        "person": record.person[:80] if record.person else None,
        "resource": record.resource[:140] if record.resource else None,
        "detail": record.detail,
    }


def add_events(session: Session | Connection, records: Sequence[AuditRecord]) -> None:
    """Insert ``records`` in the session's transaction (one statement)."""
    if records:
        session.execute(insert(AuditEventRow), [row_values(r) for r in records])


def record_of(row: AuditEventRow) -> AuditRecord:
    """The audit record an ``audit_event`` row holds."""
    return AuditRecord(
        recorded_at=row.recorded_at,
        action=Action(row.action),
        interaction=row.interaction,
        outcome=Outcome(row.outcome),
        caller_kind=row.caller_kind,
        agent=row.agent,
        organisation=row.organisation,
        role=row.role,
        purpose=row.purpose,
        break_glass=row.break_glass,
        query=row.query,
        person=row.person,
        resource=row.resource,
        detail=row.detail,
    )


def get_event(session: Session, event_id: str) -> AuditEventRow | None:
    return session.scalars(select(AuditEventRow).where(AuditEventRow.event_id == event_id)).first()


# --- Searching ------------------------------------------------------------------------------

FilterColumn = Literal["person", "agent", "organisation", "role", "purpose", "outcome"]
Comparison = Literal["ge", "gt", "le", "lt"]


@dataclass(frozen=True, slots=True)
class EventFilter:
    """``column`` equals any one of ``values`` (several filters must all hold)."""

    column: FilterColumn
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TimeBound:
    """``recorded_at`` compared with ``moment`` (several bounds must all hold)."""

    comparison: Comparison
    moment: datetime


def search_events(
    session: Session,
    *,
    filters: Sequence[EventFilter] = (),
    bounds: Sequence[TimeBound] = (),
    exclude_caller_kinds: Sequence[str] = (),
    before_pk: int | None = None,
    limit: int,
) -> list[AuditEventRow]:
    """Events matching every filter and bound, newest first (``pk`` descending), at most
    ``limit``, only those below ``before_pk`` when it is given (keyset paging: no OFFSET, so
    a page costs the same however deep it is)."""
    stmt = select(AuditEventRow)
    for item in filters:
        column = getattr(AuditEventRow, item.column)
        stmt = stmt.where(column.in_(item.values))
    for bound in bounds:
        at = AuditEventRow.recorded_at
        stmt = stmt.where(
            at >= bound.moment
            if bound.comparison == "ge"
            else at > bound.moment
            if bound.comparison == "gt"
            else at <= bound.moment
            if bound.comparison == "le"
            else at < bound.moment
        )
    if exclude_caller_kinds:
        stmt = stmt.where(AuditEventRow.caller_kind.not_in(exclude_caller_kinds))
    if before_pk is not None:
        stmt = stmt.where(AuditEventRow.pk < before_pk)
    return list(session.scalars(stmt.order_by(AuditEventRow.pk.desc()).limit(limit)))


# --- Sealing --------------------------------------------------------------------------------

_SEALED = tuple(getattr(AuditEventRow, name) for name in SEALED_COLUMNS)


def _sealed(rows: Sequence[Row[Any]]) -> list[SealedRow]:
    return [cast(SealedRow, tuple(row)) for row in rows]


def unsealed_rows(session: Session, *, limit: int, from_pk: int = 0) -> list[SealedRow]:
    """Up to ``limit`` events no block lists yet, in ``pk`` order (every column), among
    those whose ``pk`` is ``from_pk`` or more.

    An event committed after a later one was sealed has a lower ``pk`` than sealed events;
    it is found here all the same (as long as it is not below ``from_pk``), because sealing
    is by absence from ``audit_seal``, not by ``pk`` range. ``from_pk`` is what keeps a pass
    cheap: without it, finding the absent means walking every event ever sealed.
    """
    sealed = select(AuditSealRow.event_pk).where(AuditSealRow.event_pk == AuditEventRow.pk)
    stmt = select(*_SEALED)
    if from_pk > 0:
        stmt = stmt.where(AuditEventRow.pk >= from_pk)
        # Said of the seals too: PostgreSQL does not carry a range across the join's
        # equality, and without it may hash every seal ever written to find the few absent.
        sealed = sealed.where(AuditSealRow.event_pk >= from_pk)
    stmt = stmt.where(~sealed.exists())
    return _sealed(session.execute(stmt.order_by(AuditEventRow.pk).limit(limit)).all())


def latest_event_pk(session: Session) -> int:
    """The highest ``pk`` among the events this transaction sees (0 when there are none)."""
    return int(session.scalar(select(func.max(AuditEventRow.pk))) or 0)


def latest_block(session: Session) -> AuditBlockRow | None:
    return session.scalars(select(AuditBlockRow).order_by(AuditBlockRow.number.desc())).first()


def add_block(
    session: Session,
    *,
    number: int,
    sealed_at: datetime,
    event_pks: Sequence[int],
    previous_hash: str,
    hash_: str,
) -> None:
    """Insert block ``number`` and one ``audit_seal`` row per event it seals."""
    session.add(
        AuditBlockRow(
            number=number,
            sealed_at=sealed_at,
            event_count=len(event_pks),
            previous_hash=previous_hash,
            hash=hash_,
        )
    )
    session.flush()  # the block first: the seal rows' foreign key refers to it
    if is_postgresql(session):
        # One statement for the whole block: as an executemany, PostgreSQL ran one INSERT per
        # event (thousands a pass), which cost the service more than the sealing itself.
        pks = select(func.unnest(literal(list(event_pks), ARRAY(BigInteger))), literal(number))
        session.execute(insert(AuditSealRow).from_select(["event_pk", "block_number"], pks))
    else:
        session.execute(
            insert(AuditSealRow), [{"event_pk": pk, "block_number": number} for pk in event_pks]
        )


def blocks(session: Session) -> Iterator[AuditBlockRow]:
    """Every block, in number order (streamed, for verification)."""
    yield from session.scalars(select(AuditBlockRow).order_by(AuditBlockRow.number))


def block_rows(session: Session, number: int) -> list[SealedRow]:
    """The events block ``number`` lists that still exist, in ``pk`` order."""
    stmt = (
        select(*_SEALED)
        .join(AuditSealRow, AuditSealRow.event_pk == AuditEventRow.pk)
        .where(AuditSealRow.block_number == number)
        .order_by(AuditEventRow.pk)
    )
    return _sealed(session.execute(stmt).all())


def seal_count(session: Session, number: int) -> int:
    """How many ``audit_seal`` rows name block ``number``."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(AuditSealRow)
            .where(AuditSealRow.block_number == number)
        )
        or 0
    )


def unsealed_summary(session: Session) -> tuple[int, datetime | None]:
    """How many events no block lists yet, and when the oldest of them was recorded."""
    sealed = select(AuditSealRow.event_pk).where(AuditSealRow.event_pk == AuditEventRow.pk)
    count, oldest = session.execute(
        select(func.count(), func.min(AuditEventRow.recorded_at)).where(~sealed.exists())
    ).one()
    return int(count or 0), oldest


def viewers_of(
    session: Session, *, person: str, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """Everyone who was released something of ``person``'s record between ``since`` and
    ``until``: caller, organisation, role, purpose, first and last time, how often."""
    e = AuditEventRow
    rows = session.execute(
        select(
            e.agent,
            e.organisation,
            e.role,
            e.purpose,
            func.min(e.recorded_at),
            func.max(e.recorded_at),
            func.count(),
        )
        .where(
            e.person == person,
            e.outcome == Outcome.SUCCESS.value,
            e.action == Action.READ.value,
            e.recorded_at >= since,
            e.recorded_at <= until,
        )
        .group_by(e.agent, e.organisation, e.role, e.purpose)
        .order_by(func.min(e.recorded_at))
    ).all()
    return [
        {
            "agent": agent,
            "organisation": organisation,
            "role": role,
            "purpose": purpose,
            "first": first.isoformat(),
            "last": last.isoformat(),
            "accesses": count,
        }
        for agent, organisation, role, purpose, first, last, count in rows
    ]

"""Synthetic audit records for the audit tests, and ways to write and find them."""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.audit import Action, AuditRecord, Outcome
from fhir_gateway.audit import repository, sealer
from fhir_gateway.audit.models import AuditEventRow

# Seeded events are dated long ago, so a search with date=lt2021 sees only them and never the
# events the requests of the test itself record (dated now).
LONG_AGO = datetime(2020, 1, 1, 9, 0, tzinfo=UTC)


def record(**overrides: Any) -> AuditRecord:
    values: dict[str, Any] = {
        "recorded_at": LONG_AGO,
        "action": Action.READ,
        "interaction": "read",
        "outcome": Outcome.SUCCESS,
        "caller_kind": "user",
        "agent": "Practitioner/audit-test-gp",
        "organisation": "Z90001",
        "role": "R8000",
        "purpose": "TREAT",
        "break_glass": False,
        "query": "/fhir/Condition/audit-test",
        "person": None,
        "resource": None,
        "detail": None,
    }
    values.update(overrides)
    return AuditRecord(**values)


def days_after(days: int, start: datetime = LONG_AGO) -> datetime:
    return start + timedelta(days=days)


def add(session: Session, *records: AuditRecord) -> list[AuditEventRow]:
    """Write ``records`` (one statement each, so their pks follow the given order)."""
    for item in records:
        repository.add_events(session, [item])
    session.flush()
    return list(
        session.scalars(select(AuditEventRow).order_by(AuditEventRow.pk.desc()).limit(len(records)))
    )[::-1]


UnitOfWork = Callable[[], AbstractContextManager[Session]]


def add_through(unit_of_work: UnitOfWork, *records: AuditRecord) -> list[str]:
    """Write ``records`` in a unit of work of the app; their event ids, in order."""
    with unit_of_work() as session:
        return [row.event_id for row in add(session, *records)]


def seal_everything(session: Session) -> list[int]:
    """Seal whatever is waiting (other tests may have committed events), so a test starts
    from a fully sealed trail inside its own transaction."""
    return list(_seal_until_done(session))


def _seal_until_done(session: Session) -> Iterator[int]:
    while (number := sealer.seal(session, now=datetime.now(UTC), block_size=10000)) is not None:
        yield number


def events_asking(session: Session, fragment: str) -> list[AuditEventRow]:
    """The events whose recorded query contains ``fragment``."""
    return list(
        session.scalars(
            select(AuditEventRow)
            .where(AuditEventRow.query.contains(fragment))
            .order_by(AuditEventRow.pk)
        )
    )

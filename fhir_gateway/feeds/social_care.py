"""Loading a social care (CLD-shaped) extract into the store: good rows load, bad rows are
reported with their number, re-loading the same file changes nothing, and an event that an
earlier extract for the same period reported but this one does not is withdrawn.

Withdrawal is skipped for a council and period when any row of the extract was refused: a
refused row's event would otherwise look withdrawn. The report says so.

Given its ``source`` (the registered source system ``carejoin import-cld --source`` names),
the extract is written under that system's writer scope: a row whose ``LA_Code`` is another
organisation is refused, and nothing of another source is touched.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from fhir_gateway.access import writer
from fhir_gateway.db import UnitOfWork
from fhir_gateway.feeds import cld, source_uri
from fhir_gateway.feeds.models import CldEventRecord
from fhir_gateway.feeds.sources import SourceSystem
from fhir_gateway.outcomes import OutcomeError
from fhir_gateway.store import repository, service


@dataclass
class CldReport:
    rows: int = 0
    loaded: int = 0
    unchanged: int = 0
    withdrawn: list[str] = field(default_factory=list)  # "Type/id"
    errors: list[tuple[int, str]] = field(default_factory=list)
    withdrawal_skipped: list[str] = field(default_factory=list)


def _outcome_text(exc: OutcomeError) -> str:
    issues = exc.to_outcome().get("issue", [])
    return "; ".join(str(i.get("diagnostics", "")) for i in issues) or str(exc)


def _put(session: Session, resource: dict[str, Any], *, now: datetime) -> bool:
    """Upsert; True when something changed."""
    result = service.update(
        session, str(resource["resourceType"]), str(resource["id"]), resource, now=now
    )
    return result.changed


def _withdraw(session: Session, record: CldEventRecord, *, now: datetime) -> str | None:
    current = repository.get_current(session, record.resource_type, record.resource_id)
    if current is None or current.deleted or current.body is None:
        return None
    body: dict[str, Any] = orjson.loads(current.body)
    body.pop("meta", None)
    body["meta"] = {"source": source_uri(record.la)}
    body["status"] = "entered-in-error"
    service.update(session, record.resource_type, record.resource_id, body, now=now)
    return f"{record.resource_type}/{record.resource_id}"


def load(
    unit_of_work: UnitOfWork,
    text: str | Iterable[str],
    *,
    now: datetime,
    source: SourceSystem | None = None,
) -> CldReport:
    parsed = cld.parse(text)
    if source is None:
        return _load(unit_of_work, parsed, now=now)
    theirs = [e for e in parsed.events if e.la != source.ods]
    parsed.events = [e for e in parsed.events if e.la == source.ods]
    parsed.errors.extend(
        (e.row, f"LA_Code {e.la} is not this extract's source, {source.name} ({source.ods})")
        for e in theirs
    )
    with writer.bound(writer.registered_scope(source.ods)):
        return _load(unit_of_work, parsed, now=now)


def _load(unit_of_work: UnitOfWork, parsed: cld.ParsedExtract, *, now: datetime) -> CldReport:
    report = CldReport(errors=list(parsed.errors))
    report.rows = len(parsed.events) + len([e for e in parsed.errors if e[0] > 1])
    seen: dict[tuple[str, date, date], set[str]] = {}
    refused_periods: set[tuple[str, date, date]] = set()
    with unit_of_work() as session:
        patients_done: set[str] = set()
        for event in parsed.events:
            key = (event.la, event.period[0], event.period[1])
            try:
                with session.begin_nested():
                    changed = False
                    if event.patient["id"] not in patients_done:
                        changed |= _put(session, event.patient, now=now)
                        patients_done.add(str(event.patient["id"]))
                    changed |= _put(session, event.resource, now=now)
                    _remember(session, event)
            except OutcomeError as exc:
                report.errors.append((event.row, _outcome_text(exc)))
                refused_periods.add(key)
                continue
            seen.setdefault(key, set()).add(event.event_reference)
            if changed:
                report.loaded += 1
            else:
                report.unchanged += 1
        if any(number > 1 for number, _reason in parsed.errors):
            # Rows that could not even be read: their period is unknown, so hold back every
            # withdrawal this extract would make.
            refused_periods.update(seen)
        for key, references in seen.items():
            if key in refused_periods:
                report.withdrawal_skipped.append(f"{key[0]} {key[1]}..{key[2]}")
                continue
            earlier = session.scalars(
                select(CldEventRecord).where(
                    CldEventRecord.la == key[0],
                    CldEventRecord.period_start == key[1],
                    CldEventRecord.period_end == key[2],
                    CldEventRecord.withdrawn_at.is_(None),
                )
            ).all()
            for record in earlier:
                if record.event_reference not in references:
                    withdrawn = _withdraw(session, record, now=now)
                    record.withdrawn_at = now
                    if withdrawn:
                        report.withdrawn.append(withdrawn)
    report.errors.sort()
    return report


def _remember(session: Session, event: cld.CldEvent) -> None:
    record = session.scalars(
        select(CldEventRecord).where(
            CldEventRecord.la == event.la,
            CldEventRecord.period_start == event.period[0],
            CldEventRecord.period_end == event.period[1],
            CldEventRecord.event_reference == event.event_reference,
        )
    ).first()
    if record is None:
        session.add(
            CldEventRecord(
                la=event.la,
                period_start=event.period[0],
                period_end=event.period[1],
                event_reference=event.event_reference[:64],
                resource_type=str(event.resource["resourceType"]),
                resource_id=str(event.resource["id"]),
            )
        )
    else:
        record.withdrawn_at = None
    session.flush()

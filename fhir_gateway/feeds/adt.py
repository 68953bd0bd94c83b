"""Receiving HL7 v2 ADT: apply each message to the store, acknowledge it, keep it.

``receive`` is what the HTTP endpoint and the MLLP listener call, one message at a time in
arrival order (each connection is served in order, so a patient's events from one sender are
applied in the order sent). For each message:

- it is parsed; a message that cannot be read is rejected (``AR``) and kept as a dead letter;
- a message whose sending facility (MSH-4) is not an organisation the sender may write for
  (its registered source system, ``access.writer``) is rejected (``AR``) and kept;
- a message whose MSH-4/MSH-10 was already processed is acknowledged again and not applied
  twice;
- the event is applied in one transaction: the Patient upserted by the hospital number
  (``identifier=<mrn system>|<mrn>``), the Encounter by the visit number; A11, A12 and A13
  undo what A01/A04, A02 and A03 did; A40 marks the merged-away record ``replaced-by`` the
  survivor and moves its encounters;
- if applying fails, nothing of it is stored, the message is kept as a dead letter with the
  reason, and the sender gets ``AE``. An operator lists dead letters and replays them.
"""

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from fhir_gateway.access import writer
from fhir_gateway.db import UnitOfWork
from fhir_gateway.feeds import hl7v2
from fhir_gateway.feeds.hl7v2 import AdtEvent, Header, Hl7Error
from fhir_gateway.feeds.models import Hl7Message
from fhir_gateway.outcomes import NotFound, OutcomeError
from fhir_gateway.store import repository, service
from fhir_gateway.store.models import ResourceRow
from fhir_gateway.store.repository import StoredResource


@dataclass(frozen=True, slots=True)
class Receipt:
    ack: str  # the ACK message text
    code: str  # AA | AE | AR
    message_pk: int | None
    text: str


def _slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]", "-", value)[:40].strip("-").lower() or "x"


def _find(
    session: Session, resource_type: str, system: str, value: str, *, base_url: str
) -> StoredResource | None:
    matches = service.find_matches(
        session, resource_type, f"identifier={system}|{value}", base_url=base_url
    )
    if len(matches) > 1:
        raise Hl7Error("AE", f"{len(matches)} {resource_type} records carry {system}|{value}")
    return matches[0] if matches else None


def _body(stored: StoredResource) -> dict[str, Any]:
    assert stored.body is not None
    data: dict[str, Any] = orjson.loads(stored.body)
    data.pop("meta", None)
    return data


def _upsert_patient(session: Session, event: AdtEvent, *, now: datetime, base_url: str) -> str:
    ods = event.header.sending_facility
    current = _find(session, "Patient", event.mrn_system, event.mrn, base_url=base_url)
    patient_id = current.resource_id if current else f"{_slug(ods)}-{_slug(event.mrn)}"
    resource = dict(event.patient, id=patient_id)
    if current is not None:
        # Keep what the hospital's other feeds recorded that ADT does not carry.
        # (and the links of an earlier merge).
        kept = {k: v for k, v in _body(current).items() if k not in resource}
        resource = {**kept, **resource}
    service.update(session, "Patient", patient_id, resource, now=now)
    return patient_id


def _apply_encounter(
    session: Session, event: AdtEvent, patient_id: str, *, now: datetime, base_url: str
) -> None:
    assert event.encounter is not None
    assert event.visit_system is not None
    assert event.visit_number is not None
    kind = event.header.event
    ods = event.header.sending_facility
    current = _find(session, "Encounter", event.visit_system, event.visit_number, base_url=base_url)
    if kind in ("A11", "A12", "A13") and (current is None or current.deleted):
        raise Hl7Error(
            "AE", f"ADT^{kind} cancels visit {event.visit_number}, which this feed never recorded"
        )
    new = dict(event.encounter, subject={"reference": f"Patient/{patient_id}"})
    if current is None:
        encounter_id = f"{_slug(ods)}-visit-{_slug(event.visit_number)}"
        merged = dict(new, id=encounter_id)
    else:
        encounter_id = current.resource_id
        stored = _body(current)
        if kind == "A11":  # cancel admit/visit: what A01/A04 created is entered in error
            merged = dict(stored, status="entered-in-error")
        elif kind == "A13":  # cancel discharge: back in progress, no end
            merged = dict(stored, status="in-progress")
            period = {k: v for k, v in (stored.get("period") or {}).items() if k != "end"}
            merged.pop("period", None)
            if period:
                merged["period"] = period
        elif kind == "A12":  # cancel transfer: the location the message gives back
            merged = dict(stored)
            if "location" in new:
                merged["location"] = new["location"]
        else:
            merged = {**stored, **new}
            period = {**(stored.get("period") or {}), **(new.get("period") or {})}
            if period:
                merged["period"] = period
        merged["id"] = encounter_id
    service.update(session, "Encounter", encounter_id, merged, now=now)


def _encounters_of(session: Session, patient_id: str) -> list[StoredResource]:
    rows = session.execute(
        select(*repository.CURRENT_COLUMNS).where(
            ResourceRow.resource_type == "Encounter",
            ResourceRow.patient_id == patient_id,
            ResourceRow.deleted.is_(False),
        )
    )
    return [repository.stored_from_row(row) for row in rows]


def _merge(
    session: Session, event: AdtEvent, survivor: str, *, now: datetime, base_url: str
) -> None:
    """A40: each prior record is replaced by the survivor; its encounters move to it."""
    links: list[dict[str, Any]] = []
    for prior_mrn in event.prior_mrns:
        prior = _find(session, "Patient", event.mrn_system, prior_mrn, base_url=base_url)
        if prior is None or prior.deleted:
            raise Hl7Error("AE", f"A40: prior patient {prior_mrn} is not known from this feed")
        body = dict(_body(prior), id=prior.resource_id, active=False)
        body["link"] = [{"other": {"reference": f"Patient/{survivor}"}, "type": "replaced-by"}]
        service.update(session, "Patient", prior.resource_id, body, now=now)
        links.append({"other": {"reference": f"Patient/{prior.resource_id}"}, "type": "replaces"})
        for encounter in _encounters_of(session, prior.resource_id):
            moved = dict(_body(encounter), id=encounter.resource_id)
            moved["subject"] = {"reference": f"Patient/{survivor}"}
            service.update(session, "Encounter", encounter.resource_id, moved, now=now)
    current = repository.get_current(session, "Patient", survivor)
    assert current is not None
    body = dict(_body(current), id=survivor)
    existing = [link for link in body.get("link") or () if link not in links]
    body["link"] = existing + links
    service.update(session, "Patient", survivor, body, now=now)


def apply(session: Session, event: AdtEvent, *, now: datetime, base_url: str) -> str:
    """Apply one ADT event in ``session``; returns the Patient id."""
    patient_id = _upsert_patient(session, event, now=now, base_url=base_url)
    if event.header.event == "A40":
        _merge(session, event, patient_id, now=now, base_url=base_url)
    if event.encounter is not None:
        _apply_encounter(session, event, patient_id, now=now, base_url=base_url)
    return patient_id


def _keep(
    unit_of_work: UnitOfWork,
    *,
    header: Header | None,
    raw: str,
    now: datetime,
    status: str,
    code: str,
    error: str | None,
) -> int:
    """Record the message's outcome in a transaction of its own (a dead letter survives the
    rollback of the failed attempt)."""
    sender = header.sending_facility[:64] if header else "?"
    control = header.control_id if header else f"unreadable-{uuid.uuid4().hex}"
    with unit_of_work() as session:
        row = session.execute(
            select(Hl7Message).where(Hl7Message.sender == sender, Hl7Message.control_id == control)
        ).scalar_one_or_none()
        if row is None:
            row = Hl7Message(sender=sender, control_id=control, received_at=now, raw=raw)
            session.add(row)
        row.event = header.event if header else None
        row.status = status
        row.ack_code = code
        row.error = error
        row.raw = raw
        row.processed_at = now if status == "processed" else None
        session.flush()
        return int(row.pk)


def _check_sender(header: Header) -> None:
    """MSH-4 must name an organisation the sender writes for (its source system)."""
    scope = writer.current()
    if scope is None or scope.organisations is None:
        return
    if header.sending_facility not in scope.organisations:
        allowed = ", ".join(sorted(scope.organisations)) or "none"
        raise Hl7Error(
            "AR",
            f"MSH-4 names {header.sending_facility}, which this sender may not send as "
            f"(its source systems: {allowed})",
        )


def receive(unit_of_work: UnitOfWork, raw: str, *, now: datetime, base_url: str) -> Receipt:
    """Process one message end to end and return its acknowledgement."""
    header: Header | None = None
    try:
        message, header = hl7v2.parse(raw)
        _check_sender(header)
        with unit_of_work() as session:
            seen = session.execute(
                select(Hl7Message.pk, Hl7Message.status).where(
                    Hl7Message.sender == header.sending_facility[:64],
                    Hl7Message.control_id == header.control_id,
                )
            ).first()
        if seen is not None and seen.status == "processed":
            text = f"Message {header.control_id} was already processed"
            return Receipt(hl7v2.ack(header, "AA", text), "AA", int(seen.pk), text)
        event = hl7v2.to_fhir(message, header)
        with unit_of_work() as session:
            apply(session, event, now=now, base_url=base_url)
    except Hl7Error as exc:
        pk = _keep(
            unit_of_work,
            header=header,
            raw=raw,
            now=now,
            status="rejected",
            code=exc.ack,
            error=exc.text,
        )
        return Receipt(
            hl7v2.ack(header, exc.ack, exc.text, raw_control_id="?"), exc.ack, pk, exc.text
        )
    except OutcomeError as exc:  # the mapped resources failed validation or a store rule
        text = f"The message's content could not be stored: {exc}"
        pk = _keep(
            unit_of_work, header=header, raw=raw, now=now, status="rejected", code="AE", error=text
        )
        return Receipt(hl7v2.ack(header, "AE", text), "AE", pk, text)
    pk = _keep(
        unit_of_work, header=header, raw=raw, now=now, status="processed", code="AA", error=None
    )
    text = f"ADT^{header.event} {header.control_id} applied"
    return Receipt(hl7v2.ack(header, "AA", text), "AA", pk, text)


def _senders() -> frozenset[str] | None:
    """The sending facilities the caller may see and replay messages of (None: any)."""
    scope = writer.current()
    return None if scope is None else scope.organisations


def dead_letters(session: Session, *, limit: int = 100) -> list[dict[str, Any]]:
    """Rejected messages, oldest first: of the caller's own sources only, for a caller bound
    to organisations (a source system sees its own messages, never another's)."""
    stmt = select(Hl7Message).where(Hl7Message.status == "rejected")
    senders = _senders()
    if senders is not None:
        stmt = stmt.where(Hl7Message.sender.in_(sorted(senders)))
    rows = session.scalars(stmt.order_by(Hl7Message.pk).limit(limit)).all()
    return [
        {
            "id": row.pk,
            "sender": row.sender,
            "controlId": row.control_id,
            "event": row.event,
            "received": service.format_instant(row.received_at),
            "ack": row.ack_code,
            "error": row.error,
            "message": row.raw,
        }
        for row in rows
    ]


def replay(unit_of_work: UnitOfWork, pk: int, *, now: datetime, base_url: str) -> Receipt:
    """Process a dead letter again (after the cause was fixed, for example a missing A01)."""
    with unit_of_work() as session:
        row = session.get(Hl7Message, pk)
        senders = _senders()
        if row is None or (senders is not None and row.sender not in senders):
            raise NotFound(f"There is no HL7 message {pk}")
        raw = row.raw
        status = row.status
    if status == "processed":
        text = f"HL7 message {pk} was already processed"
        return Receipt("", "AA", pk, text)
    return receive(unit_of_work, raw, now=now, base_url=base_url)

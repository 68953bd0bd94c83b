"""Coordination's reaction to a changed record (called by the outbox consumer, in the
dispatcher's transaction, so what it raises commits with the event's "processed" mark).

- A hospital inpatient stay updates the person's state (in hospital now; last discharge)
  and, for someone on a caseload, raises once an admission alert and task, and a discharge
  follow-up task due within two working days; cancelling the stay (A11) or the discharge
  (A13) withdraws what they raised.
- A new A&E attendance, a new social care service, or a change to the shared care plan by
  another organisation notifies the coordinator.

The alert is a FHIR Communication to the coordinator (or to the team, for people waiting
for one) and the work a Task; both carry the labels of the record they came from, and an
identifier of the event that raised them, so a repeated event raises nothing new.
"""

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from coordination.alert import rules
from coordination.case_finding.facts import is_service
from coordination.caseload import service as caseload
from coordination.caseload.models import CaseRow, PersonStateRow, TaskRow
from coordination.task import service as tasks
from coordination.task.fhir import OPEN, TRIGGER_SYSTEM
from coordination.team import repository as teams
from fhir_gateway.api import (
    StoredResource,
    format_instant,
    get_current,
    person_of,
    source_uri,
    update,
)


def _security(resource: Mapping[str, Any]) -> list[Any]:
    return list((resource.get("meta") or {}).get("security") or ())


def _communication_id(trigger: str) -> str:
    return "alert-" + hashlib.sha256(trigger.encode()).hexdigest()[:32]


def notify(
    session: Session,
    case_row: CaseRow,
    *,
    trigger: str,
    text: str,
    about: str,
    security: list[Any],
    now: datetime,
) -> bool:
    """A Communication to the person's coordinator and their team (the team alone while the
    person waits for a coordinator), once per trigger. Returns whether it is new."""
    communication_id = _communication_id(trigger)
    if get_current(session, "Communication", communication_id) is not None:
        return False
    team = teams.get_team(session, case_row.team_id)
    if team is None:
        return False
    # The coordinator and their team hear at once; while the person waits for a
    # coordinator, the team.
    recipients = [{"reference": f"Organization/{case_row.team_id}"}]
    if case_row.coordinator:
        recipients.insert(0, {"reference": f"Practitioner/{case_row.coordinator}"})
    meta: dict[str, Any] = {"source": source_uri(team.host)}
    if security:
        meta["security"] = security
    update(
        session,
        "Communication",
        communication_id,
        {
            "resourceType": "Communication",
            "id": communication_id,
            "meta": meta,
            "identifier": [{"system": TRIGGER_SYSTEM, "value": trigger}],
            "status": "completed",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/communication-category",
                            "code": "alert",
                        }
                    ]
                }
            ],
            "priority": "urgent",
            "subject": {"reference": f"Patient/{case_row.patient_id}"},
            "about": [{"reference": about}],
            "sent": format_instant(now),
            "recipient": recipients,
            "sender": {"reference": f"Organization/{case_row.team_id}"},
            "payload": [{"contentString": text}],
        },
        now=now,
    )
    return True


def _state(session: Session, person_id: str, now: datetime) -> PersonStateRow:
    state = session.get(PersonStateRow, person_id)
    if state is None:
        state = PersonStateRow(person_id=person_id, updated_at=now)
        session.add(state)
    return state


def on_encounter(session: Session, stored: StoredResource, now: datetime) -> None:
    if stored.patient_id is None or stored.body is None:
        return
    person_id = person_of(session, stored.patient_id)
    if person_id is None:
        return
    encounter = orjson.loads(stored.body)
    stay = rules.stay_of(encounter)
    if stay.kind == "other":
        return
    reference = f"Encounter/{stored.resource_id}"
    prefix = f"enc:{stored.resource_id}:"
    case_row = caseload.open_case_of(session, person_id)
    if stay.kind == "inpatient":
        state = _state(session, person_id, now)
        if stay.withdrawn or stored.deleted:
            if state.admission == reference:
                state.admitted_at = state.admission = None
            if state.discharge == reference:
                state.discharged_at = state.discharge = None
            tasks.withdraw(
                session, trigger_prefix=prefix, now=now, reason="The hospital cancelled the stay"
            )
        elif stay.open:
            state.admitted_at, state.admission = stay.start, reference
            if state.discharge == reference:  # a discharge cancelled (A13)
                state.discharged_at = state.discharge = None
            tasks.withdraw(
                session,
                trigger_prefix=prefix + "discharge",
                now=now,
                reason="The hospital cancelled the discharge",
            )
        elif stay.discharged:
            if state.admission == reference or state.admission is None:
                state.admitted_at = state.admission = None
            state.discharged_at, state.discharge = stay.end, reference
        state.updated_at = now
        session.flush()
    if case_row is None or stored.deleted:
        return
    security = _security(encounter)
    when = stay.start.date().isoformat() if stay.start else "recently"
    if stay.admission_is_news(now):
        text = f"Admitted to hospital ({stored.source_org or 'hospital'}) on {when}"
        if notify(
            session,
            case_row,
            trigger=prefix + "admission",
            text=text,
            about=reference,
            security=security,
            now=now,
        ):
            tasks.raise_task(
                session,
                kind="admission",
                person_id=person_id,
                patient_id=case_row.patient_id,
                team_id=case_row.team_id,
                owner=case_row.coordinator,
                due=rules.local_day(now),
                now=now,
                description=text + ": contact the ward and the family, share the care plan",
                focus=reference,
                trigger=prefix + "admission",
                security=security,
            )
    if stay.discharge_is_news(now) and stay.end is not None:
        due = rules.follow_up_due(stay.end)
        text = f"Discharged from hospital on {rules.local_day(stay.end).isoformat()}"
        tasks.raise_task(
            session,
            kind="discharge-follow-up",
            person_id=person_id,
            patient_id=case_row.patient_id,
            team_id=case_row.team_id,
            owner=case_row.coordinator,
            due=due,
            now=now,
            description=f"{text}: follow up by {due.isoformat()} (two working days)",
            focus=reference,
            trigger=prefix + "discharge",
            security=security,
        )
    if stay.attendance_is_news(now):
        notify(
            session,
            case_row,
            trigger=prefix + "attendance",
            text=f"A&E attendance on {when}",
            about=reference,
            security=security,
            now=now,
        )


def on_social_care_service(
    session: Session, stored: StoredResource, now: datetime, *, social_care: frozenset[str]
) -> None:
    """A new social care service (an EpisodeOfCare or ServiceRequest from social care)."""
    if stored.patient_id is None or stored.body is None or stored.deleted:
        return
    if stored.version_id != 1 or stored.source_org not in social_care:
        return  # only new services from social care are news
    resource = orjson.loads(stored.body)
    if resource.get("status") not in {"active", "planned", "waitlist"}:
        return
    if not is_service(resource):
        return
    person_id = person_of(session, stored.patient_id)
    case_row = caseload.open_case_of(session, person_id) if person_id else None
    if case_row is None:
        return
    notify(
        session,
        case_row,
        trigger=f"{stored.resource_type}:{stored.resource_id}:new",
        text="A new social care service was recorded",
        about=f"{stored.resource_type}/{stored.resource_id}",
        security=_security(resource),
        now=now,
    )


def on_care_plan(session: Session, stored: StoredResource, now: datetime) -> None:
    """A care plan written by another organisation (a GP's, the hospital's) notifies the
    coordinator; the shared plan itself is kept by ``coordination.care_plan``."""
    if stored.patient_id is None or stored.body is None:
        return
    person_id = person_of(session, stored.patient_id)
    if person_id is None:
        return
    plan = orjson.loads(stored.body)
    reference = f"CarePlan/{stored.resource_id}"
    case_row = caseload.open_case_of(session, person_id)
    if case_row is None:
        return
    team = teams.get_team(session, case_row.team_id)
    if team is None or stored.source_org == team.host:
        return
    notify(
        session,
        case_row,
        trigger=f"CarePlan:{stored.resource_id}:v{stored.version_id}",
        text=f"The care plan was changed by {stored.source_org or 'another organisation'}",
        about=reference,
        security=_security(plan),
        now=now,
    )


def on_person(session: Session, person_id: str, now: datetime) -> int:
    """A Person's links changed (a data steward undid a wrong link, or records were moved):
    the open tasks and the alerts raised for this person from a hospital record that is no
    longer theirs are withdrawn, and what the worklist says about their stays is put right.
    Returns how many tasks were withdrawn."""
    withdrawn = 0
    rows = session.scalars(
        select(TaskRow).where(
            TaskRow.person_id == person_id,
            TaskRow.trigger.startswith("enc:"),
            TaskRow.status.in_(sorted(OPEN)),
        )
    ).all()
    for row in rows:
        encounter_id = str(row.trigger).split(":")[1]
        if _belongs_to(session, encounter_id, person_id):
            continue
        tasks.set_status(
            session,
            row,
            "cancelled",
            now=now,
            note="Raised through a link between two people's records that has been undone",
        )
        _withdraw_alert(session, str(row.trigger), now)
        withdrawn += 1
    state = session.get(PersonStateRow, person_id)
    if state is not None:
        for field, moment in (("admission", "admitted_at"), ("discharge", "discharged_at")):
            reference = getattr(state, field)
            if reference and not _belongs_to(
                session, reference.removeprefix("Encounter/"), person_id
            ):
                setattr(state, field, None)
                setattr(state, moment, None)
                state.updated_at = now
    session.flush()
    return withdrawn


def _belongs_to(session: Session, encounter_id: str, person_id: str) -> bool:
    encounter = get_current(session, "Encounter", encounter_id)
    if encounter is None or encounter.patient_id is None:
        return False
    return person_of(session, encounter.patient_id) == person_id


def _withdraw_alert(session: Session, trigger: str, now: datetime) -> None:
    stored = get_current(session, "Communication", _communication_id(trigger))
    if stored is None or stored.body is None or stored.deleted:
        return
    communication = orjson.loads(stored.body)
    if communication.get("status") == "entered-in-error":
        return
    communication["status"] = "entered-in-error"
    update(session, "Communication", stored.resource_id, communication, now=now)

"""Coordination's outbox consumers (decision 7): what it does when a record changes.

All run in the dispatcher's transaction, so what they write commits with the event's
"processed" mark, and a failure retries both (each is idempotent). Identity's handler runs
first for a Patient, so a record that has just arrived is already filed under its Person.

- Case-finding queues the person a changed Patient, Condition, Encounter, EpisodeOfCare or
  ServiceRequest belongs to; the dispatcher's deferred work re-scores the queue in bulk after
  each batch, so re-scoring never holds up the alerts behind it.
- Alerts: hospital Encounters (admissions, discharges, cancellations, A&E attendances), new
  social care services and care plan changes (``coordination.alert.service``).
- Tasks: a Task changed through the FHIR API (accepted, completed...) updates the worklist.
- Identity: a Person whose links changed (a wrong link undone) loses the tasks and alerts
  raised from records no longer theirs, and is re-scored.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from consent.agreements import Agreement
from coordination.alert import service as alerts
from coordination.case_finding import service as case_finding
from coordination.case_finding.facts import TYPES
from coordination.settings import CoordinationSettings
from coordination.task import service as tasks
from fhir_gateway.api import AgreementStore, Deferred, Event, Handler, get_current, person_of


@dataclass(frozen=True, slots=True)
class Consumers:
    handlers: dict[str, list[Handler]]
    deferred: tuple[Deferred, ...]


def registry(settings: CoordinationSettings, *, agreement_path: str | None = None) -> Consumers:
    agreements = AgreementStore(default_path=agreement_path)

    def agreement_in(session: Session) -> Agreement:
        def same_session() -> AbstractContextManager[Session]:
            return nullcontext(session)

        return agreements.current(same_session)

    def rescore(session: Session, event: Event, now: datetime) -> None:
        """Queue the person the changed record belongs to (re-scored in bulk, after the
        batch, by ``rescore_queued``)."""
        if event.patient_id is None:
            return
        person = person_of(session, event.patient_id)
        if person is not None:
            case_finding.queue(session, person, now=now)

    def rescore_queued(session: Session, now: datetime) -> int:
        population = case_finding.population(session, agreement_in(session), settings)
        return case_finding.rescore_queued(session, population=population, now=now)

    def stored(act: Callable[..., None], **extra: Callable[[Session], object]) -> Handler:
        def handle(session: Session, event: Event, now: datetime) -> None:
            current = get_current(session, event.resource_type, event.resource_id)
            if current is None:
                return
            act(session, current, now, **{k: f(session) for k, f in extra.items()})

        return handle

    def social_care(session: Session) -> frozenset[str]:
        parties = agreement_in(session).parties.values()
        return frozenset(p.ods for p in parties if p.kind == "social-care")

    def person_changed(session: Session, event: Event, now: datetime) -> None:
        alerts.on_person(session, event.resource_id, now)
        if settings.casefind_on_events:
            case_finding.queue(session, event.resource_id, now=now)

    handlers: dict[str, list[Handler]] = {
        "Person": [person_changed],
        "Encounter": [stored(alerts.on_encounter)],
        "EpisodeOfCare": [stored(alerts.on_social_care_service, social_care=social_care)],
        "ServiceRequest": [stored(alerts.on_social_care_service, social_care=social_care)],
        "CarePlan": [stored(alerts.on_care_plan)],
        "Task": [stored(tasks.on_task)],
    }
    if settings.casefind_on_events:
        for resource_type in TYPES:
            handlers.setdefault(resource_type, []).append(rescore)
    deferred: tuple[Deferred, ...] = (rescore_queued,) if settings.casefind_on_events else ()
    return Consumers(handlers, deferred)

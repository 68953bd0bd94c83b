"""Identity's outbox handlers: a source Patient written or deleted is (re)filed under a Person."""

from datetime import datetime

import orjson
from sqlalchemy.orm import Session

from fhir_gateway.events import Deferred, Event, Handler
from fhir_gateway.identity import service
from fhir_gateway.store import repository


def on_patient(session: Session, event: Event, now: datetime) -> None:
    """File the Patient's current version (a later event for it finds it unchanged)."""
    stored = repository.get_current(session, "Patient", event.resource_id)
    if stored is None or stored.deleted or stored.body is None:
        service.forget_patient(session, event.resource_id, now=now)
        return
    service.link_patient(session, orjson.loads(stored.body), now=now)


HANDLERS: dict[str, list[Handler]] = {"Patient": [on_patient]}
# Deferred work: keep the name counts' sums short.
DEFERRED: tuple[Deferred, ...] = (service.fold_name_counts,)

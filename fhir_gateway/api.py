"""What coordination may use of the gateway (an import-linter contract keeps it to this).

Coordination stores its FHIR resources (teams, coordination episodes, tasks, care plans) in the
gateway's store like any source does, so they are labelled, indexed, audited, searchable and
under consent; it reacts to changes through the outbox; and it asks consent, through the
helpers here, what a caller may see. Its own read models (ranked lists, caseloads,
worklists) live in its own tables on the same ``Base``.
"""

from collections.abc import Sequence
from datetime import datetime

from fastapi import Request
from sqlalchemy.orm import Session

from fhir_gateway.access.request import (
    agreement_async,
    agreement_now,
    audit_record,
    per_person,
    visible_for_person,
)
from fhir_gateway.access.service import AgreementStore
from fhir_gateway.audit.repository import add_events
from fhir_gateway.auth.dependencies import (
    access,
    authenticate,
    require_scope,
    require_whole_scope,
)
from fhir_gateway.db import Base, UnitOfWork
from fhir_gateway.events import Deferred, Dispatcher, Event, Handler, combine
from fhir_gateway.feeds import ODS_SYSTEM, organization, source_uri
from fhir_gateway.identity.service import joined_patients, patients_of, person_of
from fhir_gateway.outcomes import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    OutcomeError,
    PreconditionFailed,
    PreconditionRequired,
    Unprocessable,
)
from fhir_gateway.record.population import (
    Registration,
    SourceRow,
    encounters_between,
    persons_with_objections,
    records_of,
    registrations,
)
from fhir_gateway.rest.http import etag, parse_if_match
from fhir_gateway.store.everything import everything
from fhir_gateway.store.models import BigId, ResourceRow, UtcDateTime
from fhir_gateway.store.repository import StoredResource, get_current, get_current_many
from fhir_gateway.store.service import WriteResult, create, format_instant, new_id, update
from fhir_gateway.validation import dumps

__all__ = [
    "ODS_SYSTEM",
    "AgreementStore",
    "Base",
    "BigId",
    "Conflict",
    "Deferred",
    "Dispatcher",
    "Event",
    "Forbidden",
    "Handler",
    "Invalid",
    "NotFound",
    "OutcomeError",
    "PreconditionFailed",
    "PreconditionRequired",
    "Registration",
    "ResourceRow",
    "SourceRow",
    "StoredResource",
    "UnitOfWork",
    "Unprocessable",
    "UtcDateTime",
    "WriteResult",
    "access",
    "add_events",
    "agreement_async",
    "agreement_now",
    "audit_record",
    "authenticate",
    "combine",
    "create",
    "dumps",
    "encounters_between",
    "etag",
    "format_instant",
    "get_current",
    "get_current_many",
    "joined_patients",
    "new_id",
    "organization",
    "parse_if_match",
    "patients_of",
    "per_person",
    "person_of",
    "persons_with_objections",
    "records_of",
    "registrations",
    "require_scope",
    "require_whole_scope",
    "source_uri",
    "update",
    "visible_for_person",
    "visible_patient",
    "visible_record",
]


def visible_patient(
    request: Request, session: Session, patient_id: str, *, now: datetime
) -> StoredResource | None:
    """The source Patient if the caller may see it under consent, else None (as for a
    Patient that does not exist)."""
    visible = visible_for_person(request, session, [patient_id], now=now).within
    stored = get_current(session, "Patient", patient_id, visible=visible)
    return None if stored is None or stored.deleted else stored


def visible_record(
    request: Request, session: Session, patient_id: str, *, types: Sequence[str], now: datetime
) -> tuple[str | None, list[StoredResource]]:
    """The Person ``patient_id`` is filed under, and the resources of ``types`` across all of
    that person's source patients that the caller may see (consent applied in the query)."""
    person_id, patient_ids = joined_patients(session, patient_id)
    visible = visible_for_person(request, session, [*patient_ids, patient_id], now=now).within
    found: list[StoredResource] = []
    cursor: int | None = None
    while True:
        page = everything(
            session,
            patient_ids or [patient_id],
            count=1000,
            cursor=cursor,
            types=types,
            visible=visible,
        )
        found.extend(r for r in page.resources if r.body and r.resource_type in types)
        if page.next_cursor is None:
            return person_id, found
        cursor = page.next_cursor

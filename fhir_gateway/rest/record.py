"""The joined-up record for people to read: ``GET /record/{patient id}`` returns the summary
of the person that patient belongs to (JSON now; the web pages will render the same)."""

from datetime import UTC, datetime

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from consent.audit import Action
from consent.context import CallerKind
from fhir_gateway.access import request as consent
from fhir_gateway.access.people import person_references
from fhir_gateway.audit.repository import add_events
from fhir_gateway.auth.dependencies import access, authenticate, require_scope
from fhir_gateway.feeds.registry import RegistryStore, names
from fhir_gateway.identity import service as identity
from fhir_gateway.record.summary import summarise
from fhir_gateway.search.registry import SUPPORTED_TYPES
from fhir_gateway.store import service
from fhir_gateway.store.everything import everything
from fhir_gateway.store.repository import StoredResource
from fhir_gateway.store.visibility import scope_of, something_withheld

router = APIRouter(prefix="/record", tags=["record"], dependencies=[Depends(authenticate)])


def _all_resources(
    session: Session, patient_ids: list[str], types: list[str], visible: ColumnElement[bool]
) -> list[StoredResource]:
    resources: list[StoredResource] = []
    cursor: int | None = None
    while True:
        page = everything(
            session, patient_ids, count=1000, cursor=cursor, types=types, visible=visible
        )
        resources.extend(r for r in page.resources if r.body)
        if page.next_cursor is None:
            return resources
        cursor = page.next_cursor


@router.get("/{patient_id}")
def record_summary(request: Request, patient_id: str) -> Response:
    context = access(request)
    require_scope(context, "Patient", "r")
    # Only the types the token's scopes let the caller read go into the summary.
    readable = sorted(context.readable_types(SUPPORTED_TYPES))
    now = datetime.now(UTC)
    store: RegistryStore = request.app.state.source_systems
    systems = names(store.current(request.app.state.unit_of_work))
    with request.app.state.unit_of_work() as session:
        person_id, patient_ids = identity.joined_patients(session, patient_id)
        visible = consent.visible_for_person(
            request, session, [*patient_ids, patient_id], now=now
        ).within
        service.read(session, "Patient", patient_id, visible=visible)
        stored = _all_resources(session, patient_ids, readable, visible)
        persons = person_references(session, (r.patient_id for r in stored)).values()
        record = consent.audit_record(request, action=Action.READ, interaction="summary", now=now)
        add_events(session, consent.per_person(record, persons))
        # Never for the person themselves: it would hint at what is not for them.
        withheld = context.kind is not CallerKind.PATIENT and something_withheld(
            session,
            patient_ids=list(patient_ids),
            visible=visible,
            in_scope=scope_of(consent.visible_sync(request)),
        )
    summary = {
        "person": f"Person/{person_id}" if person_id else None,
        # Only the source patients whose records the caller may see are named.
        "patients": sorted({f"Patient/{r.patient_id}" for r in stored if r.patient_id}),
        **summarise([orjson.loads(r.body) for r in stored if r.body], systems),
        # That something is withheld, never what or how much (sealed items never count).
        "withheld": withheld,
    }
    return Response(orjson.dumps(summary), media_type="application/json")

"""The joined-up record for people to read: ``GET /record/{patient id}`` returns the summary
of the person that patient belongs to (JSON now; the web pages will render the same)."""

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from fhir_gateway.auth.dependencies import access, authenticate, require_scope
from fhir_gateway.identity import service as identity
from fhir_gateway.record.summary import summarise
from fhir_gateway.search.registry import SUPPORTED_TYPES
from fhir_gateway.store import service
from fhir_gateway.store.everything import everything

router = APIRouter(prefix="/record", tags=["record"], dependencies=[Depends(authenticate)])


def _all_resources(
    session: Session, patient_ids: list[str], types: list[str]
) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = []
    cursor: int | None = None
    while True:
        page = everything(session, patient_ids, count=1000, cursor=cursor, types=types)
        resources.extend(orjson.loads(r.body) for r in page.resources if r.body)
        if page.next_cursor is None:
            return resources
        cursor = page.next_cursor


@router.get("/{patient_id}")
def record_summary(request: Request, patient_id: str) -> Response:
    context = access(request)
    require_scope(context, "Patient", "r")
    # Only the types the token's scopes let the caller read go into the summary.
    readable = sorted(context.readable_types(SUPPORTED_TYPES))
    with request.app.state.unit_of_work() as session:
        service.read(session, "Patient", patient_id)
        person_id, patient_ids = identity.joined_patients(session, patient_id)
        resources = _all_resources(session, patient_ids, readable)
    summary = {
        "person": f"Person/{person_id}" if person_id else None,
        "patients": [f"Patient/{p}" for p in patient_ids],
        **summarise(resources),
    }
    return Response(orjson.dumps(summary), media_type="application/json")

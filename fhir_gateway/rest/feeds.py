"""Source feeds over HTTP: HL7 v2 ADT messages, and the dead-letter store.

``POST /feeds/hl7v2`` takes one message (ER7 text) and answers with its HL7 ACK. As in HL7
over HTTP, the HTTP status is 200 whenever an ACK is returned, whatever its code (AA, AE or
AR): the ACK is the answer, and senders that retry on a non-200 would otherwise resend a
message that can never succeed. The code is also in the ``X-HL7-Ack`` header.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy.orm import Session

from fhir_gateway.access import request as consent
from fhir_gateway.auth.dependencies import access, authenticate, require_scope
from fhir_gateway.feeds import adt
from fhir_gateway.outcomes import Invalid, UnsupportedMediaType
from fhir_gateway.rest.http import media_type, read_body

router = APIRouter(
    prefix="/feeds",
    tags=["feeds"],
    dependencies=[Depends(authenticate), Depends(consent.bind_writer)],
)

HL7_MEDIA = "x-application/hl7-v2+er7"
ACCEPTED_MEDIA = {HL7_MEDIA, "application/hl7-v2", "text/plain", "application/edi-hl7"}


def _uow(request: Request) -> Callable[[], AbstractContextManager[Session]]:
    factory: Callable[[], AbstractContextManager[Session]] = request.app.state.unit_of_work
    return factory


def _require_adt_scopes(request: Request) -> None:
    """ADT messages create and update Patients and Encounters: the caller needs both."""
    context = access(request)
    for resource_type in ("Patient", "Encounter"):
        for permission in ("c", "u"):
            require_scope(context, resource_type, permission)


def _base(request: Request) -> str:
    return str(request.app.state.gateway_settings.base_url).rstrip("/")


@router.post("/hl7v2")
async def hl7v2_message(request: Request) -> Response:
    _require_adt_scopes(request)
    kind = media_type(request.headers.get("content-type"))
    if kind not in ACCEPTED_MEDIA:
        raise UnsupportedMediaType(
            f"Send HL7 v2 messages as {HL7_MEDIA} (or text/plain), not '{kind or 'nothing'}'"
        )
    limit = request.app.state.gateway_settings.max_body_bytes
    body = await read_body(request, limit=limit)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("latin-1")  # HL7 v2's traditional 8-bit encoding
    if not text.strip():
        raise Invalid("The request carries no HL7 message")
    unit_of_work, base = _uow(request), _base(request)
    receipt = await run_in_threadpool(
        adt.receive, unit_of_work, text, now=datetime.now(UTC), base_url=base
    )
    return Response(receipt.ack, media_type=HL7_MEDIA, headers={"X-HL7-Ack": receipt.code})


@router.get("/hl7v2/dead-letters")
def dead_letters(request: Request, limit: int = 100) -> Response:
    _require_adt_scopes(request)
    if not 1 <= limit <= 1000:
        raise Invalid("limit must be between 1 and 1000")
    with _uow(request)() as session:
        rows = adt.dead_letters(session, limit=limit)
    return Response(orjson.dumps({"deadLetters": rows}), media_type="application/json")


@router.post("/hl7v2/dead-letters/{message_id}/replay")
async def replay(request: Request, message_id: int) -> Response:
    _require_adt_scopes(request)
    unit_of_work, base = _uow(request), _base(request)
    receipt = await run_in_threadpool(
        adt.replay, unit_of_work, message_id, now=datetime.now(UTC), base_url=base
    )
    return Response(
        orjson.dumps({"message": message_id, "ack": receipt.code, "text": receipt.text}),
        media_type="application/json",
    )

"""Identity's steward API: the review queue (with the evidence for each candidate), accept,
reject, link two records by hand, and unlink.

The steward is the signed-in caller (their Practitioner, or the system client); every
decision is kept (the review row and a Provenance naming the steward) and reversible (unlink,
or accept the other candidate). Reading the queue needs ``Person`` search, deciding needs
``Person`` update, in the token's scopes.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.audit import Action
from consent.context import AccessContext, CallerKind
from fhir_gateway.access import request as consent
from fhir_gateway.audit.repository import add_events, viewers_of
from fhir_gateway.auth.dependencies import access, authenticate, require_scope, steward_of
from fhir_gateway.identity import service
from fhir_gateway.identity.models import IdentityUnlink
from fhir_gateway.outcomes import Forbidden, Invalid
from fhir_gateway.rest.http import read_body
from fhir_gateway.validation import parse_json

router = APIRouter(prefix="/identity", tags=["identity"], dependencies=[Depends(authenticate)])


def _require_steward(request: Request, permission: str) -> AccessContext:
    """Identity's decisions join and separate people's records: only a role the agreement
    names as identity steward (or a system client), with Person in the token's scopes."""
    context = access(request)
    require_scope(context, "Person", permission)
    if context.kind is CallerKind.SYSTEM:
        return context
    roles = consent.agreement_now(request).identity_steward_roles
    if context.kind is not CallerKind.USER or context.role not in roles:
        raise Forbidden("The sharing agreement does not name this role as an identity steward")
    return context


def _audit(
    request: Request,
    session: Session,
    interaction: str,
    person_id: str | None,
    reason: str | None = None,
) -> None:
    """A steward's decision is an administrative change, audited with the change itself."""
    record = consent.audit_record(
        request,
        action=Action.UPDATE,
        interaction=interaction,
        person=f"Person/{person_id}" if person_id else None,
    )
    add_events(session, [replace(record, detail=reason)])


def _steward(request: Request) -> str:
    return steward_of(_require_steward(request, "u"))


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _uow(request: Request) -> AbstractContextManager[Session]:
    factory: Callable[[], AbstractContextManager[Session]] = request.app.state.unit_of_work
    return factory()


async def _body(request: Request, *required: str) -> dict[str, str]:
    limit = request.app.state.gateway_settings.max_body_bytes
    data = parse_json(await read_body(request, limit=limit))
    if not isinstance(data, dict):
        raise Invalid("The request body must be a JSON object")
    values: dict[str, str] = {}
    for name in required:
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise Invalid(f"'{name}' is required and must be a non-empty string")
        values[name] = value.strip()
    return values


@router.get("/reviews")
def list_reviews(request: Request, limit: int = 100) -> Response:
    _require_steward(request, "s")
    if not 1 <= limit <= 1000:
        raise Invalid("limit must be between 1 and 1000")
    with _uow(request) as session:
        return _json({"reviews": service.open_reviews(session, limit=limit)})


@router.post("/reviews/{review_id}/accept")
async def accept(request: Request, review_id: int) -> Response:
    steward = _steward(request)

    def work() -> str:
        with _uow(request) as session:
            person = service.accept_review(
                session, review_id, steward=steward, now=datetime.now(UTC)
            )
            _audit(request, session, "identity-accept", person)
            return person

    person_id = await run_in_threadpool(work)
    return _json({"review": review_id, "status": "accepted", "person": f"Person/{person_id}"})


@router.post("/reviews/{review_id}/reject")
async def reject(request: Request, review_id: int) -> Response:
    steward = _steward(request)

    def work() -> None:
        with _uow(request) as session:
            service.reject_review(session, review_id, steward=steward, now=datetime.now(UTC))
            _audit(request, session, "identity-reject", None)

    await run_in_threadpool(work)
    return _json({"review": review_id, "status": "rejected"})


@router.post("/link")
async def link(request: Request) -> Response:
    steward = _steward(request)
    body = await _body(request, "patient", "other", "reason")
    patient_id = body["patient"].removeprefix("Patient/")
    other_id = body["other"].removeprefix("Patient/")

    def work() -> str:
        with _uow(request) as session:
            person = service.link(
                session,
                patient_id,
                other_id,
                steward=steward,
                now=datetime.now(UTC),
                reason=body["reason"],
            )
            _audit(request, session, "identity-link", person, body["reason"])
            return person

    person_id = await run_in_threadpool(work)
    return _json({"patient": f"Patient/{patient_id}", "person": f"Person/{person_id}"})


@router.post("/unlink")
async def unlink(request: Request) -> Response:
    steward = _steward(request)
    body = await _body(request, "patient", "reason")
    patient_id = body["patient"].removeprefix("Patient/")

    def work() -> str:
        with _uow(request) as session:
            person = service.unlink(
                session,
                patient_id,
                steward=steward,
                now=datetime.now(UTC),
                reason=body["reason"],
            )
            _audit(request, session, "identity-unlink", person, body["reason"])
            return person

    person_id = await run_in_threadpool(work)
    return _json({"patient": f"Patient/{patient_id}", "person": f"Person/{person_id}"})


@router.get("/unlinks")
def unlinks(request: Request, patient: str) -> Response:
    """For privacy officers: each time ``patient`` was taken out of a Person it had been
    wrongly joined to, and everyone who viewed that joined record meanwhile."""
    consent.require_privacy_officer(request, consent.agreement_now(request))
    patient_id = patient.removeprefix("Patient/")
    with _uow(request) as session:
        found = session.scalars(
            select(IdentityUnlink)
            .where(IdentityUnlink.patient_id == patient_id)
            .order_by(IdentityUnlink.pk.desc())
        ).all()
        answer = [
            {
                "patient": f"Patient/{u.patient_id}",
                "person": f"Person/{u.person_id}",
                "joined": u.joined_at.isoformat(),
                "unlinked": u.unlinked_at.isoformat(),
                "steward": u.steward,
                "reason": u.reason,
                "viewers": viewers_of(
                    session,
                    person=f"Person/{u.person_id}",
                    since=u.joined_at,
                    until=u.unlinked_at,
                ),
            }
            for u in found
        ]
        add_events(
            session,
            [
                consent.audit_record(
                    request,
                    action=Action.READ,
                    interaction="identity-viewers",
                    person=f"Patient/{patient_id}",
                )
            ],
        )
    return _json({"unlinks": answer})

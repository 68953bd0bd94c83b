"""The consent layer's own endpoints: break-glass, self-claimed relationships, and the
sharing agreement's administration (privacy officers). Every one is audited."""

from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy import select

from fhir_gateway.access import grants
from fhir_gateway.access import request as consent
from fhir_gateway.access.models import SharingAgreementRow
from fhir_gateway.access.service import AgreementStore, load_agreement
from fhir_gateway.audit.repository import add_events
from fhir_gateway.auth.dependencies import access, authenticate
from fhir_gateway.outcomes import Invalid
from fhir_gateway.rest.http import read_body
from fhir_gateway.validation import parse_json

router = APIRouter(tags=["consent"], dependencies=[Depends(authenticate)])


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _query(request: Request) -> str:
    return request.url.path


async def _body(request: Request) -> dict[str, Any]:
    data = parse_json(
        await read_body(request, limit=request.app.state.gateway_settings.max_body_bytes)
    )
    if not isinstance(data, dict):
        raise Invalid("The request body must be a JSON object")
    return data


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"'{name}' is required and must be a non-empty string")
    return value.strip()


@router.post("/consent/break-glass")
async def break_glass(request: Request) -> Response:
    """Break glass for one person: {"patient": "Patient/<id>", "reason": "..."}."""
    data = await _body(request)
    patient_id = _text(data, "patient").removeprefix("Patient/")
    reason = _text(data, "reason")
    agreement = await consent.agreement_async(request)

    def work() -> dict[str, Any]:
        with request.app.state.unit_of_work() as session:
            grant = grants.break_glass(
                session,
                context=access(request),
                agreement=agreement,
                patient_id=patient_id,
                reason=reason,
                query=_query(request),
                now=datetime.now(UTC),
            )
            return {
                "grant": grant.grant_id,
                "patient": f"Patient/{patient_id}",
                "expires": grant.expires_at.isoformat(),
                "note": "Read the record with purpose of use BTG; every access is audited "
                "and privacy officers review every break-glass.",
            }

    # The grant, its AuditEvent and the privacy officers' queue entry are committed here,
    # before anything of the record is released.
    return _json(await run_in_threadpool(work), status=201)


@router.get("/consent/break-glass")
def break_glass_queue(request: Request, limit: int = 100) -> Response:
    """The privacy officers' break-glass queue (newest first)."""
    if not 1 <= limit <= 1000:
        raise Invalid("limit must be between 1 and 1000")
    agreement = consent.agreement_now(request)
    consent.require_privacy_officer(request, agreement)
    now = datetime.now(UTC)
    with request.app.state.unit_of_work() as session:
        rows = grants.list_break_glass(session, since=None, limit=limit)
        add_events(
            session,
            [
                consent.audit_record(
                    request,
                    action=consent.Action.READ,
                    interaction="break-glass-queue",
                    now=now,
                )
            ],
        )
        return _json(
            {
                "grants": [
                    {
                        "grant": r.grant_id,
                        "practitioner": r.practitioner,
                        "organisation": r.organisation,
                        "role": r.role,
                        "patient": f"Patient/{r.patient_id}",
                        "reason": r.reason,
                        "granted": r.granted_at.isoformat(),
                        "expires": r.expires_at.isoformat(),
                        "active": r.expires_at > now,
                    }
                    for r in rows
                ]
            }
        )


@router.post("/consent/relationships")
async def claim_relationship(request: Request) -> Response:
    """Claim a legitimate relationship: {"patient": "Patient/<id>", "reason": "..."}."""
    data = await _body(request)
    patient_id = _text(data, "patient").removeprefix("Patient/")
    reason = _text(data, "reason")
    agreement = await consent.agreement_async(request)

    def work() -> dict[str, Any]:
        with request.app.state.unit_of_work() as session:
            claimed = grants.claim_relationship(
                session,
                context=access(request),
                agreement=agreement,
                patient_id=patient_id,
                reason=reason,
                query=_query(request),
                now=datetime.now(UTC),
            )
            return {
                "patient": f"Patient/{patient_id}",
                "practitioner": claimed.practitioner,
                "expires": claimed.ends_at.isoformat() if claimed.ends_at else None,
            }

    return _json(await run_in_threadpool(work), status=201)


@router.get("/admin/agreement")
def current_agreement(request: Request) -> Response:
    agreement = consent.agreement_now(request)
    consent.require_privacy_officer(request, agreement)
    with request.app.state.unit_of_work() as session:
        rows = session.execute(
            select(
                SharingAgreementRow.version,
                SharingAgreementRow.loaded_at,
                SharingAgreementRow.loaded_by,
            ).order_by(SharingAgreementRow.pk.desc())
        ).all()
        add_events(
            session,
            [
                consent.audit_record(
                    request, action=consent.Action.READ, interaction="agreement-read"
                )
            ],
        )
    return _json(
        {
            "inForce": agreement.version,
            "versions": [
                {"version": v, "loaded": at.isoformat(), "loadedBy": by} for v, at, by in rows
            ],
        }
    )


@router.put("/admin/agreement")
async def load(request: Request) -> Response:
    """Load a new version of the sharing agreement (JSON); 422 if it cannot be enforced."""
    document = await _body(request)
    agreement = await consent.agreement_async(request)
    consent.require_privacy_officer(request, agreement)
    context = access(request)
    now = datetime.now(UTC)

    def work() -> str:
        with request.app.state.unit_of_work() as session:
            loaded = load_agreement(
                session,
                document,
                loaded_by=context.user or context.subject,
                now=now,
            )
            add_events(
                session,
                [
                    grants.agreement_change_record(
                        context, version=loaded.version, query=_query(request), now=now
                    )
                ],
            )
            return loaded.version

    version = await run_in_threadpool(work)
    store: AgreementStore = request.app.state.agreements
    store.forget()  # this process applies it from the next request; others within the TTL
    return _json({"inForce": version}, status=200)

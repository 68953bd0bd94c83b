"""Consent for one request: the caller's predicate, and their audit records.

Routers call these; the store compiles the predicate into every query it runs for the
request (``store.visibility``), and the audit records are written in the request's unit of
work, so they commit with the data they describe.
"""

from collections.abc import Iterable
from datetime import UTC, datetime

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from consent.agreements import Agreement
from consent.audit import (
    PRIVACY_OFFICER_ROLES,
    Action,
    AuditRecord,
    Outcome,
    is_privacy_officer,
    record_for,
)

__all__ = [
    "NOBODY",
    "Action",
    "PersonVisibility",
    "agreement_async",
    "agreement_now",
    "audit_record",
    "per_person",
    "person_visibility",
]
from sqlalchemy.orm import Session

from consent.visibility import Predicate
from fhir_gateway.access import writer
from fhir_gateway.access.people import (
    NOBODY,
    PersonVisibility,
    per_person,
    person_facts,
    person_visibility,
)
from fhir_gateway.access.service import AgreementStore, predicate_for
from fhir_gateway.auth.dependencies import access
from fhir_gateway.outcomes import Forbidden


async def bind_writer(request: Request) -> None:
    """Router dependency (after ``authenticate``): bind what this caller may write."""
    writer.bind(
        writer.scope_for(access(request), await agreement_async(request), query=_query(request))
    )


def _query(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def agreement_now(request: Request) -> Agreement:
    """The agreement in force (may read the database: call from the thread pool)."""
    store: AgreementStore = request.app.state.agreements
    return store.current(request.app.state.unit_of_work)


async def agreement_async(request: Request) -> Agreement:
    store: AgreementStore = request.app.state.agreements
    cached = store.fresh()
    if cached is not None:
        return cached
    return await run_in_threadpool(store.current, request.app.state.unit_of_work)


def predicate(request: Request, agreement: Agreement) -> Predicate:
    cached: Predicate | None = getattr(request.state, "visible", None)
    if cached is None:
        cached = predicate_for(access(request), agreement)
        request.state.visible = cached
    return cached


def privacy_officer_roles(agreement: Agreement) -> frozenset[str]:
    """The roles the agreement names as privacy officers (the default where it names none)."""
    return agreement.privacy_officer_roles or PRIVACY_OFFICER_ROLES


def require_privacy_officer(request: Request, agreement: Agreement) -> None:
    """403 unless the caller acts as a privacy officer under ``agreement``."""
    if not is_privacy_officer(access(request), privacy_officer_roles(agreement)):
        raise Forbidden("Only a privacy officer may do this")


def visible_sync(request: Request) -> Predicate:
    return predicate(request, agreement_now(request))


async def visible_async(request: Request) -> Predicate:
    return predicate(request, await agreement_async(request))


def visible_for_person(
    request: Request, session: Session, patient_ids: Iterable[str], *, now: datetime
) -> PersonVisibility:
    ids = sorted(set(patient_ids))
    return person_visibility(visible_sync(request), person_facts(session, ids), ids, now=now)


def audit_record(
    request: Request,
    *,
    action: Action,
    interaction: str,
    now: datetime | None = None,
    person: str | None = None,
    resource: str | None = None,
) -> AuditRecord:
    """The record of a permitted access by this request's caller."""
    return record_for(
        access(request),
        recorded_at=now or datetime.now(UTC),
        action=action,
        interaction=interaction,
        outcome=Outcome.SUCCESS,
        query=_query(request),
        person=person,
        resource=resource,
    )

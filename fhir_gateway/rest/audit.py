"""The audit trail over FHIR (``GET /fhir/AuditEvent``, ``GET /fhir/AuditEvent/{id}``), and the
recording of requests answered with an error.

Only the server writes its audit: every write to ``/fhir/AuditEvent`` (and every other
interaction than read and search on it) is answered 405. This router is included before the
generic FHIR router, whose ``/fhir/{resource_type}`` routes would otherwise take these paths.
"""

import logging
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from consent.audit import patient_view, to_audit_event
from consent.context import AccessContext
from fhir_gateway.access import request as consent
from fhir_gateway.audit import service
from fhir_gateway.auth.dependencies import access, authenticate, require_scope
from fhir_gateway.db import UnitOfWork
from fhir_gateway.outcomes import Invalid, MethodNotAllowed
from fhir_gateway.rest.http import FHIR_JSON, FORM, check_accept, check_content_type, read_body
from fhir_gateway.validation import dumps

log = logging.getLogger("carejoin.audit")

MEDIA = f"{FHIR_JSON}; charset=utf-8"
TYPE = "AuditEvent"

router = APIRouter(prefix="/fhir", tags=["audit"], dependencies=[Depends(authenticate)])


def _uow(request: Request) -> UnitOfWork:
    factory: UnitOfWork = request.app.state.unit_of_work
    return factory


def _base(request: Request) -> str:
    return str(request.app.state.gateway_settings.base_url).rstrip("/")


def _asked(request: Request) -> str:
    query = request.url.query
    return f"{request.url.path}?{query}" if query else request.url.path


def _render(viewer: service.Viewer, entry: service.AuditEntry, base: str) -> dict[str, object]:
    if viewer.is_person:
        return patient_view(entry.record, event_id=entry.event_id)
    return to_audit_event(entry.record, event_id=entry.event_id, base_url=base)


def _search(request: Request, items: list[tuple[str, str]]) -> Response:
    check_accept(request)
    context = access(request)
    require_scope(context, TYPE, "s")
    with _uow(request)() as session:
        page = service.search_events(
            session,
            context=context,
            params=items,
            query=_asked(request),
            now=datetime.now(UTC),
            privacy_roles=consent.privacy_officer_roles(consent.agreement_now(request)),
        )
    base = _base(request)
    kept = [(k, v) for k, v in items if k != "_cursor"]
    path = f"{base}/{TYPE}"
    links = [{"relation": "self", "url": path + (f"?{urlencode(kept)}" if kept else "")}]
    if page.next_cursor is not None:
        links.append(
            {
                "relation": "next",
                "url": f"{path}?{urlencode([*kept, ('_cursor', str(page.next_cursor))])}",
            }
        )
    # Bundle.total is left out on purpose: counting the whole trail on every page would cost
    # more than the page itself, and FHIR makes total optional.
    bundle: dict[str, object] = {"resourceType": "Bundle", "type": "searchset", "link": links}
    if page.entries:
        bundle["entry"] = [
            {
                "fullUrl": f"{path}/{entry.event_id}",
                "resource": _render(page.viewer, entry, base),
                "search": {"mode": "match"},
            }
            for entry in page.entries
        ]
    return Response(dumps(bundle), media_type=MEDIA)


@router.get(f"/{TYPE}")
def search_audit(request: Request) -> Response:
    return _search(request, list(request.query_params.multi_items()))


@router.post(f"/{TYPE}/_search")
async def search_audit_post(request: Request) -> Response:
    if check_content_type(request, allow_form=True) != FORM:
        raise Invalid(f"POST _search takes {FORM} parameters")
    body = await read_body(request, limit=request.app.state.gateway_settings.max_body_bytes)
    items = list(request.query_params.multi_items()) + parse_qsl(
        body.decode(), keep_blank_values=True
    )
    return await run_in_threadpool(_search, request, items)


@router.get(f"/{TYPE}/{{event_id}}")
def read_audit(request: Request, event_id: str) -> Response:
    check_accept(request)
    context = access(request)
    require_scope(context, TYPE, "r")
    with _uow(request)() as session:
        viewer, entry = service.read_event(
            session,
            context=context,
            event_id=event_id,
            query=_asked(request),
            privacy_roles=consent.privacy_officer_roles(consent.agreement_now(request)),
            now=datetime.now(UTC),
        )
    return Response(dumps(_render(viewer, entry, _base(request))), media_type=MEDIA)


_WRITES = ["POST", "PUT", "PATCH", "DELETE"]
_EVERY_METHOD = ["GET", "HEAD", "OPTIONS", *_WRITES]


# Refusals, not operations: left out of the OpenAPI document (where one function on many
# methods would also repeat its operation id).
@router.api_route(f"/{TYPE}", methods=_WRITES, include_in_schema=False)
@router.api_route(f"/{TYPE}/{{rest:path}}", methods=_EVERY_METHOD, include_in_schema=False)
def not_allowed(request: Request) -> Response:
    """The audit trail is written by this server alone, and has no versions or operations."""
    error = MethodNotAllowed(
        f"{request.method} is not allowed on {request.url.path}: the audit trail is read-only "
        "and supports read and search"
    )
    error.headers = {"Allow": "GET"}
    raise error


async def audit_failure(request: Request, status: int, message: str) -> None:
    """Record a request answered with ``status`` >= 400, in a transaction of its own.

    Called by the app's error handlers for every protected path. If the audit cannot be
    written (the database is down, say) the failure is logged and the caller still answers
    with the original error: the client must learn what went wrong with its request.
    """
    if status < 400 or not service.is_audited_path(request.url.path):
        return
    context: AccessContext | None = getattr(request.state, "access", None)
    try:
        await run_in_threadpool(
            service.record_failure,
            _uow(request),
            context=context,
            method=request.method,
            path=request.url.path,
            query_string=request.url.query,
            status=status,
            message=message,
            now=datetime.now(UTC),
        )
    except Exception:
        log.exception(
            "could not audit the %s answer to %s %s", status, request.method, request.url.path
        )

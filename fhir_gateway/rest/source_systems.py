"""The registry of source systems over HTTP, and the middleware that hands it to the writer.

``GET /admin/source-systems``, ``GET /admin/source-systems/{id}``,
``PUT /admin/source-systems/{id}`` (create 201 or replace 200) and ``PUT /admin/source-systems``
(create or replace every system in the body, atomically; others are left as they are): for
privacy officers (the roles the agreement names, as for ``/admin/agreement``), every call
audited, answers as JSON, errors as OperationOutcomes (400 unreadable body, 403 not a privacy
officer, 404 unknown system, 409 an ODS code registered to another system, 422 a field that
cannot be registered: unknown kind, malformed ODS code...).

``SourceRegistryMiddleware`` puts this process's snapshot of the registry (re-read at most
every few seconds) in the request's context for ``access.writer.scope_for``, with whether the
request is a write.
"""

from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from consent.audit import Action
from fhir_gateway.access import request as consent
from fhir_gateway.access import writer
from fhir_gateway.audit.repository import add_events
from fhir_gateway.auth.dependencies import access, authenticate
from fhir_gateway.feeds import registry
from fhir_gateway.feeds.registry import RegistryStore
from fhir_gateway.outcomes import NotFound
from fhir_gateway.rest.http import read_body
from fhir_gateway.validation import parse_json

PATH = "/admin/source-systems"
router = APIRouter(tags=["source systems"], dependencies=[Depends(authenticate)])

WRITING_PATHS = ("/fhir", "/feeds")  # the routers that bind a writer scope
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
READS_BY_POST = ("/_search", "/$match")


def is_write(method: str, path: str) -> bool:
    """Whether a request to the FHIR API or the feeds may write resources."""
    return method.upper() in UNSAFE and not path.rstrip("/").endswith(READS_BY_POST)


class SourceRegistryMiddleware:
    """Puts the registry of source systems in each HTTP request's context (pure ASGI, so
    the context variable reaches the routers' dependencies and their thread pool)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(WRITING_PATHS):
            state = scope["app"].state
            store: RegistryStore = state.source_systems
            found = store.fresh()
            if found is None:
                found = await run_in_threadpool(store.current, state.unit_of_work)
            writer.use_registry(found, writes=is_write(scope["method"], scope["path"]))
        await self.app(scope, receive, send)


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _store(request: Request) -> RegistryStore:
    store: RegistryStore = request.app.state.source_systems
    return store


async def _document(request: Request) -> object:
    limit = request.app.state.gateway_settings.max_body_bytes
    return parse_json(await read_body(request, limit=limit))


def _audit(request: Request, action: Action, interaction: str, resource: str | None = None) -> Any:
    return consent.audit_record(
        request, action=action, interaction=interaction, now=datetime.now(UTC), resource=resource
    )


def _who(request: Request) -> str:
    context = access(request)
    return context.user or context.client_id or context.subject


@router.get(PATH)
def list_source_systems(request: Request) -> Response:
    consent.require_privacy_officer(request, consent.agreement_now(request))
    with request.app.state.unit_of_work() as session:
        found = registry.list_systems(session)
        add_events(session, [_audit(request, Action.READ, "source-systems-read")])
    enforced = bool(found) or _store(request).always_enforced
    return _json({"enforced": enforced, "sourceSystems": [r.to_json() for r in found]})


@router.get(PATH + "/{system_id}")
def read_source_system(request: Request, system_id: str) -> Response:
    consent.require_privacy_officer(request, consent.agreement_now(request))
    with request.app.state.unit_of_work() as session:
        found = registry.get_system(session, system_id)
        if found is None:
            raise NotFound(f"There is no source system '{system_id}'")
        add_events(
            session,
            [_audit(request, Action.READ, "source-system-read", f"SourceSystem/{system_id}")],
        )
    return _json(found.to_json())


@router.put(PATH + "/{system_id}")
async def put_source_system(request: Request, system_id: str) -> Response:
    """Register a source system, or replace what is registered for it (its client list is
    replaced whole; ``"active": false`` stops it sending without forgetting it)."""
    consent.require_privacy_officer(request, await consent.agreement_async(request))
    system = registry.parse_one(system_id, await _document(request))
    by, now = _who(request), datetime.now(UTC)

    def work() -> tuple[registry.Registered, bool]:
        with request.app.state.unit_of_work() as session:
            ((saved, created),) = registry.put_systems(session, [system], by=by, now=now)
            action = Action.CREATE if created else Action.UPDATE
            add_events(
                session,
                [_audit(request, action, "source-system-put", f"SourceSystem/{system_id}")],
            )
            return saved, created

    saved, created = await run_in_threadpool(work)
    _store(request).forget()  # this process applies it from the next request
    return _json(saved.to_json(), status=201 if created else 200)


@router.put(PATH)
async def put_source_systems(request: Request) -> Response:
    """Create or replace every source system in the body (an object by id, or a list), in
    one transaction; systems it does not name are left as they are."""
    consent.require_privacy_officer(request, await consent.agreement_async(request))
    systems = registry.parse_document(await _document(request))
    by, now = _who(request), datetime.now(UTC)

    def work() -> list[tuple[registry.Registered, bool]]:
        with request.app.state.unit_of_work() as session:
            saved = registry.put_systems(session, systems, by=by, now=now)
            add_events(
                session,
                [
                    _audit(
                        request,
                        Action.CREATE if created else Action.UPDATE,
                        "source-system-put",
                        f"SourceSystem/{r.system.id}",
                    )
                    for r, created in saved
                ],
            )
            return saved

    saved = await run_in_threadpool(work)
    _store(request).forget()
    return _json(
        {
            "sourceSystems": [r.to_json() for r, _created in saved],
            "registered": [r.system.id for r, created in saved if created],
            "replaced": [r.system.id for r, created in saved if not created],
        }
    )

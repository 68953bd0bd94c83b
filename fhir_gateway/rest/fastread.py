"""Reads by id answered without the framework's route search and dependency solving.

``GET /fhir/{type}/{id}`` is the service's most frequent request and its cheapest: one
prepared statement (consent's predicate and the AuditEvent's insert inside it) and the
stored JSON sent back as it is. Around it FastAPI tries each route in turn (the read is
about the thirtieth), solves the router's dependencies and passes the request through its
middleware layers, which cost the server more than the read's own code does.

``FastReadMiddleware`` answers exactly the requests the router would give to
``router.read``, by calling what that route calls, in the same order: ``authenticate`` (the
router's first dependency: bearer token or session cookie) and ``router.read_resource`` (the
endpoint's body). The router's second dependency, ``bind_writer``, binds what the caller may
*write* and is left out: a read writes nothing but its AuditEvent, which is not the
caller's write. A request it answers gets the same response and the same audit as from the
router: an ``OutcomeError`` or HTTP exception goes to the app's own exception handlers (the
401, 403, 404 and 410 answers, and their failure AuditEvents), and anything else propagates
to the app's handler of unexpected errors, as from the router.

Which requests are the read's: ``GET /fhir/{type}/{id}`` with a type the store serves and
an id of FHIR's id pattern (``[A-Za-z0-9-.]{1,64}``), except the types whose reads another
router answers (``AuditEvent``, by the audit router, which comes first). No other route of
the app answers a GET of that shape (a test checks the app's route table); anything else
(another method or shape, a ``root_path``, a websocket) passes to the app untouched.
"""

import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from fhir_gateway.auth.dependencies import authenticate
from fhir_gateway.outcomes import OutcomeError
from fhir_gateway.rest import audit
from fhir_gateway.rest import router as fhir
from fhir_gateway.search.registry import SUPPORTED_TYPES

Handler = Callable[[Request, Exception], Awaitable[Response]]


FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
OTHER_ROUTERS = frozenset({audit.TYPE})  # their routers answer GET /fhir/{type}/{id}
READ_TYPES = SUPPORTED_TYPES - OTHER_ROUTERS


def read_target(scope: Scope) -> tuple[str, str] | None:
    """(type, id) if this request is a FHIR read that ``router.read`` would answer."""
    if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
        return None
    parts = scope["path"].split("/")
    if len(parts) != 4 or parts[0] or parts[1] != "fhir":
        return None
    resource_type, resource_id = parts[2], parts[3]
    if resource_type not in READ_TYPES or not FHIR_ID.fullmatch(resource_id):
        return None
    return resource_type, resource_id


class FastReadMiddleware:
    """Answers the FHIR read interaction itself (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = read_target(scope)
        if target is None:
            await self.app(scope, receive, send)
            return
        resource_type, resource_id = target
        scope["path_params"] = {"resource_type": resource_type, "resource_id": resource_id}
        scope["endpoint"] = fhir.read
        request = Request(scope, receive)
        try:
            await authenticate(request)
            response = await fhir.read_resource(request, resource_type, resource_id)
        except (OutcomeError, HTTPException) as exc:
            response = await self._handler(scope, exc)(request, exc)
        await response(scope, receive, send)

    @staticmethod
    def _handler(scope: Scope, exc: Exception) -> Handler:
        """The app's handler for ``exc`` (as its exception middleware would choose it)."""
        handlers: dict[Any, Handler] = scope["app"].exception_handlers
        if isinstance(exc, HTTPException) and exc.status_code in handlers:
            return handlers[exc.status_code]
        for kind in type(exc).__mro__:
            if kind is not Exception and kind in handlers:
                return handlers[kind]
        raise exc

"""The gateway's app factory: ``create_app(settings, extensions=())``.

Builds the engine, session factory, routers and error handlers explicitly; nothing connects at
import time. Every error leaves as a FHIR OperationOutcome with the right status, and nothing
a client sends produces a 500.
"""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from fhir_gateway import events, migrate
from fhir_gateway.access.service import AgreementStore
from fhir_gateway.audit import sealer
from fhir_gateway.auth import dependencies as auth
from fhir_gateway.auth.clock import Clock, utc_now
from fhir_gateway.auth.personas import Persona
from fhir_gateway.db import create_engine_for, session_factory_for
from fhir_gateway.feeds.registry import RegistryStore
from fhir_gateway.identity import handlers as identity_handlers
from fhir_gateway.outcomes import Issue, OutcomeError, outcome
from fhir_gateway.rest.audit import audit_failure
from fhir_gateway.rest.audit import router as audit_router
from fhir_gateway.rest.auth import router as auth_router
from fhir_gateway.rest.consent import router as consent_router
from fhir_gateway.rest.errors import UnexpectedErrors
from fhir_gateway.rest.fastread import FastReadMiddleware
from fhir_gateway.rest.feeds import router as feeds_router
from fhir_gateway.rest.identity import router as identity_router
from fhir_gateway.rest.record import router as record_router
from fhir_gateway.rest.router import MEDIA
from fhir_gateway.rest.router import public_router as fhir_public_router
from fhir_gateway.rest.router import router as fhir_router
from fhir_gateway.rest.signin import router as signin_router
from fhir_gateway.rest.source_systems import SourceRegistryMiddleware
from fhir_gateway.rest.source_systems import router as source_systems_router
from fhir_gateway.settings import GatewaySettings
from fhir_gateway.store.reads import ResourceReader, reader_for
from fhir_gateway.validation import dumps

log = logging.getLogger("carejoin.gateway")

Extension = Callable[[FastAPI], None]

STATUS_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
}


def _outcome_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return Response(content=dumps(body), status_code=status, media_type=MEDIA, headers=headers)


def create_app(
    settings: GatewaySettings,
    *,
    extensions: Sequence[Extension] = (),
    engine: Engine | None = None,
    version: str = "0.1.0",
    personas: Sequence[Persona] = (),
    clock: Clock = utc_now,
) -> FastAPI:
    """The FHIR gateway as an ASGI app. ``engine`` may be given (tests, the CLI);
    ``personas`` are whom the development issuer's sign-in page offers (the composition
    root's demo people); ``clock`` is the time sign-in runs on (tests move it)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = app.state.engine is None
        if owned:
            app.state.engine = create_engine_for(
                settings.database_url,
                pool_size=settings.pool_size,
                pool_pre_ping=settings.pool_pre_ping,
                echo=settings.echo_sql,
            )
            _bind(app, app.state.engine)
        # Refuse to start on a database without this version's migrations, rather than
        # answer every request that touches what they add with a 500.
        migrate.require_current(app.state.engine)
        reader: ResourceReader = app.state.reader
        await reader.open()
        dispatching = None
        if settings.dispatch_events:
            dispatching = asyncio.create_task(
                events.run_forever(
                    app.state.dispatcher,
                    app.state.session_factory,
                    interval=settings.dispatch_interval,
                )
            )
        sealing = None
        # The sealer is a background worker like the dispatcher, so it runs only where they
        # run (tests drive both explicitly); an interval of 0 turns it off on its own.
        if settings.dispatch_events and settings.audit_seal_interval > 0:
            sealing = asyncio.create_task(
                sealer.run_forever(
                    app.state.session_factory,
                    interval=settings.audit_seal_interval,
                    block_size=settings.audit_block_size,
                )
            )
        try:
            yield
        finally:
            for task in (dispatching, sealing):
                if task is not None:
                    task.cancel()
                    with suppress(asyncio.CancelledError):
                        await task
            await reader.close()
            if owned:
                app.state.engine.dispose()

    app = FastAPI(
        title="carejoin",
        version=version,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.gateway_settings = settings
    app.state.dispatcher = default_dispatcher()
    app.state.engine = engine
    if engine is not None:
        _bind(app, engine)
    auth.install(app, settings.auth, personas=personas, clock=clock)
    app.state.agreements = AgreementStore(default_path=settings.agreement_path)
    # The registry of source systems is enforced once anything is registered, and always
    # where the service trusts the partnership's identity provider (production).
    app.state.source_systems = RegistryStore(always_enforced=not settings.auth.development_issuer)
    app.add_middleware(SourceRegistryMiddleware)
    # Outside the registry's middleware, which a read does not need.
    app.add_middleware(FastReadMiddleware)
    app.include_router(auth_router)
    app.include_router(signin_router)
    app.include_router(fhir_public_router)
    app.include_router(audit_router)  # before fhir_router, whose /fhir/{type} would take it
    app.include_router(fhir_router)
    app.include_router(identity_router)
    app.include_router(feeds_router)
    app.include_router(record_router)
    app.include_router(consent_router)
    app.include_router(source_systems_router)
    _install_error_handlers(app)
    for extension in extensions:
        extension(app)
    return app


def default_dispatcher() -> events.Dispatcher:
    """The gateway's outbox handlers (identity); extensions may register more."""
    return events.Dispatcher(events.combine(identity_handlers.HANDLERS), identity_handlers.DEFERRED)


def _bind(app: FastAPI, engine: Engine) -> None:
    factory = session_factory_for(engine)
    app.state.session_factory = factory
    app.state.unit_of_work = unit_of_work_factory(factory)
    app.state.reader = reader_for(engine, max_size=app.state.gateway_settings.pool_size)


def unit_of_work_factory(factory: sessionmaker[Session]) -> Callable[[], Any]:
    @contextmanager
    def unit_of_work() -> Iterator[Session]:
        with factory.begin() as session:
            yield session

    return unit_of_work


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OutcomeError)
    async def on_outcome(request: Request, exc: OutcomeError) -> Response:
        await audit_failure(request, exc.status_code, exc.message)
        return _outcome_response(exc.status_code, exc.to_outcome(), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        issues = [
            Issue(
                code="invalid",
                diagnostics=str(err.get("msg", "invalid")),
                expression=(".".join(str(p) for p in err.get("loc", ())),),
            )
            for err in exc.errors()
        ]
        await audit_failure(request, 400, "; ".join(i.diagnostics for i in issues))
        return _outcome_response(400, outcome(*issues))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        code = STATUS_CODES.get(exc.status_code, "exception")
        if exc.status_code == 404:
            message = f"There is nothing at {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        await audit_failure(request, exc.status_code, message)
        return _outcome_response(
            exc.status_code,
            outcome(Issue(code=code, diagnostics=message)),
            headers=getattr(exc, "headers", None),
        )

    # Answered by ``UnexpectedErrors`` (which keeps the connection); Starlette's own layer
    # uses the same handler for what is raised after a response has started.
    app.add_middleware(UnexpectedErrors, handler=on_unexpected)
    app.add_exception_handler(Exception, on_unexpected)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    request_id = uuid.uuid4().hex[:12]
    log.exception(
        "unexpected error handling %s %s [request %s]",
        request.method,
        request.url.path,
        request_id,
        exc_info=exc,
    )
    message = f"An internal error occurred (request {request_id}); it has been logged"
    await audit_failure(request, 500, message)
    return _outcome_response(500, outcome(Issue(code="exception", diagnostics=message)))

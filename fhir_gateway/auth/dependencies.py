"""The request's access context, and scope checks, for the routers.

``authenticate`` is a router-level dependency on every protected router: it verifies the
bearer token, or else the browser session the cookie names, and keeps the context on
``request.state.access``. It is ``async`` so that the asyncio read path does not hop to a
thread for a bearer token (verification of a remembered token is a dictionary look-up).
A session, and a token issued for an authorization code (whose grant may be revoked), are
looked up in the database.
"""

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from starlette.concurrency import run_in_threadpool

from consent.context import AccessContext
from fhir_gateway.auth.authorize import AuthorizationServer, PublicClient, load_public_clients
from fhir_gateway.auth.clients import TokenEndpoint, load_clients
from fhir_gateway.auth.clock import Clock, utc_now
from fhir_gateway.auth.issuer import DevelopmentIssuer
from fhir_gateway.auth.personas import Persona, sign_in_personas
from fhir_gateway.auth.sessions import (
    CSRF_HEADER,
    SAFE_METHODS,
    ActiveSession,
    CookieNames,
    SessionEnded,
    SessionStore,
    csrf_matches,
)
from fhir_gateway.auth.verify import InvalidToken, TokenVerifier, bearer_token, jwks_resolver
from fhir_gateway.auth.web import LocalExchange, RemoteExchange, WebClient
from fhir_gateway.outcomes import Forbidden
from fhir_gateway.settings import AuthSettings

PERMISSION_NAMES = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


def install(
    app: FastAPI,
    settings: AuthSettings,
    *,
    personas: Sequence[Persona] = (),
    clock: Clock = utc_now,
) -> None:
    """Put the token verifier, the session store and (if configured) the development
    issuer with its endpoints on ``app.state``. ``personas`` are whom the development
    issuer's sign-in page offers."""
    issuer: DevelopmentIssuer | None = None
    if settings.development_issuer:
        issuer = development_issuer(settings)
        public_key = issuer.public_key()
        verifier = TokenVerifier(
            issuer=settings.trusted_issuer,
            audience=settings.expected_audience,
            resolve_key=lambda _token: public_key,
            algorithms=settings.algorithms,
            leeway=settings.leeway_seconds,
        )
    else:
        assert settings.jwks_url is not None  # the settings validator guarantees it
        verifier = TokenVerifier(
            issuer=settings.trusted_issuer,
            audience=settings.expected_audience,
            resolve_key=jwks_resolver(settings.jwks_url),
            algorithms=settings.algorithms,
            leeway=settings.leeway_seconds,
        )
    app.state.token_verifier = verifier
    app.state.development_issuer = issuer
    app.state.token_endpoint = (
        TokenEndpoint(
            issuer=issuer,
            clients=load_clients(settings.development_clients_path),
            url=f"{settings.trusted_issuer.rstrip('/')}/token",
        )
        if issuer is not None
        else None
    )
    sessions = SessionStore(
        idle_timeout=timedelta(seconds=settings.session_idle_timeout),
        lifetime=timedelta(seconds=settings.session_lifetime),
        clock=clock,
    )
    app.state.sessions = sessions
    app.state.cookie_names = CookieNames(secure=settings.session_cookie_secure)
    server: AuthorizationServer | None = None
    web: WebClient | None = None
    if issuer is not None:
        clients = load_public_clients(settings.development_clients_path)
        clients[settings.web_client_id] = PublicClient(
            settings.web_client_id, frozenset({settings.web_callback})
        )
        server = AuthorizationServer(
            issuer=issuer,
            audience=settings.expected_audience,
            clients=clients,
            personas=sign_in_personas(personas),
            clock=clock,
            token_lifetime=settings.token_lifetime,
        )
        web = WebClient(
            client_id=settings.web_client_id,
            redirect_uri=settings.web_callback,
            scope=settings.web_scope,
            audience=settings.expected_audience,
            authorize_url=f"{settings.trusted_issuer.rstrip('/')}/authorize",
            exchange=LocalExchange(server),
            verifier=verifier,
            sessions=sessions,
            clock=clock,
        )
    elif settings.authorization_endpoint and settings.token_endpoint:
        secret = settings.web_client_secret
        web = WebClient(
            client_id=settings.web_client_id,
            redirect_uri=settings.web_callback,
            scope=settings.web_scope,
            audience=settings.expected_audience,
            authorize_url=settings.authorization_endpoint,
            exchange=RemoteExchange(
                token_url=settings.token_endpoint,
                issuer=settings.trusted_issuer,
                client_secret=secret.get_secret_value() if secret is not None else None,
            ),
            verifier=verifier,
            sessions=sessions,
            clock=clock,
        )
    app.state.authorization_server = server
    app.state.web_client = web


def development_issuer(settings: AuthSettings) -> DevelopmentIssuer:
    return DevelopmentIssuer(
        issuer=settings.trusted_issuer,
        audience=settings.expected_audience,
        key_path=Path(settings.development_key_path),
        lifetime=settings.token_lifetime,
    )


async def authenticate(request: Request) -> AccessContext:
    """The caller: by the bearer token if there is one, else by the session cookie."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        names: CookieNames = request.app.state.cookie_names
        if request.cookies.get(names.session):
            return await _authenticate_session(request)
    verifier: TokenVerifier = request.app.state.token_verifier
    context, grant = verifier.verify_grant(bearer_token(authorization))
    server: AuthorizationServer | None = request.app.state.authorization_server
    if grant is not None and server is not None:

        def revoked() -> bool:
            with request.app.state.unit_of_work() as session:
                return server.revoked(session, grant)

        if await run_in_threadpool(revoked):
            raise InvalidToken("The access token has been revoked")
    request.state.access = context
    return context


async def browser_session(request: Request) -> ActiveSession | SessionEnded:
    """The session the request's cookie names (deleted if it has ended), or why there is
    none; the answer is kept for the rest of the request."""
    known: ActiveSession | SessionEnded | None = getattr(request.state, "browser_session", None)
    if known is not None:
        return known
    names: CookieNames = request.app.state.cookie_names
    session_id = request.cookies.get(names.session)
    if not session_id:
        found: ActiveSession | SessionEnded = SessionEnded("You are not signed in")
    else:
        sessions: SessionStore = request.app.state.sessions

        def resolve() -> ActiveSession | SessionEnded:
            with request.app.state.unit_of_work() as session:
                return sessions.resolve(session, session_id)

        found = await run_in_threadpool(resolve)
    request.state.browser_session = found
    return found


async def _authenticate_session(request: Request) -> AccessContext:
    active = await browser_session(request)
    if isinstance(active, SessionEnded):
        raise active
    request.state.access = active.context
    if request.method not in SAFE_METHODS and not csrf_matches(
        active.session_id, request.headers.get(CSRF_HEADER)
    ):
        raise Forbidden(
            "A request signed in by the session cookie must send the session's CSRF token "
            f"in the {CSRF_HEADER} header"
        )
    return active.context


AccessContextDep = Annotated[AccessContext, Depends(authenticate)]


def access(request: Request) -> AccessContext:
    """The context ``authenticate`` established for this request."""
    context: AccessContext = request.state.access
    return context


def require_scope(context: AccessContext, resource_type: str, permission: str) -> None:
    """403 unless the token's scopes grant ``permission`` on ``resource_type``."""
    if not context.allows(resource_type, permission):
        what = "all resource types" if resource_type == "*" else resource_type
        raise Forbidden(
            f"The access token's scopes do not permit {PERMISSION_NAMES[permission]} on {what}"
        )


def require_whole_scope(context: AccessContext, resource_type: str, permission: str) -> None:
    """``require_scope``, for an interface that reads ``resource_type`` outside the caller's
    consent predicate (and so cannot apply a scope narrowed by search parameters): 403 too
    when the scopes narrow the type."""
    require_scope(context, resource_type, permission)
    if any(narrowed == resource_type for narrowed, _ in context.narrowed_reads()):
        raise Forbidden(
            f"This interface needs a scope for {resource_type} not narrowed by search parameters"
        )


def steward_of(context: AccessContext) -> str:
    """How a decision names who made it: the user's Practitioner, else the caller's subject."""
    return context.user or f"{context.kind.value}:{context.subject}"

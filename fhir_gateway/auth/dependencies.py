"""The request's access context, and scope checks, for the routers.

``authenticate`` is a router-level dependency on every protected router: it verifies the
bearer token and keeps the context on ``request.state.access``. It is ``async`` so that the
asyncio read path does not hop to a thread for it (verification of a remembered token is a
dictionary look-up).
"""

from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from consent.context import AccessContext
from fhir_gateway.auth.clients import TokenEndpoint, load_clients
from fhir_gateway.auth.issuer import DevelopmentIssuer
from fhir_gateway.auth.verify import TokenVerifier, bearer_token, jwks_resolver
from fhir_gateway.outcomes import Forbidden
from fhir_gateway.settings import AuthSettings

PERMISSION_NAMES = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


def install(app: FastAPI, settings: AuthSettings) -> None:
    """Put the token verifier (and the development issuer, if configured) on ``app.state``."""
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


def development_issuer(settings: AuthSettings) -> DevelopmentIssuer:
    return DevelopmentIssuer(
        issuer=settings.trusted_issuer,
        audience=settings.expected_audience,
        key_path=Path(settings.development_key_path),
        lifetime=settings.token_lifetime,
    )


async def authenticate(request: Request) -> AccessContext:
    verifier: TokenVerifier = request.app.state.token_verifier
    context = verifier.verify(bearer_token(request.headers.get("authorization")))
    request.state.access = context
    return context


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


def steward_of(context: AccessContext) -> str:
    """How a decision names who made it: the user's Practitioner, else the caller's subject."""
    return context.user or f"{context.kind.value}:{context.subject}"

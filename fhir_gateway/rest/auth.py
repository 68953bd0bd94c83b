"""The development issuer: its public keys (JWKS) and its token endpoint (SMART Backend
Services client credentials; authorization codes with PKCE, ``rest/signin.py`` being the
rest of that flow). Absent when a real identity provider is used."""

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fhir_gateway.auth.authorize import AUTHORIZATION_CODE, AuthorizationServer, Issued
from fhir_gateway.auth.clients import OAuthError, TokenEndpoint
from fhir_gateway.auth.issuer import DevelopmentIssuer
from fhir_gateway.outcomes import NotFound
from fhir_gateway.rest.http import FORM, media_type, read_body
from fhir_gateway.validation import dumps

router = APIRouter(prefix="/auth")


@router.get("/jwks.json")
async def jwks(request: Request) -> Response:
    issuer: DevelopmentIssuer | None = request.app.state.development_issuer
    if issuer is None:
        raise NotFound("This server trusts an external identity provider; see its JWKS")
    return Response(content=dumps(issuer.jwks()), media_type="application/jwk-set+json")


@router.post("/token")
async def token(request: Request) -> Response:
    endpoint: TokenEndpoint | None = request.app.state.token_endpoint
    if endpoint is None:
        raise NotFound("This server trusts an external identity provider; ask it for tokens")
    if media_type(request.headers.get("content-type")) != FORM:
        return _oauth_error(OAuthError("invalid_request", f"Send the request as {FORM}"))
    body = await read_body(request, limit=64 * 1024)
    fields = parse_qsl(body.decode(errors="replace"), keep_blank_values=True)
    form = dict(fields)
    if len(form) != len(fields):
        return _oauth_error(OAuthError("invalid_request", "A parameter is given twice"))
    grant_type = form.get("grant_type")
    server: AuthorizationServer | None = request.app.state.authorization_server
    answer: dict[str, Any]
    if grant_type == AUTHORIZATION_CODE and server is not None:

        def exchange() -> Issued | OAuthError:
            with request.app.state.unit_of_work() as session:
                return server.exchange(session, form, query=request.url.path)

        issued = await run_in_threadpool(exchange)
        if isinstance(issued, OAuthError):
            return _oauth_error(issued)
        answer = issued.response
    elif grant_type == "client_credentials":
        try:
            answer = endpoint.exchange(form)
        except OAuthError as exc:
            return _oauth_error(exc)
    else:
        return _oauth_error(
            OAuthError(
                "unsupported_grant_type",
                "grant_type must be client_credentials or authorization_code",
            )
        )
    return Response(
        content=dumps(answer),
        media_type="application/json",
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def _oauth_error(exc: OAuthError) -> Response:
    headers = {"Cache-Control": "no-store"}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="carejoin"'
    return Response(
        content=dumps(exc.body()),
        status_code=exc.status,
        media_type="application/json",
        headers=headers,
    )

"""Signing in with a browser: the development issuer's authorization endpoint (persona and
role picker), and the web pages' sign-in, session and sign-out.

``GET|POST /auth/authorize``  the authorization endpoint (code flow, PKCE S256)
``GET /auth/login``           the web pages start a sign-in (``?next=/path`` to come back to)
``GET /auth/callback``        ... and finish it: the session cookie is set
``GET /auth/session``         who is signed in (JSON, or a page with the sign-out button)
``POST /auth/logout``         sign out (CSRF token required), then ``/auth/signed-out``

The token endpoint (``POST /auth/token``) is ``rest/auth.py``'s.
"""

import hmac
import secrets
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from fhir_gateway.auth.authorize import (
    AuthorizationPageError,
    AuthorizationRedirect,
    AuthorizationServer,
    scope_text,
)
from fhir_gateway.auth.dependencies import browser_session
from fhir_gateway.auth.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    ActiveSession,
    CookieNames,
    SessionEnded,
    SessionStore,
    csrf_matches,
)
from fhir_gateway.auth.web import LOGIN_LIFETIME, SignedIn, SignInFailed, WebClient
from fhir_gateway.outcomes import Forbidden, NotFound
from fhir_gateway.rest import signin_pages as pages
from fhir_gateway.rest.http import FORM, media_type, read_body
from fhir_gateway.validation import dumps

router = APIRouter(prefix="/auth", tags=["sign-in"])

FORM_LIMIT = 16 * 1024
PICKER_LIFETIME = 600  # seconds the picker's form stays usable


def _names(request: Request) -> CookieNames:
    names: CookieNames = request.app.state.cookie_names
    return names


def _server(request: Request) -> AuthorizationServer:
    server: AuthorizationServer | None = request.app.state.authorization_server
    if server is None:
        raise NotFound("This server trusts an external identity provider; sign in there")
    return server


def _web(request: Request) -> WebClient:
    web: WebClient | None = request.app.state.web_client
    if web is None:
        raise NotFound(
            "Browser sign-in needs the identity provider's endpoints "
            "(auth.authorization_endpoint and auth.token_endpoint)"
        )
    return web


def _set_cookie(
    response: Response,
    names: CookieNames,
    name: str,
    value: str,
    *,
    max_age: int | None = None,
    same_site: str = "Lax",
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=names.secure,
        httponly=True,
        # Starlette types the lower-case spelling; browsers read either, RFC 6265bis writes Lax.
        samesite=same_site,  # type: ignore[arg-type]
    )


def _clear_cookie(response: Response, names: CookieNames, name: str) -> None:
    response.delete_cookie(name, path="/", secure=names.secure, httponly=True, samesite="lax")


async def _form(request: Request) -> list[tuple[str, str]]:
    if media_type(request.headers.get("content-type")) != FORM:
        raise AuthorizationPageError(f"The form must be sent as {FORM}", status=415)
    body = await read_body(request, limit=FORM_LIMIT)
    return parse_qsl(body.decode(errors="replace"), keep_blank_values=True)


# --- The development issuer's authorization endpoint ----------------------------------------


@router.get("/authorize")
async def authorize(request: Request) -> Response:
    """Check the authorization request, then show the persona and role picker."""
    server = _server(request)
    try:
        asked = server.check(request.query_params.multi_items())
    except AuthorizationPageError as exc:
        return pages.error(exc.message, status=exc.status)
    except AuthorizationRedirect as exc:
        return RedirectResponse(exc.location, status_code=302)
    csrf = secrets.token_urlsafe(32)
    response = pages.picker(asked, server.choices(asked), csrf)
    names = _names(request)
    # Double-submit: the form's token must equal this cookie, which only this site sets.
    _set_cookie(response, names, names.picker, csrf, max_age=PICKER_LIFETIME, same_site="Strict")
    return response


@router.post("/authorize")
async def decide(request: Request) -> Response:
    """The picker's answer: a code for the person picked, or the user declined."""
    server = _server(request)
    names = _names(request)
    try:
        fields = await _form(request)
        values = dict(fields)
        expected = request.cookies.get(names.picker, "")
        presented = values.get(CSRF_FIELD, "")
        if not expected or not presented or not hmac.compare_digest(expected, presented):
            raise AuthorizationPageError(
                "This form has expired or was not sent from the sign-in page; start again", 403
            )
        asked = server.check(fields)
        decision = values.get("decision")
        if decision == "deny":
            location = server.deny(asked)
        elif decision == "allow":

            def approve() -> str:
                with request.app.state.unit_of_work() as session:
                    return server.approve(
                        session,
                        asked,
                        persona=values.get("persona", ""),
                        role=values.get("role", ""),
                        purpose=values.get("purpose", ""),
                    )

            location = await run_in_threadpool(approve)
        else:
            raise AuthorizationPageError("Choose to sign in or to cancel")
    except AuthorizationPageError as exc:
        return pages.error(exc.message, status=exc.status)
    except AuthorizationRedirect as exc:
        location = exc.location
    response = RedirectResponse(location, status_code=303)
    _clear_cookie(response, names, names.picker)
    return response


# --- The web pages' sign-in -------------------------------------------------------------


@router.get("/login")
async def login(request: Request) -> Response:
    """Start signing in; the browser comes back to ``next`` (a path on this site)."""
    web = _web(request)

    def start() -> tuple[str, str]:
        with request.app.state.unit_of_work() as session:
            return web.start(session, request.query_params.get("next"))

    state, location = await run_in_threadpool(start)
    names = _names(request)
    response = RedirectResponse(location, status_code=302)
    _set_cookie(response, names, names.login, state, max_age=int(LOGIN_LIFETIME.total_seconds()))
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/callback")
async def callback(request: Request) -> Response:
    """Finish signing in: exchange the code and set the session cookie."""
    web = _web(request)
    names = _names(request)
    parameters = dict(request.query_params)

    def finish() -> SignedIn | SignInFailed:
        with request.app.state.unit_of_work() as session:
            return web.finish(
                session,
                parameters=parameters,
                browser_state=request.cookies.get(names.login),
                replacing=request.cookies.get(names.session),
            )

    outcome = await run_in_threadpool(finish)
    if isinstance(outcome, SignInFailed):
        failed = pages.error(str(outcome), start_again=True)
        _clear_cookie(failed, names, names.login)
        return failed
    response = RedirectResponse(outcome.next_path, status_code=303)
    _set_cookie(response, names, names.session, outcome.session.session_id)
    _clear_cookie(response, names, names.login)
    response.headers["Cache-Control"] = "no-store"
    return response


def login_redirect(request: Request, *, next_path: str) -> Response:
    """Where a page sends a browser that is not signed in (its cookie, if any, cleared)."""
    names = _names(request)
    response = RedirectResponse(f"/auth/login?{urlencode({'next': next_path})}", status_code=303)
    if request.cookies.get(names.session):
        _clear_cookie(response, names, names.session)
    return response


def _wants_page(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept


@router.get("/session")
async def session_info(request: Request) -> Response:
    """The signed-in session: JSON (with the CSRF token for scripts), or a page."""
    found = await browser_session(request)
    if isinstance(found, SessionEnded):
        if _wants_page(request) and request.app.state.web_client is not None:
            return login_redirect(request, next_path="/auth/session")
        raise found
    if _wants_page(request):
        return pages.session(found)
    return Response(
        content=dumps(_describe(found)),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _describe(active: ActiveSession) -> dict[str, Any]:
    context = active.context
    described: dict[str, Any] = {
        "kind": context.kind.value,
        "subject": context.subject,
        "user": context.user,
        "organization": context.organisation,
        "role": context.role,
        "purposeOfUse": context.purpose.value,
        "patient": context.patient,
        "scope": " ".join(scope_text(s) for s in context.scopes),
        "client": active.client_id,
        "signedIn": active.created_at.isoformat(),
        "idleExpires": active.idle_expires_at.isoformat(),
        "expires": active.expires_at.isoformat(),
        "csrfToken": active.csrf_token,
    }
    return {k: v for k, v in described.items() if v is not None}


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Sign out: the session is deleted and its cookie cleared. A live session's CSRF token
    must come with the request (form field or header); without a live session there is
    nothing to protect, and the cookie is cleared all the same."""
    names = _names(request)
    found = await browser_session(request)
    if isinstance(found, ActiveSession):
        presented = request.headers.get(CSRF_HEADER)
        if presented is None and media_type(request.headers.get("content-type")) == FORM:
            body = await read_body(request, limit=FORM_LIMIT)
            presented = dict(parse_qsl(body.decode(errors="replace"))).get(CSRF_FIELD)
        if not csrf_matches(found.session_id, presented):
            raise Forbidden("Signing out needs the session's CSRF token")
        sessions: SessionStore = request.app.state.sessions

        def end() -> None:
            with request.app.state.unit_of_work() as session:
                sessions.end(session, found.session_id, query=request.url.path)

        await run_in_threadpool(end)
    response = RedirectResponse("/auth/signed-out", status_code=303)
    _clear_cookie(response, names, names.session)
    return response


@router.get("/signed-out")
async def signed_out() -> Response:
    return pages.signed_out()

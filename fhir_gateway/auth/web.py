"""The built-in web client: how the web pages sign in (a public client using the
authorization-code flow with PKCE, as they will against the partnership's identity provider).

``GET /auth/login`` makes a PKCE verifier and a ``state``, keeps the verifier in the
database against the state's hash (any replica may receive the callback), puts the state in
a short-lived cookie (so the callback can tell that this browser started the sign-in), and
sends the browser to the authorization endpoint. ``GET /auth/callback`` checks the state
against the cookie, spends the sign-in, exchanges the code with the verifier, verifies the
access token like any bearer token, and opens a session for its claims.

With the development issuer the exchange is a call within this process, with the same
parameters a ``POST /auth/token`` would carry (``LocalExchange``). Against the partnership's
identity provider it is that POST, over HTTPS, as a public client or with the client's
secret (``RemoteExchange``). Either way the request carries a ``nonce``; if the answer holds
an OpenID Connect ID token (it must when ``openid`` was asked for), its signature, issuer,
audience (this client), expiry and nonce are checked before the session opens.
"""

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import quote_plus

import httpx
import jwt
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fhir_gateway.auth.authorize import (
    AUTHORIZATION_CODE,
    AuthorizationServer,
    s256,
    secret_hash,
    with_parameters,
)
from fhir_gateway.auth.clients import OAuthError
from fhir_gateway.auth.clock import Clock
from fhir_gateway.auth.models import AuthLoginRow
from fhir_gateway.auth.sessions import ActiveSession, SessionStore
from fhir_gateway.auth.verify import InvalidToken, TokenVerifier

LOGIN_LIFETIME = timedelta(minutes=10)
DEFAULT_NEXT = "/auth/session"


class SignInFailed(Exception):
    """The callback could not complete a sign-in; the message is for the user."""


@dataclass(frozen=True, slots=True)
class SignedIn:
    session: ActiveSession
    next_path: str


def local_path(candidate: str | None) -> str:
    """``candidate`` if it is a path on this site, else the default landing page (an open
    redirect through the sign-in would let a link send someone anywhere after signing in)."""
    if (
        not candidate
        or not candidate.startswith("/")
        or candidate.startswith("//")
        or "\\" in candidate
        or len(candidate) > 2048
        or any(ord(ch) < 0x20 for ch in candidate)
    ):
        return DEFAULT_NEXT
    return candidate


def nonce_for(code_verifier: str) -> str:
    """The OpenID Connect ``nonce`` of a sign-in: derived from its PKCE verifier, which never
    leaves this server until the exchange, so it is as unguessable and as bound to the sign-in
    as the verifier, and needs no storage of its own."""
    return hashlib.sha256(b"carejoin-nonce:" + code_verifier.encode()).hexdigest()


class CodeExchange(Protocol):
    """Where the code is exchanged for tokens, and who issues them."""

    @property
    def issuer(self) -> str: ...

    def exchange(self, session: Session, form: Mapping[str, str]) -> dict[str, Any]:
        """The token response (``access_token`` and the rest), or SignInFailed."""
        ...

    def sweep(self, session: Session) -> None: ...


class LocalExchange:
    """The development issuer's token endpoint, called within this process."""

    def __init__(self, server: AuthorizationServer) -> None:
        self.server = server

    @property
    def issuer(self) -> str:
        return self.server.issuer.issuer

    def exchange(self, session: Session, form: Mapping[str, str]) -> dict[str, Any]:
        issued = self.server.exchange(session, form, query="/auth/callback")
        if isinstance(issued, OAuthError):
            raise SignInFailed(f"Sign-in did not complete: {issued.description}")
        return dict(issued.response)

    def sweep(self, session: Session) -> None:
        self.server.sweep(session)


class RemoteExchange:
    """The identity provider's token endpoint (RFC 6749 4.1.3), over HTTP.

    With a client secret the client authenticates with HTTP Basic (``client_secret_basic``,
    RFC 6749 2.3.1); without one it is a public client and names itself in the form. The
    answer must be JSON with a bearer ``access_token``; redirects are not followed, and a
    provider that cannot be reached, times out or answers anything else fails the sign-in
    with a message for the user (the details go to no one: they may hold the code)."""

    def __init__(
        self,
        *,
        token_url: str,
        issuer: str,
        client_secret: str | None = None,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.token_url = token_url
        self._issuer = issuer
        self._client_secret = client_secret
        self._http = http
        self._timeout = timeout

    @property
    def issuer(self) -> str:
        return self._issuer

    def exchange(self, session: Session, form: Mapping[str, str]) -> dict[str, Any]:
        data = dict(form)
        basic: dict[str, Any] = {}
        if self._client_secret is not None:
            client_id = data.pop("client_id")
            basic["auth"] = (_form_encoded(client_id), _form_encoded(self._client_secret))
        try:
            response = self._post(data, basic)
        except httpx.HTTPError:
            raise SignInFailed(
                "The identity provider could not be reached to finish signing in; try again"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise SignInFailed(
                f"The identity provider's answer was not understood (HTTP {response.status_code})"
            )
        if response.status_code != 200:
            error = body.get("error_description") or body.get("error") or response.status_code
            raise SignInFailed(f"Sign-in did not complete: {error}")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise SignInFailed("The identity provider's answer carries no access token")
        if str(body.get("token_type", "")).lower() != "bearer":
            raise SignInFailed("The identity provider's answer is not a bearer token")
        return body

    def _post(self, data: dict[str, str], basic: dict[str, Any]) -> httpx.Response:
        headers = {"Accept": "application/json"}
        if self._http is not None:
            return self._http.post(self.token_url, data=data, headers=headers, **basic)
        # Sign-ins are rare: a connection of their own, closed when the answer is read.
        with httpx.Client(timeout=self._timeout, follow_redirects=False) as http:
            return http.post(self.token_url, data=data, headers=headers, **basic)

    def sweep(self, session: Session) -> None:
        """The provider keeps its own codes."""


def _form_encoded(value: str) -> str:
    # RFC 6749 2.3.1: the client id and secret are form-encoded before Basic authentication.
    return quote_plus(value)


class WebClient:
    def __init__(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        scope: str,
        audience: str,
        authorize_url: str,
        exchange: CodeExchange,
        verifier: TokenVerifier,
        sessions: SessionStore,
        clock: Clock,
    ) -> None:
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.scope = scope
        self.audience = audience
        self.authorize_url = authorize_url
        self.exchange = exchange
        self.verifier = verifier
        self.sessions = sessions
        self.clock = clock

    def start(self, session: Session, next_path: str | None) -> tuple[str, str]:
        """Begin a sign-in: the ``state`` (for the browser's cookie) and where to send it."""
        now = self.clock()
        self.sweep(session)
        state = secrets.token_urlsafe(32)
        code_verifier = secrets.token_urlsafe(64)
        session.add(
            AuthLoginRow(
                state_hash=secret_hash(state),
                code_verifier=code_verifier,
                next_path=local_path(next_path),
                created_at=now,
                expires_at=now + LOGIN_LIFETIME,
            )
        )
        session.flush()
        location = with_parameters(
            self.authorize_url,
            [
                ("response_type", "code"),
                ("client_id", self.client_id),
                ("redirect_uri", self.redirect_uri),
                ("scope", self.scope),
                ("state", state),
                ("code_challenge", s256(code_verifier)),
                ("code_challenge_method", "S256"),
                ("nonce", nonce_for(code_verifier)),
                ("aud", self.audience),
            ],
        )
        return state, location

    def finish(
        self,
        session: Session,
        *,
        parameters: dict[str, str],
        browser_state: str | None,
        replacing: str | None,
    ) -> SignedIn | SignInFailed:
        """Complete a sign-in from the callback's query ``parameters``.

        Returns the failure rather than raising it, so that the unit of work commits what
        was spent (the sign-in in progress, the code)."""
        try:
            return self._finish(
                session, parameters=parameters, browser_state=browser_state, replacing=replacing
            )
        except SignInFailed as failed:
            return failed

    def _finish(
        self,
        session: Session,
        *,
        parameters: dict[str, str],
        browser_state: str | None,
        replacing: str | None,
    ) -> SignedIn:
        state = parameters.get("state", "")
        if not state or not browser_state or not hmac.compare_digest(state, browser_state):
            raise SignInFailed("This sign-in was not started in this browser; start again")
        now = self.clock()
        login = session.scalars(
            select(AuthLoginRow).where(AuthLoginRow.state_hash == secret_hash(state))
        ).one_or_none()
        if login is None:
            raise SignInFailed("This sign-in has been used or has expired; start again")
        session.execute(
            delete(AuthLoginRow)
            .where(AuthLoginRow.pk == login.pk)
            .execution_options(synchronize_session=False)
        )
        if login.expires_at <= now:
            raise SignInFailed("This sign-in took too long; start again")
        issuer = parameters.get("iss")
        if issuer is not None and issuer != self.exchange.issuer:
            raise SignInFailed("The answer came from another issuer than the one asked")
        if "error" in parameters:
            description = parameters.get("error_description") or parameters["error"]
            raise SignInFailed(f"Sign-in did not complete: {description}")
        code = parameters.get("code", "")
        if not code:
            raise SignInFailed("The answer carries no authorization code")
        issued = self.exchange.exchange(
            session,
            {
                "grant_type": AUTHORIZATION_CODE,
                "code": code,
                "redirect_uri": self.redirect_uri,
                "client_id": self.client_id,
                "code_verifier": login.code_verifier,
            },
        )
        token = issued["access_token"]
        try:
            self.verifier.verify(token)  # the same checks as any bearer token
        except InvalidToken as exc:
            raise SignInFailed(f"The access token was refused: {exc}") from None
        id_token = issued.get("id_token")
        if id_token is not None or "openid" in self.scope.split():
            self._check_id_token(id_token, nonce_for(login.code_verifier))
        claims = jwt.decode(token, options={"verify_signature": False})
        active = self.sessions.create(
            session, claims=claims, client_id=self.client_id, replacing=replacing
        )
        return SignedIn(session=active, next_path=login.next_path)

    def _check_id_token(self, id_token: Any, nonce: str) -> None:
        """OpenID Connect Core 3.1.3.7: signed by the issuer, for this client, unexpired,
        and carrying the nonce this sign-in sent (else a code from another sign-in was
        injected)."""
        if not isinstance(id_token, str) or not id_token:
            raise SignInFailed("The identity provider's answer carries no ID token")
        try:
            claims = self.verifier.verify_id_token(id_token, client_id=self.client_id)
        except InvalidToken as exc:
            raise SignInFailed(f"The ID token was refused: {exc}") from None
        presented = claims.get("nonce")
        if not isinstance(presented, str) or not hmac.compare_digest(presented, nonce):
            raise SignInFailed("The ID token was not issued for this sign-in (nonce)")

    def sweep(self, session: Session) -> None:
        """Forget sign-ins nobody came back for, and ended sessions and spent codes."""
        now = self.clock()
        session.execute(
            delete(AuthLoginRow)
            .where(AuthLoginRow.expires_at <= now)
            .execution_options(synchronize_session=False)
        )
        self.sessions.sweep(session)
        self.exchange.sweep(session)

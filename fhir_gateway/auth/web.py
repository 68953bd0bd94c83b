"""The built-in web client: how the web pages sign in (a public client using the
authorization-code flow with PKCE, as they will against the partnership's identity provider).

``GET /auth/login`` makes a PKCE verifier and a ``state``, keeps the verifier in the
database against the state's hash (any replica may receive the callback), puts the state in
a short-lived cookie (so the callback can tell that this browser started the sign-in), and
sends the browser to the authorization endpoint. ``GET /auth/callback`` checks the state
against the cookie, spends the sign-in, exchanges the code with the verifier, verifies the
access token like any bearer token, and opens a session for its claims.

With the development issuer the exchange is a call within this process, with the same
parameters a ``POST /auth/token`` would carry. Against an external identity provider it
would be that POST; that is not built, and ``/auth/login`` exists only with the
development issuer.
"""

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

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
from fhir_gateway.auth.verify import TokenVerifier

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


class WebClient:
    def __init__(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        scope: str,
        audience: str,
        authorize_url: str,
        server: AuthorizationServer,
        verifier: TokenVerifier,
        sessions: SessionStore,
        clock: Clock,
    ) -> None:
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.scope = scope
        self.audience = audience
        self.authorize_url = authorize_url
        self.server = server
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
        if issuer is not None and issuer != self.server.issuer.issuer:
            raise SignInFailed("The answer came from another issuer than the one asked")
        if "error" in parameters:
            description = parameters.get("error_description") or parameters["error"]
            raise SignInFailed(f"Sign-in did not complete: {description}")
        code = parameters.get("code", "")
        if not code:
            raise SignInFailed("The answer carries no authorization code")
        issued = self.server.exchange(
            session,
            {
                "grant_type": AUTHORIZATION_CODE,
                "code": code,
                "redirect_uri": self.redirect_uri,
                "client_id": self.client_id,
                "code_verifier": login.code_verifier,
            },
            query="/auth/callback",
        )
        if isinstance(issued, OAuthError):
            raise SignInFailed(f"Sign-in did not complete: {issued.description}")
        token = issued.response["access_token"]
        self.verifier.verify(token)  # the same checks as any bearer token
        claims = jwt.decode(token, options={"verify_signature": False})
        active = self.sessions.create(
            session, claims=claims, client_id=self.client_id, replacing=replacing
        )
        return SignedIn(session=active, next_path=login.next_path)

    def sweep(self, session: Session) -> None:
        """Forget sign-ins nobody came back for, and ended sessions and spent codes."""
        now = self.clock()
        session.execute(
            delete(AuthLoginRow)
            .where(AuthLoginRow.expires_at <= now)
            .execution_options(synchronize_session=False)
        )
        self.sessions.sweep(session)
        self.server.sweep(session)

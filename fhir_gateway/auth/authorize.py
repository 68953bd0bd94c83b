"""The development issuer's authorization-code flow with PKCE, for public clients such as the
web pages (RFC 6749 4.1, RFC 7636, SMART App Launch's standalone launch).

``GET /auth/authorize`` checks the request and shows a persona and role picker; the
picker's POST issues a one-time code, valid for 60 seconds and bound to the client, the
redirect URI and the PKCE challenge (S256 only); ``POST /auth/token`` with
``grant_type=authorization_code`` exchanges it once, with the verifier, for an access token
carrying the persona's claims (the same ones ``carejoin token --persona`` signs, with the
role and purpose of use picked and the scopes both asked for and held).

Errors are OAuth's. While the client or its redirect URI is in doubt nothing is sent to
the redirect URI (the picker shows an error page instead); after that, errors go back to it
with ``error``, ``error_description``, the ``state`` and ``iss`` (RFC 6749 4.1.2.1, RFC
9207). The token endpoint answers errors as JSON (RFC 6749 5.2). Presenting a code a second
time fails and revokes what was issued from it (RFC 6749 10.5): tokens carry the code's
grant id (claim ``grant``) and are refused once it is revoked; sessions made from it end.

The codes live in the database (``auth_code``, hashed), so any replica can exchange a code
another gave out, and two replicas racing to exchange one cannot both succeed.
"""

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from consent.audit import Action, Outcome, record_for
from consent.context import (
    PERMISSIONS,
    CallerKind,
    Scope,
    context_from_claims,
    parse_scopes,
    query_text,
)
from fhir_gateway.audit.repository import add_events
from fhir_gateway.auth.clients import OAuthError
from fhir_gateway.auth.clock import Clock
from fhir_gateway.auth.issuer import DevelopmentIssuer
from fhir_gateway.auth.models import AuthCodeRow, AuthSessionRow
from fhir_gateway.auth.personas import Persona

CODE_LIFETIME = timedelta(seconds=60)
# A used code's row is kept until the tokens issued from it have expired (plus the
# verifier's leeway), so that a replay within their lifetime can still revoke them.
TOKEN_MARGIN = timedelta(minutes=5)
MAX_STATE = 1024
AUTHORIZATION_CODE = "authorization_code"

_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of a SHA-256 digest, unpadded
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 4.1
_PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "aud",
)


def s256(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier (RFC 7636 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def secret_hash(secret: str) -> str:
    """How a secret a browser or client presents is stored: its SHA-256, in hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


# --- Public clients -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublicClient:
    """A client that cannot keep a secret (a browser application): it is known by its id and
    the exact redirect URIs registered for it, and proves possession with PKCE."""

    client_id: str
    redirect_uris: frozenset[str]


def check_redirect_uri(uri: str) -> str:
    """``uri`` if it may be registered: absolute http(s), no fragment (RFC 6749 3.1.2)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise ValueError(
            f"A redirect URI must be an absolute http(s) URI without a fragment: {uri}"
        )
    return uri


def load_public_clients(path: str | None) -> dict[str, PublicClient]:
    """The public clients in the development clients file (entries with ``redirect_uris``)."""
    if not path or not Path(path).exists():
        return {}
    clients: dict[str, PublicClient] = {}
    for entry in json.loads(Path(path).read_text()):
        if "redirect_uris" not in entry:
            continue
        uris = frozenset(check_redirect_uri(str(u)) for u in entry["redirect_uris"])
        clients[str(entry["client_id"])] = PublicClient(str(entry["client_id"]), uris)
    return clients


def register_public_client(path: str, *, client_id: str, redirect_uris: Sequence[str]) -> None:
    """Add or replace a public client in the development clients file."""
    uris = [check_redirect_uri(u) for u in redirect_uris]
    if not uris:
        raise ValueError("A public client needs at least one redirect URI")
    target = Path(path)
    entries = json.loads(target.read_text()) if target.exists() else []
    entries = [e for e in entries if e.get("client_id") != client_id]
    entries.append({"client_id": client_id, "redirect_uris": uris})
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(entries, indent=2))


# --- Scopes ---------------------------------------------------------------------------------


def _covers(wider: Scope, narrower: Scope) -> bool:
    return (
        wider.context == narrower.context
        and wider.resource_type in ("*", narrower.resource_type)
        and narrower.permissions <= wider.permissions
        and wider.query in ((), narrower.query)
    )


def scope_text(scope: Scope) -> str:
    """A scope as SMART v2 text."""
    letters = "".join(p for p in PERMISSIONS if p in scope.permissions)
    query = f"?{query_text(scope.query)}" if scope.query else ""
    return f"{scope.context}/{scope.resource_type}.{letters}{query}"


def grant_scope(requested: str, held: str) -> str:
    """The SMART resource scopes both asked for and held (as SMART v2 text).

    Each asked-for scope is intersected with each held one of the same context: the more
    specific resource type, the permissions both have, and the narrower query (where both
    are narrowed by different queries, nothing: their intersection is not one query). A
    scope another granted one covers is left out. Other scopes (``openid``,
    ``launch/patient``...) grant nothing here.
    """
    granted: list[Scope] = []
    for asked in parse_scopes(requested):
        for have in parse_scopes(held):
            if asked.context != have.context:
                continue
            if asked.resource_type == "*":
                resource_type = have.resource_type
            elif have.resource_type in ("*", asked.resource_type):
                resource_type = asked.resource_type
            else:
                continue
            if asked.query and have.query and asked.query != have.query:
                continue
            permissions = asked.permissions & have.permissions
            if permissions:
                query = asked.query or have.query
                granted.append(Scope(asked.context, resource_type, frozenset(permissions), query))
    kept: list[Scope] = []
    for i, scope in enumerate(granted):
        if scope in kept:
            continue
        if any(
            j != i and _covers(other, scope) and not _covers(scope, other)
            for j, other in enumerate(granted)
        ):
            continue
        kept.append(scope)
    return " ".join(scope_text(scope) for scope in kept)


# --- Requests and errors --------------------------------------------------------------------


class AuthorizationPageError(Exception):
    """A request that cannot be answered at its redirect URI: shown on a page, never
    redirected (an unknown client or redirect URI, a forged picker form)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class AuthorizationRedirect(Exception):
    """An error to send back to the client at its (checked) redirect URI."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """An authorization request that passed every check."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str
    code_challenge: str
    aud: str

    def fields(self) -> list[tuple[str, str]]:
        """The request as the picker form carries it."""
        return [
            ("response_type", "code"),
            ("client_id", self.client_id),
            ("redirect_uri", self.redirect_uri),
            ("scope", self.scope),
            ("state", self.state),
            ("code_challenge", self.code_challenge),
            ("code_challenge_method", "S256"),
            ("aud", self.aud),
        ]


@dataclass(frozen=True, slots=True)
class Choice:
    """A persona the picker offers for a request, with the scopes it would be granted."""

    persona: Persona
    scope: str


@dataclass(frozen=True, slots=True)
class Issued:
    """A token response, and the claims of its access token (for the built-in client)."""

    response: dict[str, Any]
    claims: dict[str, Any]


def with_parameters(uri: str, parameters: Sequence[tuple[str, str]]) -> str:
    """``uri`` with ``parameters`` added to its query (RFC 6749 4.1.2)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(parameters)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


# --- The authorization server ---------------------------------------------------------------


class AuthorizationServer:
    def __init__(
        self,
        *,
        issuer: DevelopmentIssuer,
        audience: str,
        clients: Mapping[str, PublicClient],
        personas: Mapping[str, Persona],
        clock: Clock,
        token_lifetime: int,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.clients = dict(clients)
        self.personas = dict(personas)
        self.clock = clock
        self.token_lifetime = token_lifetime

    # The authorization endpoint.

    def check(self, parameters: Sequence[tuple[str, str]]) -> AuthorizationRequest:
        """The request in ``parameters``, or AuthorizationPageError / AuthorizationRedirect."""
        values: dict[str, str] = {}
        repeated: list[str] = []
        for name, value in parameters:
            if name in _PARAMETERS:
                if name in values:
                    repeated.append(name)
                values[name] = value
        client_id = values.get("client_id", "")
        if "client_id" in repeated or "redirect_uri" in repeated:
            raise AuthorizationPageError("The request gives client_id or redirect_uri twice")
        client = self.clients.get(client_id)
        if client is None:
            raise AuthorizationPageError(
                "The application asking you to sign in is not registered with this server"
                if client_id
                else "The request names no application (client_id)"
            )
        redirect_uri = values.get("redirect_uri", "")
        if not redirect_uri:
            raise AuthorizationPageError("The request gives no redirect_uri")
        if redirect_uri not in client.redirect_uris:
            raise AuthorizationPageError(
                "The redirect_uri is not one registered for this application"
            )
        state = values.get("state", "")

        def refuse(error: str, description: str) -> AuthorizationRedirect:
            echoed = state if 0 < len(state) <= MAX_STATE else None
            return AuthorizationRedirect(
                self.error_location(redirect_uri, echoed, error, description)
            )

        if repeated:
            raise refuse(
                "invalid_request", f"Parameters given twice: {', '.join(sorted(repeated))}"
            )
        if values.get("response_type") != "code":
            raise refuse("unsupported_response_type", "Only response_type=code is offered")
        if not state:
            raise refuse("invalid_request", "The request must carry a state")
        if len(state) > MAX_STATE:
            raise refuse("invalid_request", f"The state may be {MAX_STATE} characters at most")
        challenge = values.get("code_challenge", "")
        method = values.get("code_challenge_method", "")
        if not challenge:
            raise refuse("invalid_request", "PKCE is required: send a code_challenge (S256)")
        if method != "S256":
            raise refuse(
                "invalid_request",
                "Only the S256 code_challenge_method is supported"
                if method
                else "code_challenge_method must be S256 (plain is not accepted)",
            )
        if not _CHALLENGE.fullmatch(challenge):
            raise refuse("invalid_request", "The code_challenge is not an S256 challenge")
        aud = values.get("aud", "")
        if aud.rstrip("/") != self.audience.rstrip("/"):
            raise refuse(
                "invalid_request",
                f"aud must name this FHIR server ({self.audience})"
                if aud
                else "The request must name the FHIR server it is for (aud)",
            )
        request = AuthorizationRequest(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            scope=values.get("scope", ""),
            state=state,
            code_challenge=challenge,
            aud=aud,
        )
        if not self.choices(request):
            raise refuse("invalid_scope", "No one here may be granted the scopes asked for")
        return request

    def choices(self, request: AuthorizationRequest) -> list[Choice]:
        """The personas that would be granted something of what ``request`` asks for."""
        offered = []
        for persona in self.personas.values():
            scope = grant_scope(request.scope, persona.claims.get("scope", ""))
            if scope:
                offered.append(Choice(persona, scope))
        return offered

    def error_location(
        self, redirect_uri: str, state: str | None, error: str, description: str
    ) -> str:
        parameters = [("error", error), ("error_description", description)]
        if state is not None:
            parameters.append(("state", state))
        parameters.append(("iss", self.issuer.issuer))
        return with_parameters(redirect_uri, parameters)

    def deny(self, request: AuthorizationRequest) -> str:
        """Where to send the browser when the user declines."""
        return self.error_location(
            request.redirect_uri, request.state, "access_denied", "The user declined to sign in"
        )

    def approve(
        self,
        session: Session,
        request: AuthorizationRequest,
        *,
        persona: str,
        role: str,
        purpose: str,
    ) -> str:
        """Issue a code for ``persona`` in ``role`` for ``purpose``; where to send the browser."""
        choice = next((c for c in self.choices(request) if c.persona.name == persona), None)
        if choice is None:
            raise AuthorizationPageError("Pick one of the people offered")
        claims: dict[str, str] = dict(choice.persona.claims)
        claims["scope"] = choice.scope
        roles = choice.persona.selectable_roles
        if roles:
            if role not in roles:
                raise AuthorizationPageError(f"{persona} may act as {', '.join(roles)}")
            claims["role"] = role
        elif role:
            raise AuthorizationPageError(f"{persona} does not select a role")
        purposes = [p.value for p in choice.persona.purposes]
        if purposes:
            if purpose not in purposes:
                raise AuthorizationPageError(
                    f"The purpose of use must be one of {', '.join(purposes)}"
                )
            claims["purpose_of_use"] = purpose
        elif purpose:
            raise AuthorizationPageError(f"{persona} does not declare a purpose of use")
        context_from_claims(claims)  # the persona is checked at start-up; this cannot fail
        code = secrets.token_urlsafe(32)
        now = self.clock()
        session.add(
            AuthCodeRow(
                code_hash=secret_hash(code),
                grant_id=secrets.token_hex(16),
                client_id=request.client_id,
                redirect_uri=request.redirect_uri,
                code_challenge=request.code_challenge,
                claims=json.dumps(claims, sort_keys=True),
                created_at=now,
                expires_at=now + CODE_LIFETIME,
            )
        )
        session.flush()
        return with_parameters(
            request.redirect_uri,
            [("code", code), ("state", request.state), ("iss", self.issuer.issuer)],
        )

    # The token endpoint.

    def exchange(
        self, session: Session, form: Mapping[str, str], *, query: str
    ) -> Issued | OAuthError:
        """Exchange a code (``form`` as posted to the token endpoint).

        Returns the error rather than raising it, so that the caller's unit of work commits
        what a failed exchange changes: the code is spent by any attempt that names it, and
        a replay revokes what was issued from it.
        """
        try:
            return self._exchange(session, form, query=query)
        except OAuthError as exc:
            return exc

    def _exchange(self, session: Session, form: Mapping[str, str], *, query: str) -> Issued:
        if form.get("grant_type") != AUTHORIZATION_CODE:
            raise OAuthError("unsupported_grant_type", "grant_type must be authorization_code")
        client = self.clients.get(form.get("client_id", ""))
        if client is None:
            raise OAuthError("invalid_client", "The client is not registered", 401)
        code = form.get("code", "")
        verifier = form.get("code_verifier", "")
        redirect_uri = form.get("redirect_uri", "")
        if not code or not redirect_uri:
            raise OAuthError("invalid_request", "code and redirect_uri are required")
        if not verifier:
            raise OAuthError("invalid_request", "PKCE is required: send the code_verifier")
        if not _VERIFIER.fullmatch(verifier):
            raise OAuthError("invalid_request", "The code_verifier is not a PKCE verifier")
        now = self.clock()
        row = session.scalars(
            select(AuthCodeRow).where(AuthCodeRow.code_hash == secret_hash(code))
        ).one_or_none()
        if row is None:
            raise OAuthError("invalid_grant", "The authorization code is not valid")
        spent = session.execute(
            update(AuthCodeRow)
            .where(AuthCodeRow.pk == row.pk, AuthCodeRow.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            if row.token_expires_at is not None:
                self._revoke(session, row.grant_id, now=now)
                raise OAuthError(
                    "invalid_grant",
                    "The authorization code has been used already; "
                    "what was issued from it is revoked",
                )
            raise OAuthError("invalid_grant", "The authorization code has been used already")
        if row.expires_at <= now:
            raise OAuthError("invalid_grant", "The authorization code has expired")
        if row.client_id != client.client_id:
            raise OAuthError("invalid_grant", "The authorization code was issued to another client")
        if row.redirect_uri != redirect_uri:
            raise OAuthError(
                "invalid_grant", "redirect_uri differs from the authorization request's"
            )
        if not hmac.compare_digest(s256(verifier), row.code_challenge):
            raise OAuthError("invalid_grant", "The code_verifier does not match the code_challenge")
        claims: dict[str, Any] = json.loads(row.claims)
        token = self.issuer.issue(
            {**claims, "azp": client.client_id, "grant": row.grant_id},
            lifetime=self.token_lifetime,
        )
        session.execute(
            update(AuthCodeRow)
            .where(AuthCodeRow.pk == row.pk)
            .values(token_expires_at=now + timedelta(seconds=self.token_lifetime))
            .execution_options(synchronize_session=False)
        )
        context = context_from_claims(claims)
        add_events(
            session,
            [
                record_for(
                    context,
                    recorded_at=now,
                    action=Action.EXECUTE,
                    interaction="login",
                    outcome=Outcome.SUCCESS,
                    query=query,
                    detail=f"Signed in through {client.client_id} (authorization code, PKCE)",
                )
            ],
        )
        response: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "scope": claims.get("scope", ""),
        }
        if context.kind is CallerKind.PATIENT and context.patient:
            response["patient"] = context.patient  # SMART's launch context
        return Issued(response=response, claims=claims)

    def _revoke(self, session: Session, grant_id: str, *, now: datetime) -> None:
        session.execute(
            update(AuthCodeRow)
            .where(AuthCodeRow.grant_id == grant_id, AuthCodeRow.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        session.execute(
            delete(AuthSessionRow)
            .where(AuthSessionRow.grant_id == grant_id)
            .execution_options(synchronize_session=False)
        )

    def revoked(self, session: Session, grant_id: str) -> bool:
        """Whether the grant a token names has been revoked (its code was replayed)."""
        revoked_at = session.scalar(
            select(AuthCodeRow.revoked_at).where(AuthCodeRow.grant_id == grant_id)
        )
        return revoked_at is not None

    def sweep(self, session: Session) -> None:
        """Forget codes that can no longer be exchanged and whose tokens have expired."""
        now = self.clock()
        session.execute(
            delete(AuthCodeRow)
            .where(
                AuthCodeRow.expires_at <= now,
                or_(
                    AuthCodeRow.token_expires_at.is_(None),
                    AuthCodeRow.token_expires_at <= now - TOKEN_MARGIN,
                ),
            )
            .execution_options(synchronize_session=False)
        )

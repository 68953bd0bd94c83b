"""SMART Backend Services for the development issuer: client credentials with a signed JWT
assertion (RFC 7523), so a source or consuming system can get a token the way it will from
the partnership's identity provider.

A client is registered with its id, the organisation it acts for (if any), the most it may
ask for (scopes), and its public keys (a JWKS). It asks ``POST /auth/token`` with
``grant_type=client_credentials``, ``client_assertion_type=urn:ietf:params:oauth:client-
assertion-type:jwt-bearer``, a ``client_assertion`` signed with its private key (``iss`` and
``sub`` its client id, ``aud`` the token endpoint, ``exp`` at most five minutes away, a
``jti`` never used before) and the ``scope`` it wants; it gets an access token for those
scopes. Errors are OAuth's (RFC 6749 5.2), not FHIR's: this is the authorisation server.
"""

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from fhir_gateway.auth.issuer import DevelopmentIssuer

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS384", "ES384", "RS256", "ES256")
MAX_ASSERTION_LIFETIME = 300


class OAuthError(Exception):
    """An RFC 6749 error response: ``error`` code, description, HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass(frozen=True, slots=True)
class RegisteredClient:
    client_id: str
    organisation: str | None
    scopes: frozenset[str]
    jwks: dict[str, Any]


def load_clients(path: str | None) -> dict[str, RegisteredClient]:
    """The registered clients (a JSON list) at ``path``; none if it is not given or absent.
    Public clients (browser applications, registered with redirect URIs and no keys) are
    ``authorize.load_public_clients``'s."""
    if not path or not Path(path).exists():
        return {}
    clients: dict[str, RegisteredClient] = {}
    for entry in json.loads(Path(path).read_text()):
        if "jwks" not in entry:
            continue
        client = RegisteredClient(
            client_id=str(entry["client_id"]),
            organisation=entry.get("organization"),
            scopes=frozenset(str(entry["scope"]).split()),
            jwks=dict(entry["jwks"]),
        )
        clients[client.client_id] = client
    return clients


def register_client(
    path: str, *, client_id: str, organisation: str | None, scope: str, jwks: dict[str, Any]
) -> None:
    """Add or replace a client in the registry file."""
    target = Path(path)
    entries = json.loads(target.read_text()) if target.exists() else []
    entries = [e for e in entries if e.get("client_id") != client_id]
    entries.append(
        {"client_id": client_id, "organization": organisation, "scope": scope, "jwks": jwks}
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(entries, indent=2))


class TokenEndpoint:
    def __init__(
        self, *, issuer: DevelopmentIssuer, clients: dict[str, RegisteredClient], url: str
    ) -> None:
        self._issuer = issuer
        self._clients = clients
        self._url = url
        self._seen: dict[str, float] = {}  # jti -> when it may be forgotten
        self._lock = threading.Lock()

    def exchange(self, form: dict[str, str]) -> dict[str, Any]:
        """The token response for a client-credentials request, or OAuthError."""
        if form.get("grant_type") != "client_credentials":
            raise OAuthError("unsupported_grant_type", "Only client_credentials is offered")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError("invalid_client", "A signed JWT client assertion is required", 401)
        assertion = form.get("client_assertion") or ""
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise OAuthError("invalid_client", "The client assertion is not a JWT", 401) from None
        client_id = unverified.get("iss")
        client = self._clients.get(str(client_id))
        if client is None or unverified.get("sub") != client_id:
            raise OAuthError("invalid_client", "The client is not registered", 401)
        claims = self._verify(assertion, client)
        requested = frozenset((form.get("scope") or "").split())
        if not requested:
            raise OAuthError("invalid_scope", "Ask for the scopes you need")
        refused = requested - client.scopes
        if refused:
            raise OAuthError("invalid_scope", f"Not registered for: {' '.join(sorted(refused))}")
        self._remember(str(claims["jti"]), float(claims["exp"]))
        granted = " ".join(sorted(requested))
        token_claims: dict[str, object] = {
            "sub": client.client_id,
            "client_id": client.client_id,
            "scope": granted,
        }
        if client.organisation:
            token_claims["organization"] = client.organisation
        lifetime = 300
        return {
            "access_token": self._issuer.issue(token_claims, lifetime=lifetime),
            "token_type": "bearer",
            "expires_in": lifetime,
            "scope": granted,
        }

    def _verify(self, assertion: str, client: RegisteredClient) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(assertion)
            keys = jwt.PyJWKSet.from_dict(client.jwks)
            kid = header.get("kid")
            candidates = [k for k in keys.keys if kid is None or k.key_id == kid]
            if not candidates:
                raise OAuthError("invalid_client", "No registered key matches the assertion", 401)
            claims: dict[str, Any] = jwt.decode(
                assertion,
                candidates[0].key,
                algorithms=list(ASSERTION_ALGORITHMS),
                audience=self._url,
                issuer=client.client_id,
                options={"require": ["exp", "jti", "iss", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise OAuthError("invalid_client", "The client assertion has expired", 401) from None
        except jwt.InvalidAudienceError:
            raise OAuthError(
                "invalid_client", f"The client assertion's aud must be {self._url}", 401
            ) from None
        except jwt.PyJWTError as exc:
            raise OAuthError(
                "invalid_client", f"The client assertion is not valid: {exc}", 401
            ) from None
        if float(claims["exp"]) - time.time() > MAX_ASSERTION_LIFETIME:
            raise OAuthError(
                "invalid_client", "The client assertion may live five minutes at most", 401
            )
        with self._lock:
            if claims["jti"] in self._seen:
                raise OAuthError("invalid_client", "The client assertion has been used before", 401)
        return claims

    def _remember(self, jti: str, expires: float) -> None:
        now = time.time()
        with self._lock:
            for old in [j for j, until in self._seen.items() if until < now]:
                del self._seen[old]
            self._seen[jti] = expires

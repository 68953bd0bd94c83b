"""Verifying bearer tokens and turning them into an access context.

Every FHIR request but ``/metadata`` and the SMART configuration carries
``Authorization: Bearer <JWT>``. The token must be signed by the configured issuer (its JWKS,
or the development issuer's key), be for this server (``aud``), be unexpired, and carry the
claims ``consent.context`` needs. Anything else is a 401 with an OperationOutcome and a
``WWW-Authenticate`` challenge (RFC 6750); the reason goes in the outcome, never the token.

Verified tokens are remembered (bounded, by the token's exact text, until they expire), so
a client that sends the same token on every request pays for one signature check. A token
the development issuer gave for an authorization code names its grant (claim ``grant``),
which ``verify_grant`` returns so that the caller can check it has not been revoked.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import jwt

from consent.context import AccessContext, InvalidClaims, context_from_claims
from fhir_gateway.outcomes import Unauthorized

KeyResolver = Callable[[str], Any]  # token -> the public key that should have signed it


class InvalidToken(Unauthorized):
    """No usable bearer token (401)."""

    def __init__(self, message: str, *, error: str = "invalid_token") -> None:
        super().__init__(message)
        challenge = 'Bearer realm="carejoin"'
        if error:
            challenge += f', error="{error}", error_description="{message}"'
        self.headers = {"WWW-Authenticate": challenge}


class TokenVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        resolve_key: KeyResolver,
        algorithms: Sequence[str] = ("RS256", "ES256"),
        leeway: int = 30,
        cache_size: int = 10_000,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self._resolve_key = resolve_key
        self._algorithms = list(algorithms)
        self._leeway = leeway
        self._cache: OrderedDict[str, tuple[AccessContext, str | None]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def verify(self, token: str) -> AccessContext:
        """The access context of ``token``, or InvalidToken."""
        return self.verify_grant(token)[0]

    def verify_grant(self, token: str) -> tuple[AccessContext, str | None]:
        """The access context of ``token`` and the grant it was issued under (if it names
        one), or InvalidToken."""
        now = time.time()
        with self._lock:
            cached = self._cache.get(token)
            if cached is not None:
                if cached[0].expires_at + self._leeway > now:
                    self._cache.move_to_end(token)
                    return cached
                del self._cache[token]
        verified = self._verify(token)
        with self._lock:
            self._cache[token] = verified
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return verified

    def _verify(self, token: str) -> tuple[AccessContext, str | None]:
        claims = self._decode(token, audience=self.audience, what="access token", of="server")
        try:
            context = context_from_claims(claims)
        except InvalidClaims as exc:
            raise InvalidToken(str(exc)) from None
        grant = claims.get("grant")
        return context, grant if isinstance(grant, str) and grant else None

    def verify_id_token(self, token: str, *, client_id: str) -> dict[str, Any]:
        """The claims of an OpenID Connect ID token (Core 3.1.3.7): signed by the trusted
        issuer with its keys, for ``client_id``, unexpired; or InvalidToken. The caller
        checks the nonce."""
        claims = self._decode(token, audience=client_id, what="ID token", of="client")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != client_id:
            raise InvalidToken("The ID token names other audiences but not this client as azp")
        return claims

    def _decode(self, token: str, *, audience: str, what: str, of: str) -> dict[str, Any]:
        """The verified claims of a JWT from the trusted issuer for ``audience``; or
        InvalidToken saying what is wrong with the ``what`` (never repeating the token)."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._resolve_key(token),
                algorithms=self._algorithms,
                audience=audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken(f"The {what} has expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken(f"The {what} is not for this {of} (audience)") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken(f"The {what} was not issued by a trusted issuer") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken(f"The {what}'s signature is not valid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"The {what} lacks the '{exc.claim}' claim") from None
        except (jwt.PyJWTError, ValueError) as exc:
            raise InvalidToken(f"The {what} is not valid: {_short(exc)}") from None
        return claims


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def bearer_token(authorization: str | None) -> str:
    """The token in an ``Authorization`` header, or InvalidToken."""
    if not authorization:
        raise InvalidToken(
            "This request needs an access token (Authorization: Bearer ...)", error=""
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken(
            "The Authorization header must be 'Bearer <token>'", error="invalid_request"
        )
    return token.strip()


def jwks_resolver(jwks_url: str) -> KeyResolver:
    """Keys from the identity provider's JWKS, fetched on demand and cached."""
    # The key set is cached for five minutes, so a withdrawn key stops working within that.
    client = jwt.PyJWKClient(jwks_url, lifespan=300, timeout=5)

    def resolve(token: str) -> Any:
        try:
            return client.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as exc:
            # The issuer cannot be reached: fail closed.
            raise InvalidToken(f"The identity provider's keys cannot be fetched: {exc}") from None

    return resolve

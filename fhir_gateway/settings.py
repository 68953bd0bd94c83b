"""The gateway's section of the one Settings (composed in ``carejoin.settings``)."""

from ipaddress import ip_address
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, model_validator


def _secure_url(url: str) -> bool:
    """https, or http to this machine's loopback interface (tests, a local provider)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


class AuthSettings(BaseModel):
    """Who may call: the token issuer the gateway trusts.

    Production names the partnership's identity provider (``issuer`` and ``jwks_url``). The
    embedded default runs a development issuer whose signing key lives at
    ``development_key_path``; it is refused when ``jwks_url`` is set.
    """

    issuer: str | None = Field(
        default=None, description="The trusted 'iss'; by default the development issuer's URL."
    )
    audience: str | None = Field(
        default=None, description="The 'aud' every token must carry; by default the FHIR base URL."
    )
    jwks_url: str | None = None
    development_issuer: bool = True
    development_key_path: str = "./var/development-issuer-key.pem"
    development_clients_path: str = Field(
        default="./var/development-clients.json",
        description="Systems registered with the development issuer (carejoin client register).",
    )
    token_lifetime: int = Field(default=3600, ge=60, le=24 * 3600)
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    session_idle_timeout: int = Field(
        default=15 * 60,
        ge=60,
        le=24 * 3600,
        description="Seconds a browser session may go without a request before it ends.",
    )
    session_lifetime: int = Field(
        default=8 * 3600,
        ge=300,
        le=7 * 24 * 3600,
        description="Seconds a browser session lasts at most after sign-in, however busy.",
    )
    session_cookie_secure: bool = Field(
        default=True,
        description="Mark the sign-in cookies Secure (sent over HTTPS only). Only the "
        "development issuer may turn this off, for tests that talk plain http.",
    )
    web_client_id: str = Field(
        default="carejoin-web", description="The built-in web client (the web pages)."
    )
    web_redirect_uri: str | None = Field(
        default=None,
        description="Where the development issuer sends the web pages' sign-in back to; by "
        "default /auth/callback on this server.",
    )
    web_scope: str = Field(
        default="user/*.cruds patient/*.cruds",
        description="What the web pages ask for; each persona gets what it holds of it.",
    )
    authorization_endpoint: str | None = Field(
        default=None,
        description="The identity provider's authorization endpoint, where the web pages send "
        "the browser to sign in (production; the development issuer has its own).",
    )
    token_endpoint: str | None = Field(
        default=None,
        description="The identity provider's token endpoint, where the web pages exchange "
        "the code (production).",
    )
    web_client_secret: SecretStr | None = Field(
        default=None,
        description="The web pages' client secret, if the identity provider registered them "
        "as a confidential client (client_secret_basic); without it they are a public client "
        "(PKCE).",
    )

    @property
    def trusted_issuer(self) -> str:
        if self.issuer is None:
            raise RuntimeError("The token issuer is not resolved (GatewaySettings does it)")
        return self.issuer

    @property
    def web_callback(self) -> str:
        if self.web_redirect_uri is None:
            raise RuntimeError(
                "The web client's redirect URI is not resolved (GatewaySettings does it)"
            )
        return self.web_redirect_uri

    @property
    def expected_audience(self) -> str:
        if self.audience is None:
            raise RuntimeError("The token audience is not resolved (GatewaySettings does it)")
        return self.audience

    @model_validator(mode="after")
    def _one_issuer(self) -> "AuthSettings":
        if self.development_issuer and self.jwks_url:
            raise ValueError("Give jwks_url (production) or the development issuer, not both")
        if not self.development_issuer and not self.jwks_url:
            raise ValueError("Without the development issuer, jwks_url must name the JWKS")
        endpoints = (self.authorization_endpoint, self.token_endpoint)
        if self.development_issuer and any(endpoints):
            raise ValueError(
                "The development issuer has its own endpoints: authorization_endpoint and "
                "token_endpoint name an identity provider's"
            )
        if any(endpoints) and not all(endpoints):
            raise ValueError("Give both authorization_endpoint and token_endpoint, or neither")
        for endpoint in (*endpoints, self.jwks_url):
            if endpoint is not None and not _secure_url(endpoint):
                raise ValueError(
                    f"{endpoint} must be an https URL (plain http only on the loopback interface)"
                )
        if self.web_client_secret is not None and self.token_endpoint is None:
            raise ValueError("web_client_secret is for an identity provider's token endpoint")
        if any(alg.upper().startswith("HS") or alg.lower() == "none" for alg in self.algorithms):
            raise ValueError("Only asymmetric signature algorithms are accepted")
        if self.session_idle_timeout > self.session_lifetime:
            raise ValueError("A session's idle timeout cannot be longer than its lifetime")
        if not self.session_cookie_secure and not self.development_issuer:
            raise ValueError("Sign-in cookies are Secure except with the development issuer")
        return self


class GatewaySettings(BaseModel):
    """What the FHIR gateway needs to run.

    ``database_url`` defaults to a SQLite file under ``./var/`` (the embedded default);
    production gives a ``postgresql+psycopg://`` URL.
    """

    database_url: str = "sqlite:///./var/carejoin.db"
    base_url: str = Field(
        default="http://127.0.0.1:8080/fhir",
        description="The public base URL of the FHIR API, used in Location, fullUrl and links.",
    )
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    default_page_size: int = Field(default=20, ge=1, le=1000)
    max_page_size: int = Field(default=1000, ge=1, le=10000)
    pool_size: int = Field(default=10, ge=1)
    pool_pre_ping: bool = Field(
        default=False,
        description="Ping each pooled connection before use (one extra round trip per request).",
    )
    echo_sql: bool = False
    dispatch_events: bool = Field(
        default=True,
        description="Run the outbox dispatcher (identity linking...) in this process.",
    )
    dispatch_interval: float = Field(default=0.25, gt=0, le=60)
    audit_seal_interval: float = Field(
        default=2.0,
        ge=0,
        le=3600,
        description="Seconds between sealing passes of the audit trail; 0 turns the sealer off. "
        "The sealer runs only where the background workers do (dispatch_events).",
    )
    audit_block_size: int = Field(
        default=10000, ge=1, le=1_000_000, description="Most audit events sealed in one block."
    )
    auth: AuthSettings = Field(default_factory=AuthSettings)
    agreement_path: str | None = Field(
        default=None,
        description=(
            "The sharing agreement (JSON) in force while none has been loaded through the "
            "admin API; with neither, nothing is shared."
        ),
    )

    @model_validator(mode="after")
    def _auth_defaults(self) -> "GatewaySettings":
        """Tokens are for this server (its base URL), from its development issuer by default."""
        base = self.base_url.rstrip("/")
        updates: dict[str, str] = {}
        if self.auth.audience is None:
            updates["audience"] = base
        if self.auth.web_redirect_uri is None:
            updates["web_redirect_uri"] = base.removesuffix("/fhir") + "/auth/callback"
        if self.auth.issuer is None:
            if not self.auth.development_issuer:
                raise ValueError("auth.issuer must name the identity provider")
            updates["issuer"] = base.removesuffix("/fhir") + "/auth"
        if updates:
            self.auth = self.auth.model_copy(update=updates)
        return self

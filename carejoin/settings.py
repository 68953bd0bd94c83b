"""The one Settings object of carejoin (environment prefix ``CAREJOIN_``).

Each package keeps its own section; this composition is the only place they meet. Nothing
here is instantiated at import time: entry points call ``get_settings()``.
"""

from functools import lru_cache

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from coordination.settings import CoordinationSettings
from fhir_gateway.settings import AuthSettings, GatewaySettings


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CAREJOIN_", env_nested_delimiter="__", extra="ignore"
    )

    environment: str = Field(default="development", pattern="^(development|test|production)$")
    database_url: str = "sqlite:///./var/carejoin.db"
    base_url: str = "http://127.0.0.1:8080/fhir"
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    default_page_size: int = Field(default=20, ge=1, le=1000)
    max_page_size: int = Field(default=1000, ge=1, le=10000)
    pool_size: int = Field(default=10, ge=1)
    pool_pre_ping: bool = False
    dispatch_events: bool = True
    audit_seal_interval: float = Field(default=2.0, ge=0, le=3600)
    audit_block_size: int = Field(default=10000, ge=1, le=1_000_000)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    coordination: CoordinationSettings = Field(default_factory=CoordinationSettings)
    agreement_path: str | None = Field(
        default=None,
        description="The sharing agreement in force until one is loaded through /admin/agreement.",
    )

    @model_validator(mode="after")
    def _safe_in_production(self) -> "Settings":
        if self.environment == "production":
            if self.auth.development_issuer:
                raise ValueError(
                    "Production must trust the partnership's identity provider: set "
                    "CAREJOIN_AUTH__DEVELOPMENT_ISSUER=false and CAREJOIN_AUTH__JWKS_URL"
                )
            if self.database_url.startswith("sqlite"):
                raise ValueError("Production runs on PostgreSQL, not the embedded SQLite")
        return self

    def gateway(self) -> GatewaySettings:
        """The gateway's section, built from the flat environment variables."""
        return GatewaySettings(
            database_url=self.database_url,
            base_url=self.base_url,
            max_body_bytes=self.max_body_bytes,
            default_page_size=self.default_page_size,
            max_page_size=self.max_page_size,
            pool_size=self.pool_size,
            pool_pre_ping=self.pool_pre_ping,
            dispatch_events=self.dispatch_events,
            audit_seal_interval=self.audit_seal_interval,
            audit_block_size=self.audit_block_size,
            auth=self.auth,
            agreement_path=self.agreement_path,
        )

    def auth_settings(self) -> AuthSettings:
        """The auth section with its defaults resolved against the base URL."""
        return self.gateway().auth


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

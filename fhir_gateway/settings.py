"""The gateway's section of the one Settings (composed in ``carejoin.settings``)."""

from pydantic import BaseModel, Field


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

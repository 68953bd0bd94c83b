"""Coordination's section of the one Settings (``carejoin.settings`` composes it)."""

from pydantic import BaseModel, Field


class CoordinationSettings(BaseModel):
    default_capacity: int = Field(
        default=120, ge=1, le=1000, description="Caseload capacity of a full-time coordinator."
    )
    full_time_hours: float = Field(
        default=37.5, gt=0, le=80, description="Weekly hours of a full-time coordinator."
    )
    hfrs_lookback_years: int = Field(default=2, ge=1, le=10)
    charlson_lookback_years: int = Field(default=2, ge=1, le=20)
    emergency_months: int = Field(default=12, ge=1, le=60)
    suppression_threshold: int = Field(
        default=5, ge=0, description="Outcome counts below this are suppressed (0: none)."
    )
    team_admin_roles: frozenset[str] = Field(
        default=frozenset({"R8008"}),
        description="Roles (at a team's host organisation) that may set up teams.",
    )
    casefind_on_events: bool = Field(
        default=True,
        description="Re-score a person when their record changes (outbox); off for bulk loads.",
    )

"""What a team looks like on the coordination API."""

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DISCIPLINES = {
    "nursing": "Community nursing",
    "social-work": "Social work",
    "mental-health": "Mental health",
    "therapy": "Occupational therapy and physiotherapy",
    "pharmacy": "Clinical pharmacy",
    "care-navigation": "Care navigation",
}
ODS = re.compile(r"^[A-Z0-9]{3,10}$")
ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    practitioner: str = Field(pattern=ID.pattern, description="Practitioner id")
    role: Literal["coordinator", "lead"] = "coordinator"
    discipline: str
    hours_per_week: float = Field(default=37.5, gt=0, le=80)
    capacity: int | None = Field(
        default=None, ge=0, le=1000, description="Default: the full-time capacity pro rata"
    )

    @field_validator("discipline")
    @classmethod
    def _known_discipline(cls, value: str) -> str:
        if value not in DISCIPLINES:
            raise ValueError(f"discipline must be one of {', '.join(sorted(DISCIPLINES))}")
        return value


class TeamIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=255)
    host: str = Field(description="ODS code of the organisation hosting the team")
    practices: tuple[str, ...] = Field(description="ODS codes of the aligned GP practices")
    members: tuple[MemberIn, ...] = ()

    @field_validator("host")
    @classmethod
    def _ods(cls, value: str) -> str:
        if not ODS.match(value):
            raise ValueError("host must be an ODS code")
        return value

    @field_validator("practices")
    @classmethod
    def _practices(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for code in value:
            if not ODS.match(code):
                raise ValueError(f"'{code}' is not an ODS code")
        if len(set(value)) != len(value):
            raise ValueError("a practice is listed twice")
        return value

    @model_validator(mode="after")
    def _distinct_members(self) -> "TeamIn":
        ids = [m.practitioner for m in self.members]
        if len(set(ids)) != len(ids):
            raise ValueError("a practitioner is listed twice in members")
        return self

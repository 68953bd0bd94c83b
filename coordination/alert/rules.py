"""What a hospital encounter means for coordination, and working days (pure).

An inpatient stay (class IMP, ACUTE or NONAC) that is open, or began in the last
``RECENT`` days, is an admission the coordinator hears about; one that ended in the last
``RECENT`` days is a discharge that needs a follow-up within two working days (England's
bank holidays, from the ``holidays`` package). A stay entered in error or cancelled
(HL7 A11) withdraws what it raised; a stay back in progress after a discharge (A13)
withdraws the follow-up. A new A&E attendance (class EMER) notifies the coordinator. Older
encounters (a backlog loaded later) change the person's state but raise nothing.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays

INPATIENT = frozenset({"IMP", "ACUTE", "NONAC"})
ATTENDANCE = frozenset({"EMER"})
WITHDRAWN = frozenset({"entered-in-error", "cancelled"})
OPEN = frozenset({"arrived", "triaged", "in-progress", "onleave"})
RECENT = timedelta(days=7)
FOLLOW_UP_WORKING_DAYS = 2


@cache
def _bank_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("GB", subdiv="ENG", years=year))


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in _bank_holidays(day.year)


def working_days_after(day: date, count: int) -> date:
    """The ``count``-th working day after ``day`` (Monday-Friday, England's bank holidays
    excepted)."""
    current = day
    left = count
    while left > 0:
        current += timedelta(days=1)
        if is_working_day(current):
            left -= 1
    return current


def parse_instant(value: object) -> datetime | None:
    """A FHIR date or dateTime as a UTC-aware instant (a date is its midnight, UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        if len(value) == 10:
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Stay:
    """What an Encounter says, for coordination."""

    kind: str  # inpatient | attendance | other
    status: str
    start: datetime | None
    end: datetime | None

    @property
    def withdrawn(self) -> bool:
        return self.status in WITHDRAWN

    @property
    def open(self) -> bool:
        return self.kind == "inpatient" and self.status in OPEN and self.end is None

    @property
    def discharged(self) -> bool:
        return self.kind == "inpatient" and self.status == "finished" and self.end is not None

    def admission_is_news(self, now: datetime) -> bool:
        if self.kind != "inpatient" or self.withdrawn or self.status == "planned":
            return False
        return self.open or (self.start is not None and now - self.start <= RECENT)

    def discharge_is_news(self, now: datetime) -> bool:
        return self.discharged and self.end is not None and now - self.end <= RECENT

    def attendance_is_news(self, now: datetime) -> bool:
        return (
            self.kind == "attendance"
            and not self.withdrawn
            and self.status != "planned"
            and self.start is not None
            and now - self.start <= RECENT
        )


def stay_of(encounter: Mapping[str, Any]) -> Stay:
    code = (encounter.get("class") or {}).get("code")
    kind = "inpatient" if code in INPATIENT else "attendance" if code in ATTENDANCE else "other"
    period = encounter.get("period") or {}
    return Stay(
        kind,
        str(encounter.get("status") or ""),
        parse_instant(period.get("start")),
        parse_instant(period.get("end")),
    )


ENGLAND = ZoneInfo("Europe/London")


def local_day(moment: datetime) -> date:
    return moment.astimezone(ENGLAND).date()


def follow_up_due(discharged: datetime) -> date:
    """Two working days after the day of discharge (in England's time)."""
    return working_days_after(local_day(discharged), FOLLOW_UP_WORKING_DAYS)

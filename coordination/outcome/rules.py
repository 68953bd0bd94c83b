"""Outcome measures (pure): the month's window, stays within it, and small-number suppression.

Small numbers: a count from 1 to ``threshold - 1`` is suppressed (shown as masked, never
as a number), and so is any share or rate whose numerator or denominator is suppressed or
whose denominator is below the threshold; zeros are shown (they identify nobody), as in
NHS England's published statistics.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

ENGLAND = ZoneInfo("Europe/London")


@dataclass(frozen=True, slots=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> "Month":
        try:
            year, month = (int(p) for p in text.split("-"))
            date(year, month, 1)
        except ValueError as exc:
            raise ValueError("month must be YYYY-MM") from exc
        if not 2000 <= year <= 2100:
            raise ValueError("month must be YYYY-MM between 2000 and 2100")
        return cls(year, month)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def next_first_day(self) -> date:
        return date(self.year + self.month // 12, self.month % 12 + 1, 1)

    @property
    def start(self) -> datetime:
        """Midnight on the first day, in England's time, as a UTC instant."""
        return datetime.combine(self.first_day, datetime.min.time(), ENGLAND).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.next_first_day, datetime.min.time(), ENGLAND).astimezone(UTC)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def bed_days_within(start: datetime, end: datetime | None, month: Month, now: datetime) -> int:
    """Midnights spent in hospital within the month (a stay still open counts to now)."""
    until = min(end or now, month.end)
    since = max(start, month.start)
    if until <= since:
        return 0
    first = since.astimezone(ENGLAND).date()
    last = until.astimezone(ENGLAND).date()
    return max((last - first).days, 0)


@dataclass(frozen=True, slots=True)
class Figure:
    """A published figure: ``value`` None when suppressed."""

    value: float | None
    suppressed: bool


def count(value: int, threshold: int) -> Figure:
    if 0 < value < threshold:
        return Figure(None, True)
    return Figure(float(value), False)


def ratio(numerator: int, denominator: int, threshold: int, *, per: float = 1.0) -> Figure:
    """``numerator / denominator * per``, suppressed where either count is."""
    if denominator == 0:
        return Figure(None, False)
    if 0 < numerator < threshold or denominator < threshold:
        return Figure(None, True)
    return Figure(round(numerator / denominator * per, 2), False)


def mean(total: float, n: int, threshold: int) -> Figure:
    if n == 0:
        return Figure(None, False)
    if n < threshold:
        return Figure(None, True)
    return Figure(round(total / n, 2), False)

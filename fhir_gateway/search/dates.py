"""FHIR date, dateTime and instant values as closed UTC ranges.

A FHIR date has an implicit precision: ``2024`` means the whole year, ``2024-03`` the whole
month, ``2024-03-05T10:00`` the whole minute. Both indexed values and search values become a
range ``[low, high]`` (spec 3.1.1.5.3, "Date"), so every prefix is a comparison of ranges.
A value without a time zone is taken as UTC (the spec leaves it to the server; UK sources send
local times rarely and we document the choice in docs/architecture.md).
"""

import calendar
import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo

_DATE_RE = re.compile(
    r"^(?P<year>\d{4})"
    r"(?:-(?P<month>\d{2})"
    r"(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d+)?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)

MIN_DATE = datetime(1, 1, 1, tzinfo=UTC)
MAX_DATE = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


class InvalidDate(ValueError):
    """The text is not a FHIR date, dateTime or instant."""


def parse_range(text: str) -> tuple[datetime, datetime]:
    """Return the closed UTC range ``[low, high]`` that ``text`` denotes at its precision."""
    match = _DATE_RE.match(text.strip())
    if match is None:
        raise InvalidDate(f"'{text}' is not a valid FHIR date or dateTime")
    parts = match.groupdict()
    try:
        year = int(parts["year"])
        tz = _tz(parts["tz"])
        if parts["month"] is None:
            low = datetime(year, 1, 1, tzinfo=tz)
            high = datetime(year, 12, 31, 23, 59, 59, 999999, tzinfo=tz)
        elif parts["day"] is None:
            month = int(parts["month"])
            last = calendar.monthrange(year, month)[1]
            low = datetime(year, month, 1, tzinfo=tz)
            high = datetime(year, month, last, 23, 59, 59, 999999, tzinfo=tz)
        else:
            month, day = int(parts["month"]), int(parts["day"])
            if parts["hour"] is None:
                low = datetime(year, month, day, tzinfo=tz)
                high = low + timedelta(days=1) - timedelta(microseconds=1)
            else:
                hour = int(parts["hour"])
                if parts["minute"] is None:
                    low = datetime(year, month, day, hour, tzinfo=tz)
                    high = low + timedelta(hours=1) - timedelta(microseconds=1)
                elif parts["second"] is None:
                    low = datetime(year, month, day, hour, int(parts["minute"]), tzinfo=tz)
                    high = low + timedelta(minutes=1) - timedelta(microseconds=1)
                elif parts["fraction"] is None:
                    low = datetime(
                        year,
                        month,
                        day,
                        hour,
                        int(parts["minute"]),
                        int(parts["second"]),
                        tzinfo=tz,
                    )
                    high = low + timedelta(seconds=1) - timedelta(microseconds=1)
                else:
                    fraction = parts["fraction"][1:7].ljust(6, "0")
                    low = datetime(
                        year,
                        month,
                        day,
                        hour,
                        int(parts["minute"]),
                        int(parts["second"]),
                        int(fraction),
                        tzinfo=tz,
                    )
                    high = low
    except ValueError as exc:  # day 31 of a 30-day month, hour 25 ...
        raise InvalidDate(f"'{text}' is not a valid FHIR date or dateTime: {exc}") from exc
    return low.astimezone(UTC), high.astimezone(UTC)


def _tz(text: str | None) -> tzinfo:
    if text is None or text == "Z":
        return UTC
    sign = 1 if text[0] == "+" else -1
    hours, minutes = int(text[1:3]), int(text[4:6])
    return timezone(sign * timedelta(hours=hours, minutes=minutes))

"""The time sign-in runs on, injectable so that tests can move it (code expiry, idle
timeouts) without sleeping."""

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)

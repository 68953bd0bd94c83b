"""The outbox dispatcher: every write's event reaches its handlers, none lost (decision 7).

Each write adds an ``outbox`` row in its own transaction. ``dispatch_once`` claims a batch of
unprocessed rows in order (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several replicas can
dispatch side by side), hands each to the handlers registered for its resource type, and
marks the rows processed, all in one transaction: if a handler fails, the batch is rolled
back and tried again, so a handler must be idempotent (identity's are: re-filing an
unchanged Patient changes nothing).

Handlers run in the dispatcher's session, so what they write (a Person, a Provenance, a
task) commits with the event's "processed" mark, and their own writes add outbox rows that
a later pass dispatches in turn.
"""

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from fhir_gateway.store.models import OutboxRow

log = logging.getLogger("carejoin.events")


@dataclass(frozen=True, slots=True)
class Event:
    pk: int
    resource_type: str
    resource_id: str
    version_id: int
    action: str  # create | update | delete
    patient_id: str | None


Handler = Callable[[Session, Event, datetime], None]
Deferred = Callable[[Session, datetime], int]
"""Work an extension defers out of the event handlers (for example re-scoring people an
event marked): run after each batch in its own transaction, returning how much it did, so
slow work never holds up the events behind it."""


class Dispatcher:
    def __init__(
        self, handlers: Mapping[str, Sequence[Handler]], deferred: Sequence[Deferred] = ()
    ):
        self._handlers = {k: tuple(v) for k, v in handlers.items()}
        self._deferred = tuple(deferred)

    @property
    def resource_types(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def with_handlers(
        self, registry: Mapping[str, Sequence[Handler]], deferred: Sequence[Deferred] = ()
    ) -> "Dispatcher":
        """This dispatcher's handlers and ``registry``'s (an extension's consumers)."""
        return Dispatcher(combine(self._handlers, registry), (*self._deferred, *deferred))

    def run_deferred(self, session: Session, *, now: datetime) -> int:
        """Run the deferred work once (each bounded by its own limit); returns how much."""
        return sum(work(session, now) for work in self._deferred)

    def dispatch_once(self, session: Session, *, now: datetime, batch: int = 200) -> int:
        """Claim and handle up to ``batch`` events; returns how many were claimed."""
        stmt = (
            select(OutboxRow)
            .where(OutboxRow.processed_at.is_(None))
            .order_by(OutboxRow.pk)
            .limit(batch)
        )
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        rows = session.scalars(stmt).all()
        for row in rows:
            event = Event(
                row.pk,
                row.resource_type,
                row.resource_id,
                row.version_id,
                row.action,
                row.patient_id,
            )
            for handler in self._handlers.get(row.resource_type, ()):
                handler(session, event, now)
        if rows:
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.pk.in_([r.pk for r in rows]))
                .values(processed_at=now)
            )
        return len(rows)

    def drain(
        self,
        factory: sessionmaker[Session],
        *,
        batch: int = 200,
        progress: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Dispatch until nothing is pending (each batch in its own transaction), running the
        deferred work after each batch in a transaction of its own."""
        total = 0
        while stop is None or not stop.is_set():
            with factory.begin() as session:
                count = self.dispatch_once(session, now=datetime.now(UTC), batch=batch)
            total += count
            if progress is not None and count:
                progress(count)
            deferred = 0
            if self._deferred:
                with factory.begin() as session:
                    deferred = self.run_deferred(session, now=datetime.now(UTC))
            if count == 0 and deferred == 0:
                return total
        return total


def pending(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(OutboxRow).where(OutboxRow.processed_at.is_(None))
        )
        or 0
    )


async def run_forever(
    dispatcher: Dispatcher,
    factory: sessionmaker[Session],
    *,
    interval: float = 0.25,
) -> None:
    """The app's background loop: drain, then sleep ``interval``; errors are logged and retried.

    On cancellation (shutdown) the batch in flight finishes and commits before the loop ends,
    so no connection is left open behind a disposed engine.
    """
    stop = threading.Event()
    while True:
        work = asyncio.ensure_future(run_in_threadpool(dispatcher.drain, factory, stop=stop))
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            stop.set()
            with contextlib.suppress(Exception):
                await work
            raise
        except Exception:
            log.exception("dispatching outbox events failed; retrying")
        await asyncio.sleep(interval)


def combine(*registries: Mapping[str, Sequence[Handler]]) -> dict[str, list[Handler]]:
    merged: dict[str, list[Handler]] = {}
    for registry in registries:
        for resource_type, handlers in registry.items():
            merged.setdefault(resource_type, []).extend(handlers)
    return merged


__all__ = ["Deferred", "Dispatcher", "Event", "Handler", "combine", "pending", "run_forever"]

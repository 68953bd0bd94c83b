"""The sealer: chains committed audit events by hash, in blocks, so the trail is tamper-evident.

Events are written by many requests at once and never wait for one another (decision 6: no
serialised reads). Sealing comes afterwards, off the request path: ``seal`` takes the oldest
events no block lists yet, hashes them after the latest block's hash (``consent.audit.
chain_hash``) and records the block and which events it holds. The three audit tables are
insert-only in the database, so neither a block nor an event can be rewritten; ``verify``
recomputes every block from the events it lists and reports any that no longer match.

A transaction that commits late (its event's ``pk`` lower than events already sealed) is not
lost: its event is simply unsealed until the next block takes it. Blocks are therefore sets
of events, not ``pk`` ranges, and verification never assumes ranges.

Finding "the events no block lists" is an anti-join; over the whole trail it costs a walk of
every event ever sealed (0.8 s of both cores at a million events), every pass. So the
background sealer keeps a **floor** (``SealFloor``): a ``pk`` below which every event is
sealed or can never be committed, and reads only from there up. A floor is first measured
as a *candidate*: when a pass has sealed everything it sees from the floor up, the next
``pk`` after the newest event it sees, with the first transaction id not yet begun
(``pg_snapshot_xmax``). Any event below the candidate still to come belongs to a transaction
running at that moment; once PostgreSQL's oldest running transaction
(``pg_snapshot_xmin``) is past that id, and at least ``CANDIDATE_AGE`` seconds later, every
such event has committed (and the next pass, from the old floor, seals it) or never will,
and the candidate becomes the floor. On SQLite writers are serialised, so nothing runs
beside the sealer. As a safety net the sealer looks at the whole trail when it starts and
every ``SWEEP_INTERVAL`` seconds after, and ``verify`` always does.
"""

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from consent.audit import GENESIS_HASH, chain_hash
from fhir_gateway.audit import repository
from fhir_gateway.db import is_postgresql

log = logging.getLogger("carejoin.audit")

SEAL_LOCK_KEY = 0x63617564  # "caud": PostgreSQL advisory lock held while a block is sealed


CANDIDATE_AGE = 5.0
"""Seconds a candidate floor waits, besides the transactions running when it was measured.

PostgreSQL hands out the event's ``pk`` a moment before its transaction takes an id, so a
transaction can hold a ``pk`` below the candidate without yet counting as running; the wait
covers that moment, and the sweep covers anything stranger."""

SWEEP_INTERVAL = 3600.0
"""Seconds between the background sealer's passes over the whole trail."""


@dataclass(frozen=True, slots=True)
class SealFloor:
    """What a sealer knows of the trail between passes (module docstring).

    ``pk``: every event below it is sealed or can never be committed. ``resume``: where the
    next pass starts while a backlog is being worked through (the last block was full).
    ``candidate``: (``pk``, the first transaction id not begun then, when, by the sealer's
    clock), the next floor once its transactions have ended. ``sweeping``: the pass in hand
    started at the beginning of the trail. ``swept_at``: when a pass over the whole trail
    last finished (None: never, so the next pass is one).
    """

    pk: int = 0
    resume: int | None = None
    candidate: tuple[int, int, float] | None = None
    sweeping: bool = False
    swept_at: float | None = None


def _horizon(session: Session) -> tuple[int, int, int]:
    """(The oldest transaction id still running, the first not yet begun, the newest event's
    ``pk``), all as one snapshot sees them. SQLite has no concurrent writers: (0, 0, pk)."""
    if not is_postgresql(session):
        return 0, 0, repository.latest_event_pk(session)
    row = session.execute(
        text(
            "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint, "
            "(SELECT coalesce(max(pk), 0) FROM audit_event) "
            "FROM pg_current_snapshot() AS s"
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


def seal(session: Session, *, now: datetime, block_size: int) -> int | None:
    """Seal up to ``block_size`` unsealed events (in ``pk`` order) as the next block, looking
    at the whole trail. Returns the new block's number, or None when no event was waiting.
    Flushes, never commits (see ``seal_from``)."""
    return seal_from(session, now=now, block_size=block_size, floor=SealFloor())[0]


def seal_from(
    session: Session,
    *,
    now: datetime,
    block_size: int,
    floor: SealFloor,
    clock: Callable[[], float] = time.monotonic,
    sweep_interval: float = SWEEP_INTERVAL,
) -> tuple[int | None, SealFloor]:
    """Seal up to ``block_size`` unsealed events at or above what ``floor`` allows, in ``pk``
    order, as the next block; (the new block's number or None, the floor after this pass).

    Flushes, never commits: the caller's transaction commits the block with its seal rows, or
    neither, and the caller keeps the returned floor only once it has committed.

    Two sealers must never chain to the same latest block. On PostgreSQL a transaction-level
    advisory lock is taken first, so a second replica waits until the first has committed and
    then sees its block; on SQLite the unit of work's ``BEGIN IMMEDIATE`` already serialises
    writers. Should both guards be bypassed, the primary keys of ``audit_block.number`` and
    ``audit_seal.event_pk`` still refuse a duplicate block or a doubly sealed event. Two
    sealers' floors never mislead each other: a floor says something about the trail, and
    another sealer's blocks only make it truer.
    """
    if block_size < 1:
        raise ValueError("block_size must be at least 1")
    if is_postgresql(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEAL_LOCK_KEY})
    moment = clock()
    sweeping = floor.sweeping
    if floor.resume is not None:
        start = floor.resume
    elif floor.swept_at is None or moment - floor.swept_at >= sweep_interval:
        start, sweeping = 0, True
    else:
        start = floor.pk
    # Measured before the rows are read, so that an event committed by a transaction that
    # has ended by now is among them.
    oldest_running, first_unbegun, newest = _horizon(session)
    rows = repository.unsealed_rows(session, limit=block_size, from_pk=start)
    after = _floor_after(
        floor,
        start=start,
        sweeping=sweeping,
        full=len(rows) == block_size,
        last_pk=rows[-1][0] if rows else None,
        horizon=(oldest_running, first_unbegun, newest),
        moment=moment,
    )
    if not rows:
        return None, after
    latest = repository.latest_block(session)
    number = 1 if latest is None else latest.number + 1
    previous = GENESIS_HASH if latest is None else latest.hash
    repository.add_block(
        session,
        number=number,
        sealed_at=now,
        event_pks=[row[0] for row in rows],
        previous_hash=previous,
        hash_=chain_hash(previous, rows),
    )
    return number, after


def _floor_after(
    floor: SealFloor,
    *,
    start: int,
    sweeping: bool,
    full: bool,
    last_pk: int | None,
    horizon: tuple[int, int, int],
    moment: float,
) -> SealFloor:
    if full:
        # A backlog: go on from the last event sealed; the lap ends with a pass that is not.
        assert last_pk is not None
        return replace(floor, resume=last_pk + 1, sweeping=sweeping)
    after = replace(
        floor,
        resume=None,
        sweeping=False,
        swept_at=moment if sweeping else floor.swept_at,
    )
    if start > floor.pk:
        return after  # the end of a lap resumed above the floor: the floor's pass comes next
    oldest_running, first_unbegun, newest = horizon
    # Every event this pass sees at or above the floor is now sealed.
    candidate = floor.candidate
    if (
        candidate is not None
        and oldest_running >= candidate[1]
        and moment - candidate[2] >= CANDIDATE_AGE
    ):
        after = replace(after, pk=max(floor.pk, candidate[0]))
        candidate = None
    if candidate is None:
        candidate = (newest + 1, first_unbegun, moment)
    return replace(after, candidate=candidate)


@dataclass(slots=True)
class Sealer:
    """A sealer's memory between passes: its floor, replaced after each commit."""

    floor: SealFloor = field(default_factory=SealFloor)


def seal_all(
    factory: sessionmaker[Session],
    *,
    block_size: int,
    stop: threading.Event | None = None,
    sealer: Sealer | None = None,
) -> list[int]:
    """Seal what was waiting when the call began, each block in its own transaction; the
    block numbers.

    Blocks follow one another while they come out full (a backlog) and the pass after a
    backlog, which starts from the floor again; the first block that is not full, from the
    floor, ends the call. Waiting instead until *nothing* is waiting would, under a steady
    stream of audited reads, seal a handful of events per block, one transaction after
    another, without end (measured: 70 to 90 blocks of a few dozen events every two seconds,
    a fifth of the service's reads).

    ``sealer``: the floor kept between calls (the background loop's); without it, the whole
    trail is looked at. ``stop`` (set on shutdown) ends the loop after the block in flight
    has committed.
    """
    state = sealer if sealer is not None else Sealer()
    sealed: list[int] = []
    while stop is None or not stop.is_set():
        before = state.floor
        with factory.begin() as session:
            number, after = seal_from(
                session, now=datetime.now(UTC), block_size=block_size, floor=before
            )
        state.floor = after  # committed: the floor may now count on this block
        if number is None:
            break
        sealed.append(number)
        if after.resume is None and before.resume is None:
            break  # not full, and from the floor: everything committed before it is sealed
    return sealed


@dataclass(frozen=True, slots=True)
class BrokenBlock:
    number: int
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``verify`` found: the blocks and events checked, the blocks that no longer match,
    the events still waiting for a block (with the age of the oldest), and the latest block's
    stored hash."""

    blocks: int
    events: int
    broken: tuple[BrokenBlock, ...]
    unsealed: int
    oldest_unsealed_at: datetime | None
    oldest_unsealed_age: timedelta | None
    latest_block: int | None = None
    latest_hash: str | None = None  # worth keeping outside the database (docs/audit.md)

    @property
    def intact(self) -> bool:
        return not self.broken


def verify(session: Session, *, now: datetime | None = None) -> VerifyReport:
    """Recompute every block from the events it lists and check the chain.

    For each block in number order: the numbers run on without a gap; ``previous_hash`` is
    the previous block's stored hash (``GENESIS_HASH`` for block 1); as many seal rows name
    it as ``event_count`` says; every event it names still exists; and the hash recomputed
    from those events (in ``pk`` order) is the stored one. A broken block does not break the
    blocks after it: the next block is checked against the broken block's stored hash, so
    the report names the blocks that were tampered with rather than everything after them.

    Read-only. ``now`` (default: the current time) dates the age of the oldest unsealed event.
    """
    broken: list[BrokenBlock] = []
    blocks = events = 0
    expected_number = 1
    previous = GENESIS_HASH
    for block in repository.blocks(session):
        reasons: list[str] = []
        if block.number != expected_number:
            reasons.append(f"blocks {expected_number} to {block.number - 1} are missing")
        if block.previous_hash != previous:
            reasons.append("its previous hash is not the hash of the block before it")
        rows = repository.block_rows(session, block.number)
        seals = repository.seal_count(session, block.number)
        if seals != block.event_count:
            reasons.append(f"it records {block.event_count} events but {seals} are sealed in it")
        if len(rows) != seals:
            reasons.append(f"{seals - len(rows)} of its events are missing")
        if chain_hash(block.previous_hash, rows) != block.hash:
            reasons.append("its hash does not match its events")
        if reasons:
            broken.append(BrokenBlock(block.number, tuple(reasons)))
        blocks += 1
        events += len(rows)
        expected_number = block.number + 1
        previous = block.hash
    unsealed, oldest = repository.unsealed_summary(session)
    age = None
    if oldest is not None:
        age = max((now or datetime.now(UTC)) - oldest, timedelta(0))
    return VerifyReport(
        blocks=blocks,
        events=events,
        broken=tuple(broken),
        unsealed=unsealed,
        oldest_unsealed_at=oldest,
        oldest_unsealed_age=age,
        latest_block=expected_number - 1 if blocks else None,
        latest_hash=previous if blocks else None,
    )


async def run_forever(factory: sessionmaker[Session], *, interval: float, block_size: int) -> None:
    """The app's background sealer: seal what is waiting, then sleep ``interval`` seconds.

    Errors are logged and the loop carries on (the events wait for the next pass; nothing is
    lost). Sealing runs in a worker thread so the event loop keeps serving requests. On
    cancellation (shutdown) the block in flight commits before the loop ends, so no
    connection is left open behind a disposed engine.
    """
    stop = threading.Event()
    state = Sealer()
    while True:
        work = asyncio.ensure_future(
            asyncio.to_thread(seal_all, factory, block_size=block_size, stop=stop, sealer=state)
        )
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            stop.set()
            with contextlib.suppress(Exception):
                await work
            raise
        except Exception:
            log.exception("sealing audit events failed; retrying")
        await asyncio.sleep(interval)


__all__ = [
    "CANDIDATE_AGE",
    "SEAL_LOCK_KEY",
    "SWEEP_INTERVAL",
    "BrokenBlock",
    "SealFloor",
    "Sealer",
    "VerifyReport",
    "run_forever",
    "seal",
    "seal_all",
    "seal_from",
    "verify",
]

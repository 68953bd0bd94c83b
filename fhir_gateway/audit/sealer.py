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
"""

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from consent.audit import GENESIS_HASH, chain_hash
from fhir_gateway.audit import repository
from fhir_gateway.db import is_postgresql

log = logging.getLogger("carejoin.audit")

SEAL_LOCK_KEY = 0x63617564  # "caud": PostgreSQL advisory lock held while a block is sealed


def seal(session: Session, *, now: datetime, block_size: int) -> int | None:
    """Seal up to ``block_size`` unsealed events (in ``pk`` order) as the next block.

    Returns the new block's number, or None when no event was waiting. Flushes, never
    commits: the caller's transaction commits the block with its seal rows, or neither.

    Two sealers must never chain to the same latest block. On PostgreSQL a transaction-level
    advisory lock is taken first, so a second replica waits until the first has committed and
    then sees its block; on SQLite the unit of work's ``BEGIN IMMEDIATE`` already serialises
    writers. Should both guards be bypassed, the primary keys of ``audit_block.number`` and
    ``audit_seal.event_pk`` still refuse a duplicate block or a doubly sealed event.
    """
    if block_size < 1:
        raise ValueError("block_size must be at least 1")
    if is_postgresql(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEAL_LOCK_KEY})
    rows = repository.unsealed_rows(session, limit=block_size)
    if not rows:
        return None
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
    return number


def seal_all(
    factory: sessionmaker[Session],
    *,
    block_size: int,
    stop: threading.Event | None = None,
) -> list[int]:
    """Seal until nothing is waiting, each block in its own transaction; the block numbers.

    ``stop`` (set on shutdown) ends the loop after the block in flight has committed.
    """
    sealed: list[int] = []
    while stop is None or not stop.is_set():
        with factory.begin() as session:
            number = seal(session, now=datetime.now(UTC), block_size=block_size)
        if number is None:
            break
        sealed.append(number)
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
    while True:
        work = asyncio.ensure_future(
            asyncio.to_thread(seal_all, factory, block_size=block_size, stop=stop)
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
    "SEAL_LOCK_KEY",
    "BrokenBlock",
    "VerifyReport",
    "run_forever",
    "seal",
    "seal_all",
    "verify",
]

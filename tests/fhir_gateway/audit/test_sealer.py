"""Sealing the audit trail in hash-chained blocks, and verifying it, on both backends.

The audit tables are insert-only, so tampering is simulated the two ways it could happen:
a block inserted with a wrong hash, and (with the insert-only trigger dropped inside the
test's transaction, which both backends roll back) an event edited or deleted after sealing.
"""

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session

from consent.audit import GENESIS_HASH, SEALED_COLUMNS, Outcome, chain_hash
from fhir_gateway import migrate
from fhir_gateway.audit import repository, sealer
from fhir_gateway.audit.models import AuditBlockRow, AuditEventRow, AuditSealRow
from fhir_gateway.db import create_engine_for, session_factory_for
from tests.fhir_gateway.audit.records import add, record, seal_everything

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _seal(session: Session, block_size: int = 10000) -> int | None:
    return sealer.seal(session, now=NOW, block_size=block_size)


def _block(session: Session, number: int) -> AuditBlockRow:
    block = session.get(AuditBlockRow, number)
    assert block is not None
    return block


def _sealed_pks(session: Session, number: int) -> list[int]:
    return list(
        session.scalars(
            select(AuditSealRow.event_pk)
            .where(AuditSealRow.block_number == number)
            .order_by(AuditSealRow.event_pk)
        )
    )


def test_seal_and_verify_round_trip(session: Session) -> None:
    seal_everything(session)
    rows = add(
        session, record(), record(outcome=Outcome.DENIED), record(purpose="BTG", break_glass=True)
    )
    number = _seal(session)
    assert number is not None
    block = _block(session, number)
    assert block.event_count == 3
    assert _sealed_pks(session, number) == [r.pk for r in rows]
    previous = GENESIS_HASH if number == 1 else _block(session, number - 1).hash
    assert block.previous_hash == previous
    assert block.hash == chain_hash(previous, repository.block_rows(session, number))
    assert _seal(session) is None  # nothing left to seal

    report = sealer.verify(session, now=NOW)
    assert report.intact
    assert report.broken == ()
    assert report.blocks >= 1
    assert report.events >= 3
    assert report.unsealed == 0
    assert report.oldest_unsealed_age is None
    assert (report.latest_block, report.latest_hash) == (number, block.hash)


def test_blocks_hold_at_most_block_size_events_and_chain(session: Session) -> None:
    seal_everything(session)
    rows = add(session, *(record(detail=str(n)) for n in range(5)))
    numbers = [n for _ in range(3) if (n := _seal(session, block_size=2)) is not None]
    first = numbers[0]
    assert numbers == [first, first + 1, first + 2]
    assert [_block(session, n).event_count for n in numbers] == [2, 2, 1]
    assert _block(session, first + 1).previous_hash == _block(session, first).hash
    assert [pk for n in numbers for pk in _sealed_pks(session, n)] == [r.pk for r in rows]
    assert sealer.verify(session, now=NOW).intact


def test_an_event_committed_late_goes_into_the_next_block(session: Session) -> None:
    """A transaction that commits after a later one was sealed: its event has the lower pk.

    Simulated with explicit primary keys: two events are sealed, then an event appears whose
    pk is lower than theirs, as if its transaction had begun first and committed last.
    """
    seal_everything(session)
    top = session.scalar(select(AuditEventRow.pk).order_by(AuditEventRow.pk.desc())) or 0
    values = repository.row_values
    session.execute(
        insert(AuditEventRow),
        [{**values(record(detail="early")), "pk": top + 10}, {**values(record()), "pk": top + 11}],
    )
    first = _seal(session)
    assert first is not None
    session.execute(insert(AuditEventRow), [{**values(record(detail="late")), "pk": top + 5}])
    second = _seal(session)
    assert second == first + 1
    assert _sealed_pks(session, first) == [top + 10, top + 11]
    assert _sealed_pks(session, second) == [top + 5]  # not a pk range: verify must not assume one
    assert sealer.verify(session, now=NOW).intact


def test_a_block_with_a_wrong_hash_is_reported(session: Session) -> None:
    seal_everything(session)
    add(session, record())
    good = _seal(session)
    assert good is not None
    rows = add(session, record(detail="a"), record(detail="b"))
    bogus = good + 1
    session.add(
        AuditBlockRow(
            number=bogus,
            sealed_at=NOW,
            event_count=2,
            previous_hash=_block(session, good).hash,
            hash="f" * 64,
        )
    )
    session.flush()
    session.execute(insert(AuditSealRow), [{"event_pk": r.pk, "block_number": bogus} for r in rows])
    # A block sealed after the bogus one chains to its stored hash and is itself intact.
    add(session, record(detail="after"))
    after = _seal(session)
    assert after == bogus + 1

    report = sealer.verify(session, now=NOW)
    assert not report.intact
    assert [b.number for b in report.broken] == [bogus]
    assert report.broken[0].reasons == ("its hash does not match its events",)


def test_a_block_whose_count_or_chain_lies_is_reported(session: Session) -> None:
    seal_everything(session)
    latest = repository.latest_block(session)
    rows = add(session, record(detail="x"))
    number = (latest.number if latest else 0) + 1
    # The right hash for its event, so only the count and the chain are wrong.
    sealed_rows: list[Any] = [tuple(getattr(r, name) for name in SEALED_COLUMNS) for r in rows]
    session.add(
        AuditBlockRow(
            number=number,
            sealed_at=NOW,
            event_count=5,
            previous_hash="e" * 64,
            hash=chain_hash("e" * 64, sealed_rows),
        )
    )
    session.flush()
    session.execute(insert(AuditSealRow), [{"event_pk": rows[0].pk, "block_number": number}])
    (broken,) = sealer.verify(session, now=NOW).broken
    assert broken.number == number
    assert broken.reasons == (
        "its previous hash is not the hash of the block before it",
        "it records 5 events but 1 are sealed in it",
    )


def _drop_insert_only_trigger(session: Session, verb: str) -> None:
    # DDL is transactional on both backends: the test's rollback restores the trigger.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("DROP TRIGGER audit_event_insert_only ON audit_event"))
    else:
        session.execute(text(f"DROP TRIGGER audit_event_no_{verb}"))


def test_an_event_edited_after_sealing_breaks_its_block(session: Session) -> None:
    seal_everything(session)
    rows = add(session, record(detail="as recorded"), record())
    number = _seal(session)
    assert number is not None
    assert sealer.verify(session, now=NOW).intact
    _drop_insert_only_trigger(session, "update")
    session.execute(
        text("UPDATE audit_event SET detail = 'rewritten' WHERE pk = :pk"), {"pk": rows[0].pk}
    )
    report = sealer.verify(session, now=NOW)
    assert [(b.number, b.reasons) for b in report.broken] == [
        (number, ("its hash does not match its events",))
    ]


def test_an_event_deleted_after_sealing_is_reported_missing(session: Session) -> None:
    seal_everything(session)
    rows = add(session, record(), record(detail="to be removed"))
    number = _seal(session)
    assert number is not None
    _drop_insert_only_trigger(session, "delete")
    # No foreign key stands in the way (migration 0018): verify is what notices.
    session.execute(text("DELETE FROM audit_event WHERE pk = :pk"), {"pk": rows[1].pk})
    (broken,) = sealer.verify(session, now=NOW).broken
    assert broken.number == number
    assert broken.reasons == (
        "1 of its events are missing",
        "its hash does not match its events",
    )


def test_a_forged_seal_row_is_reported(session: Session) -> None:
    """The trail is insert-only, so a seal row can be added by hand: one naming an event that
    does not exist yet (to pass it off as sealed when it comes) breaks its block at once."""
    seal_everything(session)
    add(session, record())
    number = _seal(session)
    assert number is not None
    future = (session.scalar(text("SELECT max(pk) FROM audit_event")) or 0) + 1000
    session.execute(
        text("INSERT INTO audit_seal (event_pk, block_number) VALUES (:pk, :number)"),
        {"pk": future, "number": number},
    )
    (broken,) = sealer.verify(session, now=NOW).broken
    assert broken.number == number
    assert broken.reasons == (
        "it records 1 events but 2 are sealed in it",
        "1 of its events are missing",
    )


def test_verify_reports_unsealed_events_and_the_oldest_age(session: Session) -> None:
    seal_everything(session)
    add(session, record(recorded_at=NOW - timedelta(hours=1)), record(recorded_at=NOW))
    report = sealer.verify(session, now=NOW)
    assert report.intact
    assert report.unsealed == 2
    assert report.oldest_unsealed_at == NOW - timedelta(hours=1)
    assert report.oldest_unsealed_age == timedelta(hours=1)


def test_block_size_must_be_positive(session: Session) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        sealer.seal(session, now=NOW, block_size=0)


def test_postgresql_sealers_take_turns(session: Session, engine: Engine) -> None:
    """While one transaction seals, another replica cannot take the sealing lock."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers with BEGIN IMMEDIATE")
    add(session, record())
    assert _seal(session) is not None  # holds the advisory lock until the test's rollback
    with engine.connect() as other:
        taken = other.execute(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": sealer.SEAL_LOCK_KEY}
        ).scalar_one()
        other.rollback()
    assert taken is False


# --- The background loop (its own SQLite file: it commits, and the trail cannot be cleaned) ---


@pytest.fixture
def own_engine(tmp_path: Path) -> Engine:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'sealer.db'}")
    migrate.upgrade(engine)
    return engine


def test_the_background_sealer_seals_and_survives_errors(
    own_engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    factory = session_factory_for(own_engine)
    with factory.begin() as session:
        add(session, *(record(detail=str(n)) for n in range(5)))
    real = sealer.seal_all
    calls = 0

    def flaky(*args: object, **kwargs: object) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the database went away")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sealer, "seal_all", flaky)

    async def run() -> None:
        task = asyncio.create_task(sealer.run_forever(factory, interval=0.01, block_size=2))
        for _ in range(500):
            await asyncio.sleep(0.01)
            with factory.begin() as session:
                if repository.unsealed_summary(session)[0] == 0:
                    break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        with caplog.at_level(logging.ERROR, logger="carejoin.audit"):
            asyncio.run(run())
        with factory.begin() as session:
            report = sealer.verify(session, now=datetime.now(UTC))
    finally:
        own_engine.dispose()
    assert "sealing audit events failed" in caplog.text
    assert (report.blocks, report.events, report.unsealed) == (3, 5, 0)
    assert report.intact

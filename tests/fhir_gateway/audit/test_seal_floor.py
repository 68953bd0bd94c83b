"""The sealer's floor: a pass reads only the newest events, and no event is ever left behind.

These tests commit (a floor is about what other transactions have committed), so each backend
gets a database of its own for the module: a SQLite file, a PostgreSQL schema.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from fhir_gateway.audit import repository, sealer
from fhir_gateway.audit.models import AuditSealRow
from fhir_gateway.audit.sealer import CANDIDATE_AGE, SealFloor
from fhir_gateway.db import session_factory_for
from tests.conftest import own_engine
from tests.fhir_gateway.audit.records import add, record


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    with own_engine(request.param, tmp_path_factory, "seal-floor") as e:
        yield e


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    factory = session_factory_for(engine)
    sealer.seal_all(factory, block_size=10000)  # what earlier tests left: a sealed trail
    return factory


class Clock:
    """The sealer's clock, moved on by the test (the database's transactions stay real)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _pass(
    factory: sessionmaker[Session],
    floor: SealFloor,
    clock: Clock,
    *,
    block_size: int = 10000,
    sweep_interval: float = sealer.SWEEP_INTERVAL,
) -> tuple[int | None, SealFloor]:
    with factory.begin() as session:
        return sealer.seal_from(
            session,
            now=datetime.now(UTC),
            block_size=block_size,
            floor=floor,
            clock=clock,
            sweep_interval=sweep_interval,
        )


def _commit(factory: sessionmaker[Session], count: int) -> list[int]:
    with factory.begin() as session:
        return [row.pk for row in add(session, *(record(detail=str(n)) for n in range(count)))]


def _unsealed(factory: sessionmaker[Session]) -> int:
    with factory.begin() as session:
        return repository.unsealed_summary(session)[0]


def _times_sealed(factory: sessionmaker[Session], pk: int) -> int:
    with factory.begin() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(AuditSealRow).where(AuditSealRow.event_pk == pk)
            )
            or 0
        )


def _until_risen(
    factory: sessionmaker[Session], floor: SealFloor, clock: Clock, above: int
) -> SealFloor:
    """Passes (the clock moved past the candidate's wait each time) until the floor is above
    ``above``. Transaction ids are the whole cluster's, so another client's transaction that
    is still running holds the floor where it is: wait for it, a few seconds at most."""
    deadline = time.monotonic() + 20
    while floor.pk <= above:
        assert time.monotonic() < deadline, f"the floor stayed at {floor.pk}"
        clock.now += CANDIDATE_AGE + 1
        _, floor = _pass(factory, floor, clock)
        time.sleep(0.05)
    return floor


@contextmanager
def _committing_late(factory: sessionmaker[Session]) -> Iterator[tuple[Session, int]]:
    """A transaction (PostgreSQL) that has written an event and stays open until the test
    commits it: (its session, the event's pk)."""
    late = factory()
    late.begin()
    try:
        yield late, add(late, record(detail="committed late"))[0].pk
    finally:
        late.close()


def test_the_floor_rises_past_what_is_sealed_and_passes_start_there(
    factory: sessionmaker[Session],
) -> None:
    clock = Clock()
    pks = _commit(factory, 3)
    number, floor = _pass(factory, SealFloor(), clock)
    assert number is not None  # a sweep first: it seals the three
    assert floor.swept_at == clock.now
    assert floor.pk == 0
    assert floor.candidate is not None
    assert floor.candidate[0] == pks[-1] + 1
    clock.now += 1
    _, floor = _pass(factory, floor, clock)
    assert floor.pk == 0  # the candidate waits CANDIDATE_AGE seconds
    floor = _until_risen(factory, floor, clock, above=0)
    assert floor.pk == pks[-1] + 1

    later = _commit(factory, 2)
    number, floor = _pass(factory, floor, clock)
    assert number is not None
    with factory.begin() as session:
        assert repository.block_rows(session, number)[0][0] == later[0]
    assert _unsealed(factory) == 0


def test_a_backlog_is_sealed_block_by_block_each_event_once(
    factory: sessionmaker[Session],
) -> None:
    clock = Clock()
    floor = _until_risen(factory, SealFloor(), clock, above=0)
    pks = _commit(factory, 5)
    numbers = []
    while (step := _pass(factory, floor, clock, block_size=2))[0] is not None:
        numbers.append(step[0])
        floor = step[1]
        assert len(numbers) <= 3
    assert len(numbers) == 3
    assert [_times_sealed(factory, pk) for pk in pks] == [1] * 5
    floor = _until_risen(factory, step[1], clock, above=pks[-1])
    assert floor.pk == pks[-1] + 1


def test_an_event_committed_late_below_newer_ones_is_sealed_before_the_floor_passes_it(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: nothing commits beside the sealer")
    clock = Clock()
    floor = _until_risen(factory, SealFloor(), clock, above=0)
    with _committing_late(factory) as (late, slow):
        newer = _commit(factory, 2)
        assert newer[0] > slow
        for _ in range(4):  # the newer events are sealed; the floor must stop below the slow one
            clock.now += CANDIDATE_AGE + 1
            _, floor = _pass(factory, floor, clock)
            assert floor.pk <= slow
        assert [_times_sealed(factory, pk) for pk in newer] == [1, 1]
        late.commit()
    floor = _until_risen(factory, floor, clock, above=newer[-1])
    assert _times_sealed(factory, slow) == 1
    assert _unsealed(factory) == 0


def test_a_rolled_back_event_does_not_hold_the_floor(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite reuses a rolled-back rowid: no gap is left")
    clock = Clock()
    floor = _until_risen(factory, SealFloor(), clock, above=0)
    with factory() as failed:
        failed.begin()
        gone = add(failed, record(detail="rolled back"))[0].pk
        failed.rollback()
    newer = _commit(factory, 1)
    floor = _until_risen(factory, floor, clock, above=newer[0])
    assert floor.pk > gone


def test_the_sweep_seals_an_event_below_the_floor(factory: sessionmaker[Session]) -> None:
    clock = Clock()
    floor = _until_risen(factory, SealFloor(), clock, above=0)
    (straggler,) = _commit(factory, 1)
    # A floor that is wrong about it (the case the candidate's wait cannot rule out).
    floor = SealFloor(pk=straggler + 1, swept_at=clock.now)
    clock.now += 1
    assert _pass(factory, floor, clock)[0] is None  # passes from the floor do not see it
    assert _times_sealed(factory, straggler) == 0
    clock.now += 10
    number, floor = _pass(factory, floor, clock, sweep_interval=10)
    assert number is not None
    assert floor.swept_at == clock.now
    assert _times_sealed(factory, straggler) == 1


def test_the_floor_is_kept_only_once_its_block_has_committed(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = sealer.Sealer()
    pks = _commit(factory, 2)
    real = repository.add_block

    def fails_after_writing(session: Session, **kwargs: object) -> None:
        real(session, **kwargs)  # type: ignore[arg-type]
        raise RuntimeError("the connection dropped before the commit")

    monkeypatch.setattr(repository, "add_block", fails_after_writing)
    with pytest.raises(RuntimeError):
        sealer.seal_all(factory, block_size=10000, sealer=state)
    assert state.floor == SealFloor()  # nothing learnt from a block that never committed
    assert _unsealed(factory) == 2
    monkeypatch.setattr(repository, "add_block", real)
    assert sealer.seal_all(factory, block_size=10000, sealer=state)
    assert state.floor.candidate is not None
    assert state.floor.candidate[0] == pks[-1] + 1
    assert _unsealed(factory) == 0


def test_a_pass_resumed_above_the_floor_never_moves_it(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    """Only a pass that started at the floor has seen every event above it: an event that
    commits late, below where a backlog's pass resumed, must still be found."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: nothing commits beside the sealer")
    clock = Clock()
    floor = _until_risen(factory, SealFloor(), clock, above=0)
    with _committing_late(factory) as (late, slow):
        _commit(factory, 2)
        for _ in range(3):  # a backlog, one event a block, then the end of that lap
            clock.now += CANDIDATE_AGE + 1
            _, floor = _pass(factory, floor, clock, block_size=1)
        _commit(factory, 1)
        _, floor = _pass(factory, floor, clock, block_size=1)  # from the floor: full again
        assert floor.resume is not None
        late.commit()
    clock.now += CANDIDATE_AGE + 1
    _, floor = _pass(factory, floor, clock, block_size=1)  # the end of the resumed lap
    assert floor.pk <= slow
    for _ in range(3):
        _, floor = _pass(factory, floor, clock, block_size=1)
    assert _times_sealed(factory, slow) == 1


class Hooked:
    """A session factory that calls ``before(n)`` as the sealer begins its n-th transaction
    (from 1): what commits meanwhile, as other requests would."""

    def __init__(self, factory: sessionmaker[Session], before: Callable[[int], None]) -> None:
        self.factory = factory
        self.before = before
        self.begun = 0

    def begin(self) -> Any:
        self.begun += 1
        self.before(self.begun)
        return self.factory.begin()


def test_sealing_under_a_steady_stream_ends_with_the_first_block_that_is_not_full(
    factory: sessionmaker[Session],
) -> None:
    """A call seals what was waiting when it began and returns: waiting until nothing at all
    waits would, with reads arriving all the time, seal a few events a block without end."""
    state = sealer.Sealer()
    sealer.seal_all(factory, block_size=10000, sealer=state)
    arrived: list[int] = []

    def one_more(n: int) -> None:
        if n <= 50:
            arrived.extend(_commit(factory, 1))

    numbers = sealer.seal_all(cast(Any, Hooked(factory, one_more)), block_size=10000, sealer=state)
    assert len(numbers) == 1
    assert [_times_sealed(factory, pk) for pk in arrived] == [1]
    # The next call takes what arrived meanwhile, again as one block.
    _commit(factory, 3)
    assert len(sealer.seal_all(factory, block_size=10000, sealer=state)) == 1
    assert _unsealed(factory) == 0


def test_one_call_follows_a_backlog_with_a_pass_from_the_floor(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    """Full blocks go on; the lap that ends above the floor is followed by a pass from the
    floor, so an event that committed late, below where the lap resumed, is sealed by the
    same call."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: nothing commits beside the sealer")
    clock = Clock()
    state = sealer.Sealer(floor=_until_risen(factory, SealFloor(), clock, above=0))
    with _committing_late(factory) as (late, slow):
        pks = _commit(factory, 5)

        def commit_late(n: int) -> None:
            if n == 3:  # as the lap's last block (the fifth event) begins
                late.commit()

        numbers = sealer.seal_all(
            cast(Any, Hooked(factory, commit_late)), block_size=2, sealer=state
        )
    assert len(numbers) == 4  # 2 + 2 + 1, then the late one from the floor
    assert state.floor.resume is None
    assert [_times_sealed(factory, pk) for pk in [slow, *pks]] == [1] * 6
    assert _unsealed(factory) == 0

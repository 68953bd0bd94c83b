"""The batch linker's array work: the same pairs, the same levels and a sound screen as the
per-pair functions they stand in for."""

import itertools
from datetime import date

import numpy as np
import pytest

from fhir_gateway.identity import batch, blocking, columns
from fhir_gateway.identity.demographics import Demographics
from fhir_gateway.identity.nhs import NhsNumber
from fhir_gateway.identity.scoring import (
    COMPARISONS,
    DEFAULT_MODEL,
    NameCounts,
    cannot_link,
    decide,
)
from tests.fhir_gateway.identity.test_batch import (
    _assert_same_plan,
    _candidate_pairs,
    _generated,
)
from tests.fhir_gateway.identity.test_scoring import NUMBER_A, NUMBER_B


def _array_pairs(people: list[Demographics], filed: list[bool]) -> list[tuple[int, int]]:
    p, q = columns.candidate_pairs(
        [blocking.stored_keys(x) for x in people],
        [blocking.probe_only_keys(x) for x in people],
        filed,
    )
    return list(zip(p.tolist(), q.tolist(), strict=True))


@pytest.mark.parametrize("filed_every", [0, 3])
def test_candidate_pairs_are_the_pairs_record_by_record(filed_every: int) -> None:
    people = [r.features for r in _generated(3000, 5)]
    filed = [bool(filed_every) and i % filed_every == 0 for i in range(len(people))]
    pairs = _array_pairs(people, filed)
    assert pairs == _candidate_pairs(people, filed)
    assert len(pairs) > 5_000

    # the swapped birth date's pairs are among them, and large blocks are left out
    def swapped(i: int, j: int) -> bool:
        a, b = people[i].birth_date, people[j].birth_date
        return a is not None and b is not None and a != b and (a.month, a.day) == (b.day, b.month)

    assert any(swapped(i, j) for i, j in pairs)


def test_candidate_pairs_leave_out_large_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    people = [r.features for r in _generated(500, 5)]
    filed = [False] * len(people)
    every = _array_pairs(people, filed)
    monkeypatch.setattr(blocking, "MAX_BLOCK", 2)
    pairs = _array_pairs(people, filed)
    assert pairs == _candidate_pairs(people, filed)
    assert 0 < len(pairs) < len(every)


def _person(
    *,
    nhs: str | None = None,
    verified: bool = False,
    sex: str | None = None,
    born: date | None = None,
    postcodes: tuple[str, ...] = (),
    phones: tuple[str, ...] = (),
    family: tuple[str, ...] = ("okafor",),
) -> Demographics:
    number = NhsNumber(nhs, valid=True, verification="01" if verified else None) if nhs else None
    return Demographics(
        nhs=number,
        family=family[0] if family else None,
        family_names=frozenset(family),
        given="ada",
        given_names=frozenset({"ada"}),
        birth_date=born,
        sex=sex,
        postcodes=postcodes,
        phones=frozenset(phones),
    )


# Records that between them reach every level of every field the arrays compare, and the
# cases the arrays hand back uncompared.
ODD = [
    _person(),
    _person(nhs=NUMBER_A, verified=True, sex="female", born=date(1941, 3, 12)),
    _person(nhs=NUMBER_A, sex="female", born=date(1941, 12, 3)),  # day and month swapped
    _person(nhs=NUMBER_B, verified=True, sex="male", born=date(1941, 3, 21)),  # digits swapped
    _person(sex="other", born=date(1941, 3, 13)),  # one digit wrong
    _person(born=date(1941, 3, 30)),  # the same year and month
    _person(born=date(1914, 3, 12)),  # two digits swapped, not adjacent: different
    _person(born=date(1941, 4, 12)),
    _person(sex="male", born=date(1941, 3, 12)),  # the same date
    _person(born=date(999, 3, 12)),  # a year the digits cannot hold
    _person(born=date(1999, 3, 12)),
    _person(postcodes=("LS166AB",), phones=("07700900001",)),
    _person(postcodes=("LS166XY", "M11AE"), phones=("07700900002", "07700900001")),
    _person(postcodes=("M11AE",), phones=("07700900003",)),
    _person(postcodes=("BD11AA",)),
    _person(postcodes=("LS11AA", "LS22AA", "LS33AA", "LS44AA", "LS166AB")),  # more than held
    _person(phones=("07700900011", "07700900012", "07700900013", "07700900014", "07700900001")),
    _person(family=("okafour",)),  # similar
    _person(family=("clarke", "okafor")),  # a maiden name in common
    _person(family=("hughes",)),  # different
    _person(family=()),  # none
    _person(family=("a", "b", "c", "d", "okafor")),  # more than held
]


def _levels_agree(people: list[Demographics], pairs: list[tuple[int, int]]) -> int:
    """Assert the arrays' levels are the functions' for every pair compared exactly; the
    count of pairs that were."""
    p = np.asarray([i for i, _ in pairs], np.int64)
    q = np.asarray([j for _, j in pairs], np.int64)
    c = columns.columns(people)
    found = columns.levels(c, p, q)
    family = columns.family_levels(c, p, q)
    exact = 0
    for n, (i, j) in enumerate(pairs):
        if not found.exact[n]:
            continue
        exact += 1
        for name in columns.FIELDS:
            code = int(family[n] if name == "family_name" else getattr(found, name)[n])
            level = None if code < 0 else columns.LEVELS[name][code]
            assert level == COMPARISONS[name](people[i], people[j]), (name, people[i], people[j])
    return exact


def test_levels_are_the_comparison_functions_levels_for_odd_records() -> None:
    pairs = list(itertools.permutations(range(len(ODD)), 2))
    exact = _levels_agree(ODD, pairs)
    assert 0 < exact < len(pairs)  # the year 999 and the long lists are handed back
    p = np.asarray([i for i, _ in pairs], np.int64)
    q = np.asarray([j for _, j in pairs], np.int64)
    c = columns.columns(ODD)
    found = columns.levels(c, p, q)
    family = columns.family_levels(c, p, q)
    for name, labels in columns.LEVELS.items():
        codes = family if name == "family_name" else getattr(found, name)
        reached = {
            labels[n] for n, e in zip(codes.tolist(), found.exact, strict=True) if n >= 0 and e
        }
        assert reached == set(labels), name


def test_levels_are_the_comparison_functions_levels_for_a_population() -> None:
    people = [r.features for r in _generated(2000, 9)]
    pairs = _array_pairs(people, [False] * len(people))
    assert _levels_agree(people, pairs) == len(pairs)


def test_a_pair_the_arrays_screen_out_is_one_decide_calls_no_link() -> None:
    records = _generated(3000, 11)
    people = [r.features for r in records]
    names = NameCounts.of(people)
    p, q = columns.candidate_pairs(
        [blocking.stored_keys(x) for x in people],
        [blocking.probe_only_keys(x) for x in people],
        [False] * len(people),
    )
    kept = columns.screen(columns.columns(people), p, q, DEFAULT_MODEL, names)
    survivors = set(zip(kept.p.tolist(), kept.q.tolist(), strict=True))
    dropped = no_links = 0
    for i, j in zip(p.tolist(), q.tolist(), strict=True):
        decision = decide(people[i], people[j], DEFAULT_MODEL, names).decision
        no_links += decision == "no-link"
        if (i, j) not in survivors:
            dropped += 1
            assert decision == "no-link", (records[i].patient_id, records[j].patient_id)
    assert dropped > 0.5 * no_links
    # What survives goes on from the names with the weight so far: the same answer as
    # screening the pair from the start.
    for i, j, done, weight in zip(
        kept.p.tolist(), kept.q.tolist(), kept.compared.tolist(), kept.weight.tolist(), strict=True
    ):
        a, b = people[i], people[j]
        assert cannot_link(a, b, DEFAULT_MODEL, names, compared=(done, weight)) == cannot_link(
            a, b, DEFAULT_MODEL, names
        )


def test_the_arrays_never_screen_out_the_same_verified_nhs_number() -> None:
    people = [
        _person(nhs=NUMBER_A, verified=True, sex="female", born=date(1941, 3, 12)),
        _person(nhs=NUMBER_A, verified=True, sex="male", born=date(2026, 10, 30)),
    ]
    kept = columns.screen(columns.columns(people), np.array([1]), np.array([0]), DEFAULT_MODEL)
    assert kept.p.tolist() == [1]
    assert decide(people[1], people[0]).decision == "review"


def test_screening_nothing_gives_the_same_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan with the arrays' screen and the names' screen equals deciding every pair."""
    records = _generated(3000, 7)
    screened = batch.plan_links(records, workers=1)

    def keep_all(
        c: columns.Columns, p: columns.Ints, q: columns.Ints, *args: object
    ) -> columns.Survivors:
        return columns.Survivors(p, q, np.zeros(len(p), np.int32), np.zeros(len(p)))

    monkeypatch.setattr(columns, "screen", keep_all)
    monkeypatch.setattr(batch, "cannot_link", lambda *args, **kwargs: False)
    _assert_same_plan(screened, batch.plan_links(records, workers=1), records)


def test_pairs_made_a_range_of_records_at_a_time_are_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = _generated(3000, 7)
    people = [r.features for r in records]
    filed = [i % 4 == 0 for i in range(len(people))]
    blocks = columns.Blocks(
        [blocking.stored_keys(x) for x in people],
        [blocking.probe_only_keys(x) for x in people],
        filed,
    )
    whole = blocks.pairs(0, len(people))
    parts = [blocks.pairs(low, low + 700) for low in range(0, len(people), 700)]
    assert np.concatenate([p for p, _ in parts]).tolist() == whole[0].tolist()
    assert np.concatenate([q for _, q in parts]).tolist() == whole[1].tolist()
    assert len(whole[0]) > 1000
    # and the linker's plan, its records' pairs made 500 records at a time
    at_once = batch.plan_links(records, workers=1)
    monkeypatch.setattr(batch, "PAIRS_AT_ONCE", 500)
    _assert_same_plan(at_once, batch.plan_links(records, workers=1), records)

"""The identity population is frozen per version: what a version generates never changes."""

import hashlib
import json

import pytest

from benchmarks.identity_population import population


def _digest(people: int, seed: int, **kwargs: object) -> str:
    """The digest of the population as first frozen, when a record without an NHS number
    carried an empty ``identifier`` array; FHIR JSON has no empty arrays, so such a record now
    leaves the element out, and it is put back here: the people and every value are the same."""
    digest = hashlib.sha256()
    for key, patient in population(people, seed, **kwargs):  # type: ignore[arg-type]
        as_frozen = {"identifier": [], **patient}
        digest.update(json.dumps([key, as_frozen], sort_keys=True).encode())
    return digest.hexdigest()


@pytest.mark.parametrize(
    ("people", "seed", "expected"),
    [
        (300, 1, "a0424d6b75efabec7806e7674b6e8701740b5a8d180792016f3fe8fb621fe235"),
        (2000, 7, "ce4001f81b432711ee034589ed81e5fd08057ed17c5b42593e01a5d43f4cf731"),
    ],
)
def test_version_2_is_frozen(people: int, seed: int, expected: str) -> None:
    assert _digest(people, seed) == expected


def test_version_3_is_frozen() -> None:
    assert (
        _digest(300, 1, version=3)
        == "6ca6b44eeec4513262535926434b8b45b0cea0a5332f4bffe0572d6dc39bd85d"
    )


def test_version_3_numbers_are_test_numbers_and_some_people_have_none() -> None:
    from nhs_number.validate import is_valid

    numbers: dict[str, set[str]] = {}
    phones: dict[str, str] = {}
    people: set[str] = set()
    for key, patient in population(20_000, 5, version=3):
        people.add(key)
        for identifier in patient.get("identifier", ()):
            numbers.setdefault(key, set()).add(identifier["value"])
        for telecom in patient.get("telecom", ()):
            phones[key] = telecom["value"]
    everyone = {n for values in numbers.values() for n in values}
    assert all(n.startswith("999") for n in everyone)
    # 2 % of numbers are mistyped on purpose; the rest are valid
    assert sum(is_valid(n) for n in everyone) / len(everyone) > 0.95
    without = 1 - len(numbers) / len(people)
    assert 0.14 < without < 0.20  # 15 % never numbered, plus a few whose records lack it
    assert all(p.startswith("01632 ") for p in phones.values())
    households = len(set(phones.values()))
    assert households > 0.5 * len(phones)


def test_version_3_refuses_more_people_than_the_test_range_can_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from benchmarks import identity_population

    monkeypatch.setattr(identity_population, "VALID_TEST_NUMBERS", 1000)
    with pytest.raises(ValueError, match="999 test range"):
        list(population(2000, 1, version=3))


def test_unknown_version() -> None:
    with pytest.raises(ValueError, match="version 9"):
        list(population(10, 1, version=9))

"""The identity population is frozen per version: what a version generates never changes."""

import hashlib
import json

import pytest

from benchmarks.identity_population import population


def _digest(people: int, seed: int, **kwargs: object) -> str:
    digest = hashlib.sha256()
    for key, patient in population(people, seed, **kwargs):  # type: ignore[arg-type]
        digest.update(json.dumps([key, patient], sort_keys=True).encode())
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

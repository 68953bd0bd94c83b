"""Blocking keys: a true match shares a key despite the errors feeds carry; strangers don't."""

import pytest

from fhir_gateway.identity import blocking
from fhir_gateway.identity.demographics import Demographics
from tests.fhir_gateway.identity.test_scoring import NUMBER_A, d


def shares_a_key(new: Demographics, existing: Demographics) -> bool:
    return bool(blocking.probe_keys(new) & blocking.stored_keys(existing))


@pytest.mark.parametrize(
    "changes",
    [
        {"family": "Okafour"},  # misspelt family name
        {"family": "Clarke", "maiden": "Okafor", "postcode": "M1 1AE"},  # married and moved
        {"given": "Ada", "postcode": "M1 1AE"},  # short name and moved
        {"birth": "1941-12-03"},  # day and month swapped
        {"birth": "1941-03-21", "family": "Clarke"},  # wrong day and a new family name
        {"birth": "1951-08-30"},  # badly wrong birth date, same address
    ],
)
def test_a_true_match_with_one_kind_of_error_shares_a_key(changes: dict[str, str]) -> None:
    assert shares_a_key(d(**changes), d())


def test_the_nhs_number_alone_is_enough() -> None:
    new = d(nhs_number=NUMBER_A, family="Clarke", birth="1950-01-01", postcode="M1 1AE")
    assert shares_a_key(new, d(nhs_number=NUMBER_A))


def test_strangers_share_no_key() -> None:
    stranger = d(family="Hughes", given="William", birth="1950-01-01", postcode="M1 1AE")
    assert not shares_a_key(stranger, d())


def test_the_swapped_birth_date_is_a_probe_not_a_stored_key() -> None:
    person = d(birth="1941-03-12")
    assert "dob:1941-12-03" in blocking.probe_keys(person)
    assert "dob:1941-12-03" not in blocking.stored_keys(person)


def test_a_common_family_name_has_finer_keys() -> None:
    keys = blocking.stored_keys(d())
    assert {k.split(":")[0] for k in keys} >= {"fy", "fm", "fg"}
    # a wrong day and a move: still the same family, year and month, and the same first name
    moved = d(birth="1941-03-21", postcode="M1 1AE")
    shared = blocking.probe_keys(moved) & keys
    assert {k.split(":")[0] for k in shared} == {"fy", "fm", "fg"}


def test_large_blocks_are_not_compared_unless_an_nhs_numbers() -> None:
    assert blocking.usable("fy:SM0:1970", blocking.MAX_BLOCK)
    assert not blocking.usable("fy:SM0:1970", blocking.MAX_BLOCK + 1)
    assert blocking.usable("nhs:9991000003", 10 * blocking.MAX_BLOCK)

"""Identity's pure rules on the cases that make record linkage hard.

All people here are synthetic; NHS numbers are valid numbers from the 999 test range.
"""

from typing import Any

import pytest

from fhir_gateway.identity import demographics, nhs, scoring
from fhir_gateway.identity.demographics import Demographics

NUMBER_A = "9991000003"
NUMBER_B = "9991000011"


def patient(
    *,
    family: str = "Okafor",
    given: str = "Adaeze",
    birth: str = "1941-03-12",
    gender: str = "female",
    postcode: str = "LS16 6AB",
    nhs_number: str | None = None,
    verified: bool = False,
    maiden: str | None = None,
    phone: str | None = None,
) -> dict[str, Any]:
    identifiers: list[dict[str, Any]] = []
    if nhs_number is not None:
        identifier: dict[str, Any] = {"system": nhs.NHS_NUMBER_SYSTEM, "value": nhs_number}
        if verified:
            identifier["extension"] = [
                {
                    "url": nhs.VERIFICATION_EXTENSION,
                    "valueCodeableConcept": {
                        "coding": [{"system": nhs.VERIFICATION_SYSTEM, "code": "01"}]
                    },
                }
            ]
        identifiers.append(identifier)
    names: list[dict[str, Any]] = [{"use": "official", "family": family, "given": [given]}]
    if maiden:
        names.append({"use": "maiden", "family": maiden, "given": [given]})
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "name": names,
        "gender": gender,
        "birthDate": birth,
        "address": [{"use": "home", "postalCode": postcode}],
    }
    if identifiers:
        resource["identifier"] = identifiers
    if phone:
        resource["telecom"] = [{"system": "phone", "value": phone}]
    return resource


def d(**kwargs: Any) -> Demographics:
    return demographics.from_patient(patient(**kwargs))


def levels(match: scoring.Match) -> dict[str, str]:
    return {e.field: e.level for e in match.evidence}


# -- NHS numbers -----------------------------------------------------------------------


def test_nhs_number_is_normalised_checked_and_its_verification_read() -> None:
    numbers = nhs.nhs_numbers(patient(nhs_number="999 100 0003", verified=True))
    assert numbers == [nhs.NhsNumber("9991000003", valid=True, verification="01")]
    assert numbers[0].verified


def test_a_wrong_check_digit_is_not_an_identity() -> None:
    wrong = NUMBER_A[:-1] + str((int(NUMBER_A[-1]) + 1) % 10)
    assert not nhs.is_valid(wrong)
    assert nhs.best_nhs_number(patient(nhs_number=wrong, verified=True)) is None
    assert d(nhs_number=wrong).nhs is None


def test_unverified_valid_number_is_used_but_not_verified() -> None:
    number = nhs.best_nhs_number(patient(nhs_number=NUMBER_A))
    assert number is not None
    assert number.valid
    assert not number.verified


# -- normalisation ---------------------------------------------------------------------


def test_names_are_folded_and_hyphenated_parts_kept() -> None:
    person = d(family="Smith-Jones", given="Zoë")
    assert person.family == "smithjones"
    assert person.family_names == {"smithjones", "smith", "jones"}
    assert person.given == "zoe"


def test_placeholder_names_are_ignored() -> None:
    person = d(family="Okafor", given="Baby")
    assert person.given is None


def test_postcodes_and_phones_are_normalised() -> None:
    person = d(postcode="ls166ab", phone="+44 113 496 0000")
    assert person.postcodes == ("LS166AB",)
    assert person.phones == {"01134960000"}
    assert d(postcode="not a postcode").postcodes == ()


# -- the NHS number rules --------------------------------------------------------------


def test_same_verified_nhs_number_links_with_certainty() -> None:
    match = scoring.decide(
        d(nhs_number=NUMBER_A, verified=True),
        d(nhs_number=NUMBER_A, verified=True, given="Ada", postcode="M1 1AE"),
    )
    assert match.decision == "link"
    assert match.assurance == "level4"
    assert match.grade == "certain"


def test_baby_carrying_a_parents_number_goes_to_review() -> None:
    parent = d(nhs_number=NUMBER_A, verified=True)
    baby = d(nhs_number=NUMBER_A, verified=True, given="Chidi", birth="2026-10-30")
    match = scoring.decide(parent, baby)
    assert match.decision == "review"
    assert "birth_date" in match.reasons[0]


def test_same_verified_number_with_conflicting_sex_goes_to_review() -> None:
    match = scoring.decide(
        d(nhs_number=NUMBER_A, verified=True), d(nhs_number=NUMBER_A, verified=True, gender="male")
    )
    assert match.decision == "review"
    assert "sex" in match.reasons[0]


def test_two_different_verified_numbers_never_link_automatically() -> None:
    # Identical demographics (a re-issued number, for example after adoption).
    match = scoring.decide(
        d(nhs_number=NUMBER_A, verified=True, phone="01134960000"),
        d(nhs_number=NUMBER_B, verified=True, phone="01134960000"),
    )
    assert match.decision == "review"
    assert levels(match)["nhs_number"] == "different"
    assert any("different verified NHS numbers" in r for r in match.reasons)


def test_different_unverified_numbers_weigh_against_a_match() -> None:
    same = scoring.score(d(), d())[0]
    different = scoring.score(d(nhs_number=NUMBER_A), d(nhs_number=NUMBER_B))[0]
    assert different < same - 5


# -- demographics ----------------------------------------------------------------------


def test_identical_demographics_without_nhs_numbers_link_at_level2() -> None:
    match = scoring.decide(d(), d())
    assert match.decision == "link"
    assert match.assurance == "level2"
    assert match.grade == "probable"


def test_nickname_and_a_move_still_link() -> None:
    gp = d(given="William", gender="male", family="Hughes", postcode="LS16 6AB")
    hospital = d(given="Bill", gender="male", family="Hughes", postcode="BD7 1DP")
    match = scoring.decide(gp, hospital)
    assert levels(match)["given_name"] == "nickname"
    assert levels(match)["postcode"] == "different"
    assert match.decision == "link"


def test_married_name_matches_the_maiden_name() -> None:
    gp = d(family="Clarke", maiden="Okafor")
    council = d(family="Okafor")
    match = scoring.decide(gp, council)
    assert levels(match)["family_name"] == "other_name"
    assert match.decision == "link"


def test_hyphenated_name_matches_its_part() -> None:
    match = scoring.decide(d(family="Okafor-Clarke"), d(family="Okafor"))
    assert levels(match)["family_name"] == "other_name"
    assert match.decision == "link"


@pytest.mark.parametrize(
    ("recorded", "level"),
    [
        ("1941-12-03", "typo"),  # day and month swapped
        ("1914-03-12", "typo"),  # two adjacent digits swapped
        ("1941-03-13", "typo"),  # one digit wrong
        ("1941-03-28", "year_month"),
        ("1952-07-01", "different"),
    ],
)
def test_birth_date_levels(recorded: str, level: str) -> None:
    assert scoring.compare_birth_date(d(), d(birth=recorded)) == level


def test_transposed_birth_date_with_everything_else_agreeing_links() -> None:
    assert scoring.decide(d(), d(birth="1941-12-03")).decision == "link"


def test_twins_never_link_automatically() -> None:
    first = d(given="Adaeze", phone="01134960000")
    second = d(given="Chioma", phone="01134960000")
    match = scoring.decide(first, second)
    assert match.decision == "no-link"  # two people: not even a review
    assert match.reasons == ("twins: one birth date and family, different first names",)


def test_twins_whose_names_share_an_initial_are_reviewed() -> None:
    match = scoring.decide(d(given="Amelia", phone="01134960000"), d(given="Ava"))
    assert match.decision == "review"


def test_twins_whose_names_share_an_initial_are_reviewed_after_one_has_married() -> None:
    """A family name that no longer agrees makes two records less alike, never more: twins
    sharing an initial, a birth date, a home and a phone, one under a married name."""
    first = d(given="Sophia", family="Kait", phone="01134960000")
    second = d(given="Susan", family="Nird", phone="01134960000")
    match = scoring.decide(first, second)
    assert match.weight >= scoring.DEFAULT_MODEL.link_weight  # the score alone would link
    assert match.decision == "review"


def test_a_typing_error_in_a_short_first_name_is_similar() -> None:
    assert scoring.compare_given(d(given="Leo"), d(given="Lo")) == "similar"
    assert scoring.compare_given(d(given="Mia"), d(given="Mai")) == "similar"
    assert scoring.compare_given(d(given="Al"), d(given="Ed")) == "different"
    assert scoring.decide(d(given="Leo"), d(given="Lo")).decision == "link"


def test_twins_with_different_verified_numbers_do_not_link() -> None:
    first = d(given="Adaeze", nhs_number=NUMBER_A, verified=True)
    second = d(given="Chioma", nhs_number=NUMBER_B, verified=True)
    assert scoring.decide(first, second).decision == "no-link"


def test_strangers_do_not_link() -> None:
    match = scoring.decide(
        d(),
        d(family="Hughes", given="William", gender="male", birth="1950-01-01", postcode="M1 1AE"),
    )
    assert match.decision == "no-link"
    assert match.grade == "certainly-not"
    assert match.probability < 0.001


def test_missing_values_contribute_nothing() -> None:
    bare = Demographics()
    weight, evidence = scoring.score(bare, d())
    assert evidence == ()
    assert weight == pytest.approx(scoring.DEFAULT_MODEL.prior_weight)


def test_evidence_explains_every_compared_field() -> None:
    match = scoring.decide(d(phone="01134960000"), d(phone="01134960000"))
    assert {e.field for e in match.evidence} == {
        "family_name",
        "given_name",
        "birth_date",
        "sex",
        "postcode",
        "phone",
    }
    total = scoring.DEFAULT_MODEL.prior_weight + sum(e.weight for e in match.evidence)
    assert match.weight == pytest.approx(total)


def test_the_same_unverified_number_on_someone_born_years_apart_is_reviewed() -> None:
    parent = d(nhs_number=NUMBER_A)
    baby = d(nhs_number=NUMBER_A, given="Chidi", birth="2026-10-30")
    match = scoring.decide(parent, baby)
    assert match.decision == "review"
    assert any("birth dates differ" in reason for reason in match.reasons)


def test_a_parent_and_child_of_the_same_name_at_one_address_are_not_linked() -> None:
    parent = d(given="Olivia", family="Smith", birth="1951-11-16", phone="01134960000")
    child = d(given="Olivia", family="Smith", birth="1985-06-26", phone="01134960000")
    match = scoring.decide(parent, child)
    assert match.decision == "no-link"  # two people: not even a review
    assert match.reasons == ("birth dates differ beyond a typing error and no NHS number agrees",)
    # with one verified number on both, a human looks (a number on the wrong record?)
    parent = d(given="Olivia", birth="1951-11-16", nhs_number=NUMBER_A, verified=True)
    child = d(given="Olivia", birth="1985-06-26", nhs_number=NUMBER_A, verified=True)
    assert scoring.decide(parent, child).decision == "review"


@pytest.mark.parametrize(
    ("a", "b", "related"),
    [
        ("William", "Bill", True),
        ("Bill", "Will", True),
        ("Margaret", "Peggy", True),
        ("Robert", "William", False),  # both give "Bill", but they are two names
        ("Olivia", "Amelia", False),
    ],
)
def test_nicknames(a: str, b: str, related: bool) -> None:
    level = scoring.compare_given(d(given=a), d(given=b))
    assert (level == "nickname") is related

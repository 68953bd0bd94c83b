"""The synthetic locality: deterministic, valid FHIR, realistic overlap, test-range NHS numbers."""

import itertools
from collections import Counter

import nhs_number

from carejoin.synthetic import (
    COUNCIL,
    HOSPITAL,
    NHS_NUMBER_SYSTEM,
    generate_locality,
    mistype,
    nhs_number_for,
    person_bundles,
)
from fhir_gateway.search.registry import SUPPORTED_TYPES
from fhir_gateway.validation import validate_resource


def _resources(people: int, **kwargs: int) -> list[dict]:
    return [
        entry["resource"]
        for _source, bundle in person_bundles(people=people, **kwargs)
        for entry in bundle["entry"]
    ]


def test_deterministic_and_sliceable() -> None:
    whole = _resources(60)
    assert whole == _resources(60)
    assert whole == _resources(60, start=0, stop=25) + _resources(60, start=25, stop=60)
    assert whole != _resources(60, seed=1)


def test_every_resource_is_valid_and_stored_here() -> None:
    for resource in itertools.chain(
        _resources(150),
        (e["resource"] for e in generate_locality(people=150).organizations_bundle["entry"]),
    ):
        assert resource["resourceType"] in SUPPORTED_TYPES
        validate_resource(resource)
        assert resource["meta"]["source"].startswith("urn:carejoin:source:Z9")


def test_about_thirty_resources_a_person_across_three_kinds_of_source() -> None:
    sources = Counter(source for source, _ in person_bundles(people=1000))
    resources = _resources(1000)
    assert 25 <= len(resources) / 1000 <= 35
    assert sources[HOSPITAL.ods] > 150
    assert sources[COUNCIL.ods] > 30
    kinds = Counter(r["resourceType"] for r in resources)
    assert {"Patient", "Condition", "MedicationStatement", "AllergyIntolerance", "Observation",
            "Encounter", "EpisodeOfCare", "ServiceRequest"} <= set(kinds)  # fmt: skip
    icd10 = [r for r in resources if r["resourceType"] == "Condition"
             and r["code"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10"]  # fmt: skip
    assert icd10


def test_nhs_numbers_are_valid_test_numbers_unique_and_sometimes_missing_or_wrong() -> None:
    numbers = [nhs_number_for(i, 2026) for i in range(20_000)]
    assert len(set(numbers)) == len(numbers)
    assert all(n.startswith("999") and nhs_number.is_valid(n) for n in numbers[:2000])
    patients = [r for r in _resources(2000) if r["resourceType"] == "Patient"]
    by_person: dict[str, list[str | None]] = {}
    for p in patients:
        nhs = next((i["value"] for i in p["identifier"] if i["system"] == NHS_NUMBER_SYSTEM), None)
        by_person.setdefault(p["id"].split("-", 1)[1], []).append(nhs)
    missing = sum(None in values for values in by_person.values())
    disagreeing = sum(len({v for v in values if v}) > 1 for values in by_person.values())
    assert missing > 10
    assert disagreeing > 3


def test_mistype_changes_the_number() -> None:
    import random

    rng = random.Random(1)
    for i in range(200):
        number = nhs_number_for(i, 2026)
        typo = mistype(number, rng)
        assert typo != number
        assert typo.startswith("999")
        assert len(typo) == 10


def test_hospital_admissions_carry_their_admission_method() -> None:
    from carejoin.synthetic import person_bundles

    admissions = [
        entry["resource"]
        for _source, bundle in person_bundles(people=300, start=0, stop=300)
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == "Encounter"
        and entry["resource"]["class"]["code"] == "IMP"
    ]
    assert admissions
    priorities = {a["priority"]["coding"][0]["code"] for a in admissions}
    assert priorities == {"EM", "EL"}
    for admission in admissions:
        (extension,) = admission["extension"]
        code = extension["valueCodeableConcept"]["coding"][0]["code"]
        assert (code.startswith("2")) == (admission["priority"]["coding"][0]["code"] == "EM")

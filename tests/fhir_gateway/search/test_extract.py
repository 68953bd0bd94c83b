"""What a resource's JSON yields for the search index."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from fhir_gateway.search.extract import compile_path, extract, parse_reference
from fhir_gateway.search.model import (
    DateEntry,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
)
from fhir_gateway.validation import parse_json


def _patient() -> dict:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {
            "source": "urn:carejoin:source:Z90001",
            "tag": [{"system": "http://example.org/tags", "code": "demo"}],
            "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"],
        },
        "identifier": [
            {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990022283"},
            {"value": "LOCAL1"},
        ],
        "active": True,
        "name": [{"family": "Brontë", "given": ["Zoë", "Ann"], "prefix": ["Mrs"]}],
        "telecom": [
            {"system": "phone", "value": "07700 900123"},
            {"system": "email", "value": "zoe@example.org"},
        ],
        "gender": "female",
        "birthDate": "1941-03",
        "deceasedDateTime": "2026-01-02T10:00:00Z",
        "address": [{"line": ["1 Mill Road"], "city": "Millbrook", "postalCode": "ZZ1 1AA"}],
        "generalPractitioner": [{"reference": "Practitioner/gp-1"}],
        "managingOrganization": {"reference": "https://ods.example/fhir/Organization/Z90001"},
    }


def test_patient_tokens_cover_identifiers_codes_booleans_and_contact_points() -> None:
    tokens = set(extract(_patient()).tokens)
    assert TokenEntry("identifier", "https://fhir.nhs.uk/Id/nhs-number", "9990022283") in tokens
    assert TokenEntry("identifier", None, "LOCAL1") in tokens
    assert TokenEntry("active", None, "true") in tokens
    assert TokenEntry("gender", None, "female") in tokens
    assert TokenEntry("deceased", None, "true") in tokens
    assert TokenEntry("_tag", "http://example.org/tags", "demo") in tokens
    assert TokenEntry("email", None, "zoe@example.org") in tokens
    assert TokenEntry("phone", None, "07700 900123") in tokens
    assert TokenEntry("email", None, "07700 900123") not in tokens  # where(system='email')
    assert TokenEntry("telecom", None, "07700 900123") in tokens
    uris = {t for t in tokens if t.param in ("_profile", "_source")}
    assert uris == {
        TokenEntry("_profile", None, "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"),
        TokenEntry("_source", None, "urn:carejoin:source:Z90001"),
    }


def test_patient_strings_are_normalised_and_keep_the_exact_text() -> None:
    strings = set(extract(_patient()).strings)
    assert StringEntry("family", "bronte", "Brontë") in strings
    assert StringEntry("given", "zoe", "Zoë") in strings
    assert {s.value for s in strings if s.param == "name"} == {"bronte", "zoe", "ann", "mrs"}
    assert {s.value for s in strings if s.param == "address"} == {
        "1 mill road",
        "millbrook",
        "zz1 1aa",
    }
    assert StringEntry("address-postalcode", "zz1 1aa", "ZZ1 1AA") in strings


def test_dates_become_ranges_at_their_precision() -> None:
    dates = {d.param: d for d in extract(_patient()).dates}
    assert dates["birthdate"] == DateEntry(
        "birthdate",
        datetime(1941, 3, 1, tzinfo=UTC),
        datetime(1941, 3, 31, 23, 59, 59, 999999, tzinfo=UTC),
    )
    assert dates["death-date"].low == datetime(2026, 1, 2, 10, tzinfo=UTC)


def test_references_relative_absolute_and_typed() -> None:
    refs = set(extract(_patient()).references)
    assert ReferenceEntry("general-practitioner", "Practitioner", "gp-1", None) in refs
    assert (
        ReferenceEntry(
            "organization", "Organization", None, "https://ods.example/fhir/Organization/Z90001"
        )
        in refs
    )


def test_observation_choice_elements_go_to_the_matching_parameter_types() -> None:
    observation = parse_json(
        b"""{"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "271649006"},
                            {"system": "http://loinc.org", "code": "8480-6"}], "text": "SBP"},
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "Practitioner/gp-1"}],
        "effectivePeriod": {"start": "2026-01-01T09:00:00Z"},
        "valueQuantity": {"value": 138.50, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                          "code": "mm[Hg]"},
        "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                       "valueQuantity": {"value": 82, "system": "http://unitsofmeasure.org",
                                         "code": "mm[Hg]"}}]}"""
    )
    index = extract(observation)
    assert TokenEntry("code", "http://snomed.info/sct", "271649006") in index.tokens
    assert TokenEntry("component-code", "http://loinc.org", "8462-4") in index.tokens
    assert TokenEntry("component-code", "http://loinc.org", "8480-6") not in index.tokens
    # combo-code is code | component-code: no rows of its own (fhir_gateway.search.storage)
    assert not [t for t in index.tokens if t.param == "combo-code"]
    date = next(d for d in index.dates if d.param == "date")
    assert date.low == datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert date.high.year == 9999  # open-ended period
    quantity = next(q for q in index.quantities if q.param == "value-quantity")
    assert quantity == QuantityEntry(
        "value-quantity", Decimal("138.50"), "http://unitsofmeasure.org", "mm[Hg]", "mmHg"
    )
    assert {q.value for q in index.quantities if q.param == "component-value-quantity"} == {
        Decimal("82"),
    }
    assert not [q for q in index.quantities if q.param == "combo-value-quantity"]
    # value[x] is a Quantity here, so the token and string value parameters get nothing
    assert not [t for t in index.tokens if t.param == "value-concept"]
    assert not [s for s in index.strings if s.param == "value-string"]
    refs = set(index.references)
    assert ReferenceEntry("subject", "Patient", "p1", None) in refs
    assert not [r for r in refs if r.param == "patient"]  # subject's Patients
    assert ReferenceEntry("performer", "Practitioner", "gp-1", None) in refs


def test_type_restricted_reference_skips_other_targets() -> None:
    index = extract(
        {
            "resourceType": "AuditEvent",
            "agent": [{"who": {"reference": "Practitioner/d1"}, "requestor": True}],
            "entity": [{"what": {"reference": "Patient/p1"}}, {"what": {"reference": "Group/g"}}],
        }
    )
    patients = [r for r in index.references if r.param == "patient"]
    assert patients == [ReferenceEntry("patient", "Patient", "p1", None)]


def test_timing_events_and_bounds_are_dates() -> None:
    index = extract(
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/p1"},
            "medicationCodeableConcept": {
                "coding": [{"system": "https://dmd.nhs.uk", "code": "1"}]
            },
            "dosageInstruction": [
                {
                    "timing": {
                        "event": ["2026-02-01"],
                        "repeat": {"boundsPeriod": {"start": "2026-01-01", "end": "2026-03-01"}},
                    }
                }
            ],
        }
    )
    dates = sorted((d.low, d.high) for d in index.dates if d.param == "date")
    assert dates[0][0] == datetime(2026, 1, 1, tzinfo=UTC)
    assert dates[1][0] == datetime(2026, 2, 1, tzinfo=UTC)
    assert TokenEntry("code", "https://dmd.nhs.uk", "1") in index.tokens
    assert not [r for r in index.references if r.param == "medication"]


def test_duplicates_are_folded_and_long_values_cut_to_fit() -> None:
    long = "x" * 400
    index = extract(
        {
            "resourceType": "Patient",
            "identifier": [{"system": "s", "value": long}, {"system": "s", "value": long}],
            "name": [{"family": long}],
        }
    )
    assert index.tokens == [TokenEntry("identifier", "s", "x" * 255)]
    assert {len(s.value) for s in index.strings} == {255}


def test_canonical_reference_drops_version() -> None:
    index = extract(
        {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "questionnaire": "https://fhir.carejoin.example/Questionnaire/eq5d|2.0",
        }
    )
    assert index.references == [
        ReferenceEntry(
            "questionnaire", None, None, "https://fhir.carejoin.example/Questionnaire/eq5d"
        )
    ]


def test_unknown_type_and_odd_values_yield_nothing_rather_than_failing() -> None:
    assert extract({"resourceType": "Basic"}).tokens == []
    index = extract(
        {
            "resourceType": "Patient",
            "birthDate": "not a date",
            "identifier": [{"system": "s", "value": 12}],
            "generalPractitioner": [{"reference": "#contained"}, {"display": "Dr No"}],
        }
    )
    assert index.dates == []
    assert [t for t in index.tokens if t.param == "identifier"] == []
    assert index.references == []


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Patient/1", ("Patient", "1", None)),
        ("Patient/1/_history/3", ("Patient", "1", None)),
        ("urn:uuid:0f4e", (None, None, "urn:uuid:0f4e")),
        ("http://x/fhir/Patient/9", ("Patient", None, "http://x/fhir/Patient/9")),
        (
            "http://x/fhir/Patient/9/_history/2",
            ("Patient", None, "http://x/fhir/Patient/9/_history/2"),
        ),
    ],
)
def test_parse_reference(reference: str, expected: tuple) -> None:
    entry = parse_reference("subject", reference)
    assert (entry.target_type, entry.target_id, entry.url) == expected


def test_compile_path_rejects_nonsense() -> None:
    assert compile_path("telecom(system=email)").steps[0].where == ("system", "email")
    assert compile_path("value[x]").steps[0].choice
    with pytest.raises(ValueError, match="Bad search path"):
        compile_path("a..b")

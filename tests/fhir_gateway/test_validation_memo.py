"""A bulk load's element memo changes the cost of validation, never its answer: every
resource, valid or not, gets the same verdict and the same issues with and without it."""

import copy
from decimal import Decimal
from typing import Any

from carejoin.synthetic import person_bundles
from fhir_gateway.outcomes import Invalid
from fhir_gateway.validation import ElementMemo, parse_json, validate_resource
from tests.factories import fhir


def _verdict(resource: dict[str, Any], memo: ElementMemo | None) -> dict[str, Any] | None:
    try:
        validate_resource(resource, memo=memo)
    except Invalid as exc:
        return exc.to_outcome()
    return None


def _population() -> list[dict[str, Any]]:
    resources = [
        entry["resource"]
        for _source, bundle in person_bundles(people=12, start=0, stop=12)
        for entry in bundle["entry"]
    ]
    # The decimals of a real load (parse_json reads them as Decimal).
    return [parse_json(fhir_json(r)) for r in resources]


def fhir_json(resource: dict[str, Any]) -> str:
    import json

    return json.dumps(resource)


def _broken(valid: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Invalid resources built from valid ones: a bad element beside elements seen before,
    a bad item in a list of good ones, and resource-level faults around good elements."""
    observation = next(r for r in valid if r["resourceType"] == "Observation")
    encounter = next(r for r in valid if r["resourceType"] == "Encounter")
    patient = next(r for r in valid if r["resourceType"] == "Patient")
    cases: list[dict[str, Any]] = []

    def variant(base: dict[str, Any], **changes: Any) -> None:
        changed = copy.deepcopy(base)
        for key, value in changes.items():
            if value is None:
                changed.pop(key, None)
            else:
                changed[key] = value
        cases.append(changed)

    variant(observation, code={"coding": [{"system": 5, "code": "x"}]})
    variant(observation, code={})
    variant(observation, code=dict(observation["code"], bogus=1))
    variant(observation, subject="Patient/1")
    variant(observation, status=None)  # required, beside a subject and code seen before
    variant(observation, status="finished")  # not an Observation status
    variant(observation, effectivePeriod={"start": "2025-01-01"})  # two effective[x]
    variant(
        observation,
        category=[*observation.get("category", []), {"coding": [{"code": ["no"]}]}],
    )
    variant(observation, valueQuantity={"value": "heavy", "unit": "kg"})
    variant(observation, valueQuantity={"value": Decimal("72.50"), "unit": "kg"})
    # The same JSON is a valid Quantity and an invalid Identifier: known as one, not the other.
    variant(observation, valueQuantity={"value": 5})
    variant(patient, identifier=[{"value": 5}])
    variant(encounter, **{"class": {"system": "x", "code": 7}})
    variant(encounter, **{"class": None})
    variant(encounter, period={"start": "not a date"})
    variant(patient, name=[{"family": "Okafor", "given": "Adaeze"}])  # given is a list
    variant(patient, _birthDate={"extension": [{"url": "http://example.org/x"}]})
    variant(patient, _birthDate={"extension": [{"valueString": "no url"}]})
    variant(patient, contained=[fhir.patient(id="c1")])
    variant(patient, contained=[{"resourceType": "Patient", "id": "c2", "gender": "f"}])
    variant(patient, identifier=[*patient.get("identifier", []), {"system": {"no": 1}}])
    return cases


def test_the_memo_gives_every_verdict_and_issue_of_plain_validation() -> None:
    valid = _population()
    resources = valid + _broken(valid)
    expected = [_verdict(r, None) for r in resources]
    assert any(v is None for v in expected)
    assert sum(v is not None for v in expected) >= 12

    memo = ElementMemo()
    first = [_verdict(r, memo) for r in resources]
    learned = memo.hits
    again = [_verdict(r, memo) for r in resources]  # now nearly every element is known

    assert first == expected
    assert again == expected
    assert memo.hits > learned > 0


def test_an_invalid_element_is_never_remembered() -> None:
    bad_code = {"coding": [{"system": 5, "code": "x"}]}
    memo = ElementMemo()
    for _ in range(2):
        outcome = _verdict(
            fhir.observation(patient_id="p1", code="x", id="o1") | {"code": bad_code}, memo
        )
        assert outcome is not None
        assert any("Observation.code.coding[0].system" in i["expression"] for i in outcome["issue"])
    assert all(b'system":5' not in text for _model, text in memo.known)


def test_the_memo_is_bounded() -> None:
    memo = ElementMemo(limit=10)
    for i in range(40):
        validate_resource(
            fhir.observation(patient_id=f"p{i}", code=f"c{i}", value=i, id=f"o{i}"), memo=memo
        )
    assert 0 < len(memo.known) <= 10

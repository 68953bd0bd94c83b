"""The R4 rules fhir.resources' models do not check: required code bindings and reference
targets at every depth, and JSON's empty elements and nulls (fhir_gateway/r4rules.py)."""

import copy
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class

from fhir_gateway import r4rules
from fhir_gateway.outcomes import Invalid
from fhir_gateway.search.registry import SUPPORTED_TYPES
from fhir_gateway.validation import validate_resource
from tests.factories import fhir

CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def _paths(resource: dict[str, Any]) -> list[str]:
    return [path for path, _message, _code in r4rules.binding_problems(resource)]


def _medication_request(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationReference": {"reference": "#m"},
        **extra,
    }


def _encounter(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        **extra,
    }


# --- required code bindings ----------------------------------------------------------------


def test_codes_whose_list_the_models_give_only_in_part_are_checked_in_full() -> None:
    for status in ("registered", "corrected", "cancelled", "entered-in-error", "unknown"):
        assert _paths(fhir.observation(patient_id="p1", status=status)) == []
    assert _paths(fhir.observation(patient_id="p1", status="finished")) == ["Observation.status"]
    assert _paths(_encounter(status="entered-in-error")) == []
    assert _paths(_encounter(status="done")) == ["Encounter.status"]


def test_codes_inside_data_types_and_backbone_elements_are_checked() -> None:
    patient = fhir.patient()
    patient["telecom"] = [{"system": "phone", "value": "1"}, {"system": "pager2", "value": "2"}]
    patient["name"][0]["use"] = "nick"
    patient["identifier"] = [{"use": "official", "system": "https://x.example", "value": "1"}]
    problems = r4rules.binding_problems(patient)
    assert {p[0] for p in problems} == {"Patient.telecom[1].system", "Patient.name[0].use"}
    assert all(p[2] == "code-invalid" for p in problems)
    message = {p[0]: p[1] for p in problems}["Patient.telecom[1].system"]
    assert "Patient.telecom.system" in message
    assert "pager" in message

    encounter = _encounter(statusHistory=[{"status": "done", "period": {"start": "2024-01-01"}}])
    assert _paths(encounter) == ["Encounter.statusHistory[0].status"]
    observation = fhir.observation(patient_id="p1")
    observation["valueQuantity"]["comparator"] = "=="
    assert _paths(observation) == ["Observation.valueQuantity.comparator"]
    observation["valueQuantity"]["comparator"] = "<="
    assert _paths(observation) == []


def test_repeating_codes_and_nested_repeats_are_checked() -> None:
    questionnaire = {
        "resourceType": "Questionnaire",
        "status": "active",
        "item": [
            {
                "linkId": "1",
                "type": "group",
                "item": [{"linkId": "1.1", "type": "freetext"}],  # item-type has no freetext
            }
        ],
    }
    assert _paths(questionnaire) == ["Questionnaire.item[0].item[0].type"]
    service = {
        "resourceType": "HealthcareService",
        "availableTime": [{"daysOfWeek": ["mon", "funday"]}],
    }
    assert _paths(service) == ["HealthcareService.availableTime[0].daysOfWeek[1]"]


def test_codes_in_extensions_and_in_a_primitives_extensions_are_checked() -> None:
    patient = fhir.patient()
    patient["extension"] = [{"url": "https://x.example/a", "valueQuantity": {"comparator": "~"}}]
    patient["_gender"] = {
        "extension": [{"url": "https://x.example/b", "valueQuantity": {"comparator": "~"}}]
    }
    assert sorted(_paths(patient)) == [
        "Patient._gender.extension[0].valueQuantity.comparator",
        "Patient.extension[0].valueQuantity.comparator",
    ]


def test_contained_resources_are_checked_as_their_own_type() -> None:
    request = _medication_request(
        contained=[{"resourceType": "Medication", "id": "m", "status": "gone"}]
    )
    assert _paths(request) == ["MedicationRequest.contained[0].status"]
    request["contained"][0]["status"] = "active"
    assert _paths(request) == []


def test_a_required_codeable_concept_needs_a_coding_of_its_value_set() -> None:
    condition = fhir.condition(patient_id="p1")
    assert _paths(condition) == []
    # another system's coding beside it is allowed
    condition["clinicalStatus"]["coding"].append({"system": "https://x.example", "code": "z"})
    assert _paths(condition) == []
    condition["clinicalStatus"] = {"text": "active"}  # text alone is no code
    assert _paths(condition) == ["Condition.clinicalStatus"]
    condition["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": "cured"}]}
    assert _paths(condition) == ["Condition.clinicalStatus.coding[0].code"]


# --- reference targets -----------------------------------------------------------------------


def test_reference_targets_are_checked_inside_backbone_elements() -> None:
    encounter = _encounter(participant=[{"individual": {"reference": "Organization/o1"}}])
    problems = r4rules.binding_problems(encounter)
    assert [p[0] for p in problems] == ["Encounter.participant[0].individual.reference"]
    assert "Practitioner, PractitionerRole, RelatedPerson" in problems[0][1]
    encounter["participant"][0]["individual"] = {"reference": "Practitioner/d1"}
    assert _paths(encounter) == []


def test_observation_subject_has_r4s_list_not_r4bs() -> None:
    observation = fhir.observation(patient_id="p1")
    for target in ("Patient", "Group", "Device", "Location"):
        observation["subject"] = {"reference": f"{target}/x"}
        assert _paths(observation) == [], target
    for target in ("Organization", "Practitioner", "Medication"):  # R4B only
        observation["subject"] = {"reference": f"{target}/x"}
        assert _paths(observation) == ["Observation.subject.reference"], target


# --- JSON format -----------------------------------------------------------------------------


def test_empty_objects_empty_arrays_and_nulls_are_refused() -> None:
    observation = fhir.observation(patient_id="p1")
    observation["code"] = {}
    observation["category"] = []
    observation["issued"] = None
    observation["note"] = [{"text": "x"}, {}]
    problems = r4rules.binding_problems(observation)
    assert sorted(p[0] for p in problems) == [
        "Observation.category",
        "Observation.code",
        "Observation.issued",
        "Observation.note[1]",
    ]
    assert all(p[2] == "structure" for p in problems)


def test_a_null_standing_for_a_primitive_with_only_extensions_is_allowed() -> None:
    patient = fhir.patient()
    patient["name"][0]["given"] = ["Ann", None]
    extension = {"url": "https://x.example/initial", "valueString": "B"}
    patient["name"][0]["_given"] = [None, {"extension": [extension]}]
    assert _paths(patient) == []
    del patient["name"][0]["_given"]
    assert _paths(patient) == ["Patient.name[0].given[1]"]


def test_text_that_merely_mentions_null_is_fine() -> None:
    observation = fhir.observation(patient_id="p1")
    observation["note"] = [{"text": "result annulled: {} [] null"}]
    assert _paths(observation) == []


# --- the data file ---------------------------------------------------------------------------


def test_every_stored_type_is_described() -> None:
    assert set(r4rules.structure()) >= SUPPORTED_TYPES


def test_the_models_complete_enumerations_agree_with_the_data() -> None:
    """Where fhir.resources lists a required binding's codes in full, the data holds the same
    codes (the data's other lists come from R4's definitions)."""
    compared = 0
    for resource_type in sorted(SUPPORTED_TYPES):
        rules = r4rules.structure()[resource_type]
        model = get_fhir_model_class(resource_type)
        for name, field in model.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            values = extra.get("enum_values")
            if not isinstance(values, list) or "+" in values or "etc." in values:
                continue
            entry = rules[field.alias or name]
            assert entry[0] == "code", (resource_type, name)
            assert entry[1].codes == frozenset(values), (resource_type, name)
            compared += 1
    assert compared >= 30  # the top-level ones (36 when written)


def test_the_value_sets_hold_no_code_twice() -> None:
    document = json.loads(r4rules.STRUCTURE_FILE.read_text())
    for url, value_set in document["valueSets"].items():
        lists = [value_set.get("codes", []), *list(value_set.get("systems", {}).values())]
        for codes in lists:
            assert len(codes) == len(set(codes)), url


# --- through the API, on both databases --------------------------------------------------------


def test_a_bad_nested_code_is_a_400_and_nothing_is_stored(client: TestClient) -> None:
    before = client.get("/fhir/Encounter", params={"_summary": "count"}).json()["total"]
    encounter = _encounter(statusHistory=[{"status": "done", "period": {"start": "2024-01-01"}}])
    response = client.post("/fhir/Encounter", json=encounter)
    assert response.status_code == 400
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "code-invalid"
    assert body["issue"][0]["expression"] == ["Encounter.statusHistory[0].status"]
    after = client.get("/fhir/Encounter", params={"_summary": "count"}).json()["total"]
    assert after == before


def test_a_transaction_with_one_bad_entry_writes_nothing(client: TestClient) -> None:
    good = fhir.observation(patient_id="p1")
    bad = copy.deepcopy(good)
    bad["valueQuantity"]["comparator"] = "about"
    before = client.get("/fhir/Observation", params={"_summary": "count"}).json()["total"]
    response = client.post(
        "/fhir", json=fhir.transaction(fhir.post_entry(good), fhir.post_entry(bad))
    )
    assert response.status_code == 400
    assert "valueQuantity.comparator" in response.text
    after = client.get("/fhir/Observation", params={"_summary": "count"}).json()["total"]
    assert after == before


def test_model_problems_and_binding_problems_are_reported_together() -> None:
    observation = fhir.observation(patient_id="p1", status="finished")
    observation["valueQuantity"]["value"] = "heavy"
    with pytest.raises(Invalid) as caught:
        validate_resource(observation)
    paths = {issue.expression[0] for issue in caught.value.issues if issue.expression}
    assert "Observation.status" in paths
    assert any(path.startswith("Observation.valueQuantity") for path in paths)


def test_a_contained_resource_must_name_an_r4_type_and_contain_nothing() -> None:
    request = _medication_request()
    for contained in ({"id": "m"}, {"resourceType": "Nonsense", "id": "m"}, {"resourceType": 5}):
        with pytest.raises(Invalid) as caught:
            validate_resource({**request, "contained": [contained]})
        expressions = [issue.expression for issue in caught.value.issues]
        assert ("MedicationRequest.contained[0].resourceType",) in expressions
    nested = {
        "resourceType": "Medication",
        "id": "m",
        "contained": [{"resourceType": "Medication"}],
    }
    assert _paths({**request, "contained": [nested]}) == [
        "MedicationRequest.contained[0].contained"
    ]
    validate_resource({**request, "contained": [{"resourceType": "Medication", "id": "m"}]})


def test_a_contained_resource_of_no_known_type_is_a_400_not_a_crash(client: TestClient) -> None:
    request = _medication_request(contained=[{"resourceType": "Nonsense", "id": "m"}])
    response = client.post("/fhir/MedicationRequest", json=request)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == [
        "MedicationRequest.contained[0].resourceType"
    ]


def test_local_references_name_a_contained_resource_of_an_allowed_type() -> None:
    request = _medication_request(contained=[{"resourceType": "Medication", "id": "m"}])
    assert _paths(request) == []
    missing = {**request, "medicationReference": {"reference": "#other"}}
    assert _paths(missing) == [
        "MedicationRequest.medicationReference.reference",  # ref-1: no such contained id
        "MedicationRequest.contained[0]",  # dom-3: m is now referred to from nowhere
    ]
    wrong_type = {**request, "contained": [{"resourceType": "Organization", "id": "m"}]}
    problems = r4rules.binding_problems(wrong_type)
    assert [p[0] for p in problems] == ["MedicationRequest.medicationReference.reference"]
    assert "Organization" in problems[0][1]


def test_a_contained_resource_is_referred_to_or_refers_to_its_container() -> None:
    condition = fhir.condition(patient_id="p1")
    practitioner = {"resourceType": "Practitioner", "id": "d1"}
    condition["contained"] = [practitioner]
    assert _paths(condition) == ["Condition.contained[0]"]  # dom-3
    condition["recorder"] = {"reference": "#d1"}
    assert _paths(condition) == []
    provenance_like = {
        "resourceType": "Practitioner",
        "id": "d2",
        "extension": [{"url": "https://x.example/of", "valueReference": {"reference": "#"}}],
    }
    condition["contained"].append(provenance_like)  # refers to its container
    assert _paths(condition) == []
    condition["contained"].append({"resourceType": "Practitioner"})  # no id
    assert _paths(condition) == ["Condition.contained[2].id"]

"""The FHIR R4 / R4B differences that matter for stored resources (docs/r4-r4b.md)."""

from fastapi.testclient import TestClient

from fhir_gateway import r4compat, r4rules
from fhir_gateway.validation import validate_resource
from tests.factories import fhir


def _with_extension(value_key: str, value: object) -> dict:
    patient = fhir.patient()
    patient["extension"] = [{"url": "https://fhir.carejoin.example/ext/x", value_key: value}]
    return patient


def test_r4_value_meta_extension_is_accepted(client: TestClient) -> None:
    patient = _with_extension("valueMeta", {"versionId": "7"})
    response = client.post("/fhir/Patient", json=patient)
    assert response.status_code == 201, response.text
    stored = client.get(response.headers["Location"]).json()
    assert stored["extension"][0]["valueMeta"] == {"versionId": "7"}  # kept as sent


def test_invalid_value_meta_is_still_checked(client: TestClient) -> None:
    response = client.post(
        "/fhir/Patient", json=_with_extension("valueMeta", {"lastUpdated": "yesterday"})
    )
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Patient.extension[0].valueMeta"]


def test_r4b_only_extension_values_are_rejected(client: TestClient) -> None:
    for key, value in (
        ("valueCodeableReference", {"concept": {"text": "x"}}),
        ("valueRatioRange", {"denominator": {"value": 1}}),
    ):
        response = client.post("/fhir/Patient", json=_with_extension(key, value))
        assert response.status_code == 400, key
        assert response.json()["issue"][0]["expression"] == [f"Patient.extension[0].{key}"]


def test_nested_extensions_are_found() -> None:
    resource = fhir.patient()
    resource["name"][0]["extension"] = [
        {"url": "a", "extension": [{"url": "b", "valueRatioRange": {}}]}
    ]
    assert (
        r4compat.r4_only_rejections(resource)[0][0]
        == "name[0].extension[0].extension[0].valueRatioRange"
    )


def test_observation_subject_keeps_the_r4_target_list(client: TestClient) -> None:
    obs = fhir.observation(patient_id="p1")
    obs["subject"] = {"reference": "Organization/o1"}  # valid R4B, invalid R4
    response = client.post("/fhir/Observation", json=obs)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Observation.subject.reference"]
    obs["subject"] = {"reference": "Group/g1"}
    assert client.post("/fhir/Observation", json=obs).status_code == 201


def test_reference_targets_are_checked_for_top_level_references() -> None:
    condition = fhir.condition(patient_id="p1")
    condition["subject"] = {"reference": "Practitioner/x"}
    problems = r4rules.binding_problems(condition)
    assert [path for path, _, _ in problems] == ["Condition.subject.reference"]
    # urn:uuid, absolute-with-type and logical references
    for reference in ("urn:uuid:6d5c", "https://x.example/fhir/Patient/1"):
        condition["subject"] = {"reference": reference}
        assert r4rules.binding_problems(condition) == []
    # a local reference: to a contained resource of an allowed type
    condition["subject"] = {"reference": "#c1"}
    condition["contained"] = [{"resourceType": "Patient", "id": "c1"}]
    assert r4rules.binding_problems(condition) == []
    condition["contained"] = [{"resourceType": "Practitioner", "id": "c1"}]
    assert [p for p, _, _ in r4rules.binding_problems(condition)] == ["Condition.subject.reference"]
    del condition["contained"]
    condition["subject"] = {"identifier": {"system": "s", "value": "v"}}
    assert r4rules.binding_problems(condition) == []


def test_prepare_leaves_ordinary_resources_untouched() -> None:
    patient = fhir.patient()
    assert r4compat.prepare_for_r4b_validation(patient) is patient
    validate_resource(patient)


def test_codes_with_a_complete_required_binding_are_checked(client: TestClient) -> None:
    patient = fhir.patient(gender="banana")
    response = client.post("/fhir/Patient", json=patient)
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Patient.gender"]
    assert "female" in issue["diagnostics"]
    assert client.get("/fhir/Patient", params={"gender": "banana"}).json()["total"] == 0
    # Observation.status's list is partial in the models; R4's full list is checked
    observation = fhir.observation(patient_id="p1", status="finished")
    response = client.post("/fhir/Observation", json=observation)
    assert response.status_code == 400
    assert response.json()["issue"][0]["code"] == "code-invalid"
    assert "entered-in-error" in response.json()["issue"][0]["diagnostics"]

"""Correcting a record filed against the wrong patient, on both databases."""

from typing import Any

from fastapi.testclient import TestClient

from fhir_gateway.auth.issuer import DevelopmentIssuer
from tests.conftest import bearer, user_claims
from tests.factories import fhir


def _create(client: TestClient, resource: dict[str, Any]) -> str:
    # Recorded by the practice the records officer works for: only it may correct them.
    resource = {**resource, "meta": {"source": "urn:carejoin:source:Z90001"}}
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _refile(
    client: TestClient, path: str, headers: dict[str, str] | None = None, **values: str
) -> Any:
    parameters = [
        {"name": "patient", "valueReference": {"reference": values["patient"]}}
        if name == "patient"
        else {"name": name, "valueString": value}
        for name, value in values.items()
    ]
    return client.post(
        f"/fhir/{path}/$refile",
        json={"resourceType": "Parameters", "parameter": parameters},
        headers=headers,
    )


def test_refile_marks_the_wrong_copy_and_files_a_new_one(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    wrong = _create(client, fhir.patient(family="Wrong"))
    right = _create(client, fhir.patient(family="Right"))
    observation = _create(client, fhir.observation(patient_id=wrong))
    response = _refile(
        client,
        f"Observation/{observation}",
        patient=f"Patient/{right}",
        reason="filed against the wrong patient at clinic",
        headers=bearer(issuer, user_claims("records-officer-1")),
    )
    assert response.status_code == 200, response.text
    result = {p["name"]: p["valueReference"]["reference"] for p in response.json()["parameter"]}
    old = client.get(f"/fhir/Observation/{observation}").json()
    assert old["status"] == "entered-in-error"
    assert old["subject"]["reference"] == f"Patient/{wrong}"
    new = client.get(f"/fhir/{result['corrected']}").json()
    assert new["subject"]["reference"] == f"Patient/{right}"
    assert new["status"] == "final"
    assert new["valueQuantity"] == old["valueQuantity"]
    provenance = client.get(f"/fhir/{result['provenance']}").json()
    # The signed-in user made the correction.
    assert provenance["agent"][0]["who"] == {"reference": "Practitioner/records-officer-1"}
    assert provenance["reason"][0]["text"] == "filed against the wrong patient at clinic"
    # The right patient's record has it; the wrong one's keeps it only as entered-in-error.
    right_obs = client.get("/fhir/Observation", params={"patient": right}).json()
    assert [e["resource"]["id"] for e in right_obs["entry"]] == [result["corrected"].split("/")[1]]


def test_refile_of_a_condition_uses_its_verification_status(client: TestClient) -> None:
    wrong = _create(client, fhir.patient(family="Wrong"))
    right = _create(client, fhir.patient(family="Right"))
    condition = _create(client, fhir.condition(patient_id=wrong))
    response = _refile(client, f"Condition/{condition}", patient=f"Patient/{right}", reason="r")
    assert response.status_code == 200, response.text
    old = client.get(f"/fhir/Condition/{condition}").json()
    assert old["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert "clinicalStatus" not in old


def test_refile_bad_input(client: TestClient) -> None:
    patient = _create(client, fhir.patient())
    observation = _create(client, fhir.observation(patient_id=patient))
    missing = _refile(client, f"Observation/{observation}", patient=f"Patient/{patient}")
    assert missing.status_code == 400
    same = _refile(client, f"Observation/{observation}", patient=f"Patient/{patient}", reason="r")
    assert same.status_code == 400
    nobody = _refile(client, f"Observation/{observation}", patient="Patient/nobody", reason="r")
    assert nobody.status_code == 404
    unknown = _refile(client, "Observation/nothing", patient=f"Patient/{patient}", reason="r")
    assert unknown.status_code == 404
    assert client.get(f"/fhir/Observation/{observation}").json()["status"] == "final"

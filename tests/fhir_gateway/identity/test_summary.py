"""The joined-up summary: facts folded across sources, disagreements shown, contradictions
flagged, each source's last data; over HTTP on both databases."""

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from fhir_gateway.record.summary import summarise
from tests.fhir_gateway.feeds.messages import adt
from tests.fhir_gateway.identity.test_flow import dispatch, put_patient
from tests.fhir_gateway.identity.test_scoring import NUMBER_A

GP = "urn:ods:Z90001"
HOSPITAL = "urn:ods:Z9H"
SNOMED = "http://snomed.info/sct"


def allergy(resource_id: str, source: str, code: str, display: str, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "id": resource_id,
        "meta": {"source": source},
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
        "patient": {"reference": f"Patient/{patient}"},
        "recordedDate": "2025-03-01",
    }


def medication(resource_id: str, source: str, patient: str, date: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationStatement",
        "id": resource_id,
        "meta": {"source": source},
        "status": "active",
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": "https://dmd.nhs.uk",
                    "code": "322236009",
                    "display": "Paracetamol 500mg tablets",
                }
            ]
        },
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": date,
    }


def test_the_same_fact_from_two_sources_appears_once_with_both() -> None:
    summary = summarise(
        [
            medication("m1", GP, "gp", "2026-01-10"),
            medication("m2", HOSPITAL, "rh", "2026-10-02"),
            allergy("a1", GP, "91936005", "Penicillin allergy", "gp"),
            allergy("a2", HOSPITAL, "91936005", "Allergy to penicillin", "rh"),
        ]
    )
    (paracetamol,) = summary["medications"]
    assert [r["source"] for r in paracetamol["recordedBy"]] == [HOSPITAL, GP]  # newest first
    assert [r["date"] for r in paracetamol["recordedBy"]] == ["2026-10-02", "2026-01-10"]
    (penicillin,) = summary["allergies"]
    assert {r["source"] for r in penicillin["recordedBy"]} == {GP, HOSPITAL}
    assert summary["contradictions"] == []


def test_no_known_allergy_beside_an_allergy_is_flagged() -> None:
    summary = summarise(
        [
            allergy("a1", GP, "91936005", "Penicillin allergy", "gp"),
            allergy("a2", HOSPITAL, "716186003", "No known allergy", "rh"),
        ]
    )
    (contradiction,) = summary["contradictions"]
    assert contradiction["noKnownAllergy"] == [HOSPITAL]
    assert contradiction["allergy"] == [GP]
    assert [a["display"] for a in summary["allergies"]] == ["Penicillin allergy"]


def test_entered_in_error_items_are_left_out() -> None:
    wrong = medication("m1", GP, "gp", "2026-01-10") | {"status": "entered-in-error"}
    assert summarise([wrong])["medications"] == []


def test_summary_over_http_joins_sources_and_shows_disagreements(
    app: FastAPI, client: TestClient
) -> None:
    put_patient(client, "gp1-sum", GP, nhs_number=NUMBER_A, verified=True)
    put_patient(client, "rh-sum", HOSPITAL, nhs_number=NUMBER_A, verified=True, postcode="BD7 1DP")
    for resource in (
        medication("sum-m1", GP, "gp1-sum", "2026-01-10"),
        medication("sum-m2", HOSPITAL, "rh-sum", "2026-10-02"),
        allergy("sum-a1", GP, "91936005", "Penicillin allergy", "gp1-sum"),
        allergy("sum-a2", HOSPITAL, "716186003", "No known allergy", "rh-sum"),
    ):
        response = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
        assert response.status_code in (200, 201), response.text
    dispatch(app)
    response = client.get("/record/gp1-sum")
    assert response.status_code == 200, response.text
    summary = response.json()
    assert set(summary["patients"]) == {"Patient/gp1-sum", "Patient/rh-sum"}
    postcode = summary["demographics"]["postcode"]
    assert postcode["agreed"] is False
    assert {v["value"] for v in postcode["bySource"]} == {"LS16 6AB", "BD7 1DP"}
    assert summary["demographics"]["birthDate"]["agreed"] is True
    assert len(summary["medications"]) == 1
    assert summary["contradictions"][0]["about"] == "allergies"
    assert {s["source"] for s in summary["sources"]} == {GP, HOSPITAL}
    assert all(s["lastSent"] for s in summary["sources"])
    assert summary["timeline"][0]["date"] >= summary["timeline"][-1]["date"]
    assert client.get("/record/nobody").status_code == 404


def test_admissions_show_their_admission_method(app: FastAPI, client: TestClient) -> None:
    sent = client.post(
        "/feeds/hl7v2",
        content=adt("A01", "SUM1").encode(),
        headers={"Content-Type": "x-application/hl7-v2+er7"},
    )
    assert "MSA|AA" in sent.text
    patient_id = client.get(
        "/fhir/Patient", params={"identifier": "https://fhir.carejoin.example/Id/Z9H/mrn|RH0000123"}
    ).json()["entry"][0]["resource"]["id"]
    (admission,) = client.get(f"/record/{patient_id}").json()["admissions"]
    assert admission["emergency"] is True
    assert admission["admissionMethod"] == "Emergency - Accident and Emergency"

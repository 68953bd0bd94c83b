"""Saying that something is withheld, without saying what or how much, on both databases."""

from typing import Any

from fastapi.testclient import TestClient

from fhir_gateway.auth.issuer import DevelopmentIssuer
from tests.conftest import bearer, user_claims
from tests.factories import fhir
from tests.factories.http import write_as

ICD10 = "http://hl7.org/fhir/sid/icd-10"
HOSPITAL = "urn:carejoin:source:Z9H"
PRACTICE = "urn:carejoin:source:Z90002"


def _icd10(patient: str, code: str) -> dict[str, Any]:
    return {
        **fhir.condition(patient_id=patient),
        "code": {"coding": [{"system": ICD10, "code": code}]},
    }


def _outcomes(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"]


def _related_gp(client: TestClient, issuer: DevelopmentIssuer, patient: str) -> dict[str, str]:
    write_as(
        client, fhir.care_team(patient_id=patient, member="Practitioner/gp-Z90001-0"), PRACTICE
    )
    return bearer(issuer, user_claims("gp-Z90001-0", organization="Z90001"))


def test_a_hidden_item_is_announced_without_a_count_or_a_hint(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    patient = write_as(client, fhir.patient(family="Withheld"), PRACTICE)
    shown = write_as(client, _icd10(patient, "I10"), HOSPITAL)
    write_as(client, _icd10(patient, "B20.1"), HOSPITAL)  # HIV: not in the GP's rule
    write_as(client, _icd10(patient, "B20.2"), HOSPITAL)
    gp = _related_gp(client, issuer, patient)

    everything = client.get(f"/fhir/Patient/{patient}/$everything", headers=gp).json()
    ids = {e["resource"].get("id") for e in everything["entry"]}
    assert shown in ids
    (notice,) = _outcomes(everything)
    issue = notice["resource"]["issue"][0]
    assert issue["code"] == "suppressed"
    assert "2" not in issue["diagnostics"]  # never how many
    assert "HIV" not in issue["diagnostics"]
    assert "B20" not in issue["diagnostics"]
    assert everything["total"] == len(
        [e for e in everything["entry"] if e["search"]["mode"] == "match"]
    )

    search = client.get("/fhir/Condition", params={"patient": patient}, headers=gp).json()
    assert search["total"] == 1
    assert len(_outcomes(search)) == 1
    summary = client.get(f"/record/{patient}", headers=gp).json()
    assert summary["withheld"] is True


def test_nothing_is_announced_when_nothing_is_withheld_or_only_a_sealed_item(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    patient = write_as(client, fhir.patient(family="Sealed"), PRACTICE)
    sealed = write_as(client, _icd10(patient, "I10"), HOSPITAL)
    gp = _related_gp(client, issuer, patient)
    everything = client.get(f"/fhir/Patient/{patient}/$everything", headers=gp).json()
    assert _outcomes(everything) == []
    write_as(
        client,
        fhir.privacy_consent(
            patient,
            {
                "type": "deny",
                "data": [
                    {"meaning": "instance", "reference": {"reference": f"Condition/{sealed}"}}
                ],
            },
        ),
        PRACTICE,
    )
    after = client.get(f"/fhir/Patient/{patient}/$everything", headers=gp).json()
    assert sealed not in {e["resource"].get("id") for e in after["entry"]}
    assert _outcomes(after) == []  # a sealed item is not even hinted at
    assert client.get(f"/fhir/Condition/{sealed}", headers=gp).status_code == 404

"""Unlinking a wrong match gives privacy officers everyone who viewed the joined record."""

from fastapi import FastAPI
from fastapi.testclient import TestClient

from fhir_gateway.auth.issuer import DevelopmentIssuer
from tests.conftest import bearer, user_claims
from tests.factories import fhir
from tests.fhir_gateway.identity.test_flow import dispatch, persons_linking, put_patient
from tests.fhir_gateway.identity.test_scoring import NUMBER_A


def test_privacy_officers_see_who_viewed_a_wrongly_joined_record(
    app: FastAPI, client: TestClient, issuer: DevelopmentIssuer
) -> None:
    put_patient(client, "gp1-wrong", "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True)
    put_patient(client, "rh-wrong", "urn:ods:Z9H", nhs_number=NUMBER_A, verified=True)
    dispatch(app)
    (person,) = persons_linking(client, "rh-wrong")
    hospital_condition = client.post(
        "/fhir/Condition",
        json={
            **fhir.condition(patient_id="rh-wrong"),
            "meta": {"source": "urn:carejoin:source:Z9H"},
        },
    ).json()["id"]
    gp = bearer(issuer, user_claims("gp-Z90001-0", organization="Z90001"))
    # The GP sees the hospital's record through the (wrong) join: registered at Z90001.
    assert client.get(f"/fhir/Condition/{hospital_condition}", headers=gp).status_code == 200

    steward = bearer(issuer, user_claims("steward-1", organization="Z9H", role="R8008"))
    unlinked = client.post(
        "/identity/unlink",
        json={"patient": "Patient/rh-wrong", "reason": "Different people, same NHS number"},
        headers=steward,
    )
    assert unlinked.status_code == 200, unlinked.text
    assert client.get(f"/fhir/Condition/{hospital_condition}", headers=gp).status_code == 404

    officer = bearer(issuer, user_claims("privacy-1", organization="Z9H", role="CJ0003"))
    report = client.get(
        "/identity/unlinks", params={"patient": "Patient/rh-wrong"}, headers=officer
    )
    assert report.status_code == 200, report.text
    (unlink,) = report.json()["unlinks"]
    assert unlink["person"] == f"Person/{person['id']}"
    assert unlink["steward"] == "Practitioner/steward-1"
    viewers = {(v["agent"], v["organisation"]) for v in unlink["viewers"]}
    assert ("Practitioner/gp-Z90001-0", "Z90001") in viewers
    # Only privacy officers may ask.
    assert (
        client.get(
            "/identity/unlinks", params={"patient": "Patient/rh-wrong"}, headers=gp
        ).status_code
        == 403
    )

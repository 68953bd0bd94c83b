"""Consent on the less obvious paths: chains, GETs inside bundles, and audited writes."""

from fastapi.testclient import TestClient
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from fhir_gateway.audit.models import AuditEventRow
from fhir_gateway.auth.issuer import DevelopmentIssuer
from tests.conftest import bearer, user_claims
from tests.factories import fhir
from tests.factories.http import write_as

OTHER_PRACTICE = "urn:carejoin:source:Z90002"
OWN_PRACTICE = "urn:carejoin:source:Z90001"


def test_a_chained_search_cannot_probe_a_hidden_patient(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    hidden = write_as(client, fhir.patient(family="Zebedee", nhs_number=None), OTHER_PRACTICE)
    # An observation the GP may see (their own practice recorded it) about the hidden patient.
    write_as(client, fhir.observation(patient_id=hidden), OWN_PRACTICE)
    gp = bearer(issuer, user_claims("gp-Z90001-0"))
    assert client.get(f"/fhir/Patient/{hidden}", headers=gp).status_code == 404
    own = client.get("/fhir/Observation", params={"patient": hidden}, headers=gp).json()
    assert own["total"] == 1
    probe = client.get(
        "/fhir/Observation", params={"subject:Patient.family": "Zebedee"}, headers=gp
    ).json()
    assert probe["total"] == 0  # the chain goes only through patients the GP may see


def test_gets_inside_a_batch_answer_as_they_would_alone(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    hidden = write_as(client, fhir.patient(family="Batched"), OTHER_PRACTICE)
    gp = bearer(issuer, user_claims("gp-Z90001-0"))
    bundle = fhir.transaction(
        {"request": {"method": "GET", "url": f"Patient/{hidden}"}},
        {"request": {"method": "GET", "url": "Patient?family=Batched"}},
        kind="batch",
    )
    response = client.post("/fhir", json=bundle, headers=gp)
    assert response.status_code == 200, response.text
    read, search = response.json()["entry"]
    assert read["response"]["status"].startswith("404")
    assert "resource" not in read or read["resource"]["resourceType"] == "OperationOutcome"
    assert search["resource"]["total"] == 0


def test_writes_are_audited_with_the_person_they_touch(
    client: TestClient, issuer: DevelopmentIssuer, connection: Connection
) -> None:
    gp = bearer(issuer, user_claims("gp-Z90001-0"))
    created = client.post("/fhir/Patient", json=fhir.patient(family="Audited"), headers=gp)
    assert created.status_code == 201, created.text
    assert created.json()["meta"]["source"] == OWN_PRACTICE  # attributed to the writer
    patient = created.json()["id"]
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        rows = session.execute(
            select(AuditEventRow.action, AuditEventRow.agent, AuditEventRow.person).where(
                AuditEventRow.interaction == "create"
            )
        ).all()
    assert [tuple(r) for r in rows] == [("C", "Practitioner/gp-Z90001-0", f"Patient/{patient}")]
    spoof = client.post(
        "/fhir/Patient",
        json={**fhir.patient(family="Spoof"), "meta": {"source": OTHER_PRACTICE}},
        headers=gp,
    )
    assert spoof.status_code == 403

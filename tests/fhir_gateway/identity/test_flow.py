"""From a source's write to a Person, through the outbox, and the steward API, over HTTP on
both databases."""

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from fhir_gateway import events
from tests.fhir_gateway.identity.test_scoring import NUMBER_A, NUMBER_B, patient


def dispatch(app: FastAPI) -> int:
    """Drain the outbox in the test's transaction, as the background dispatcher would."""
    dispatcher: events.Dispatcher = app.state.dispatcher
    total = 0
    with app.state.unit_of_work() as session:
        while count := dispatcher.dispatch_once(session, now=datetime.now(UTC)):
            total += count
    return total


def put_patient(client: TestClient, patient_id: str, source: str, **kwargs: Any) -> None:
    resource = patient(**kwargs)
    resource["id"] = patient_id
    resource["meta"] = {"source": source}
    response = client.put(f"/fhir/Patient/{patient_id}", json=resource)
    assert response.status_code in (200, 201), response.text


def persons_linking(client: TestClient, patient_id: str) -> list[dict[str, Any]]:
    response = client.get("/fhir/Person", params={"link": f"Patient/{patient_id}"})
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


def test_patients_from_two_sources_become_one_person(app: FastAPI, client: TestClient) -> None:
    put_patient(client, "gp1-flow", "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True)
    put_patient(client, "rh-flow", "urn:ods:Z9H", nhs_number=NUMBER_A, verified=True, given="Ada")
    assert dispatch(app) >= 2
    (person,) = persons_linking(client, "gp1-flow")
    assert {link["target"]["reference"] for link in person["link"]} == {
        "Patient/gp1-flow",
        "Patient/rh-flow",
    }
    # The Person's own writes were dispatched too, and a second pass finds nothing to do.
    assert dispatch(app) == 0


def test_deleting_a_source_patient_takes_it_out_of_its_person(
    app: FastAPI, client: TestClient
) -> None:
    put_patient(client, "gp1-del", "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True)
    put_patient(client, "rh-del", "urn:ods:Z9H", nhs_number=NUMBER_A, verified=True)
    dispatch(app)
    assert client.delete("/fhir/Patient/rh-del").status_code in (200, 204)
    dispatch(app)
    (person,) = persons_linking(client, "gp1-del")
    assert [link["target"]["reference"] for link in person["link"]] == ["Patient/gp1-del"]
    assert persons_linking(client, "rh-del") == []


def test_steward_reviews_accepts_and_unlinks(app: FastAPI, client: TestClient) -> None:
    put_patient(client, "gp1-rev", "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True)
    # Same verified number, conflicting sex: a human decides.
    put_patient(client, "rh-rev", "urn:ods:Z9H", nhs_number=NUMBER_A, verified=True, gender="male")
    dispatch(app)
    reviews = client.get("/identity/reviews").json()["reviews"]
    (review,) = [r for r in reviews if r["patient"] == "Patient/rh-rev"]
    assert any(e["field"] == "sex" and e["level"] == "different" for e in review["evidence"])
    assert review["candidatePatients"] == ["Patient/gp1-rev"]

    missing = client.post("/identity/unlink", json={"patient": "Patient/rh-rev"})
    assert missing.status_code == 400  # no reason given
    assert missing.json()["resourceType"] == "OperationOutcome"

    accepted = client.post(
        f"/identity/reviews/{review['id']}/accept", json={"steward": "steward-1"}
    )
    assert accepted.status_code == 200, accepted.text
    (person,) = persons_linking(client, "rh-rev")
    assert {link["target"]["reference"] for link in person["link"]} == {
        "Patient/gp1-rev",
        "Patient/rh-rev",
    }
    again = client.post(f"/identity/reviews/{review['id']}/reject", json={"steward": "steward-1"})
    assert again.status_code == 400

    unlinked = client.post(
        "/identity/unlink",
        json={"patient": "Patient/rh-rev", "steward": "steward-1", "reason": "different people"},
    )
    assert unlinked.status_code == 200, unlinked.text
    (gp_person,) = persons_linking(client, "gp1-rev")
    assert [link["target"]["reference"] for link in gp_person["link"]] == ["Patient/gp1-rev"]
    assert client.post("/identity/reviews/999999/accept", json={"steward": "s"}).status_code == 404


def test_the_dispatcher_marks_events_processed(
    app: FastAPI, client: TestClient, connection: Connection
) -> None:
    put_patient(client, "gp1-mark", "urn:ods:Z90001")
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        assert events.pending(session) >= 1
    dispatch(app)
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        assert events.pending(session) == 0


def test_steward_links_by_hand_and_the_rule_on_verified_numbers_holds(
    app: FastAPI, client: TestClient
) -> None:
    put_patient(client, "gp1-hand", "urn:ods:Z90001", family="Clarke", given="Jane")
    put_patient(client, "asc-hand", "urn:ods:Z9C01", family="Okafor", given="Adaeze")
    dispatch(app)
    assert persons_linking(client, "gp1-hand") != persons_linking(client, "asc-hand")
    body = {
        "patient": "Patient/asc-hand",
        "other": "Patient/gp1-hand",
        "steward": "s1",
        "reason": "known to team",
    }
    linked = client.post("/identity/link", json=body)
    assert linked.status_code == 200, linked.text
    (person,) = persons_linking(client, "gp1-hand")
    assert {link["target"]["reference"] for link in person["link"]} == {
        "Patient/gp1-hand",
        "Patient/asc-hand",
    }
    assert client.post("/identity/link", json=body).status_code == 400  # already linked
    # A Person never holds two different verified NHS numbers, even by hand.
    put_patient(
        client,
        "gp1-va",
        "urn:ods:Z90001",
        nhs_number=NUMBER_A,
        verified=True,
        family="Aaa",
        given="Bbb",
        birth="1950-01-01",
    )
    put_patient(
        client,
        "gp1-vb",
        "urn:ods:Z90002",
        nhs_number=NUMBER_B,
        verified=True,
        family="Ccc",
        given="Ddd",
        birth="1960-01-01",
    )
    dispatch(app)
    refused = client.post(
        "/identity/link",
        json={"patient": "gp1-va", "other": "gp1-vb", "steward": "s1", "reason": "sure"},
    )
    assert refused.status_code == 400
    assert "verified NHS number" in refused.json()["issue"][0]["diagnostics"]
    unknown = client.post(
        "/identity/link",
        json={"patient": "nobody", "other": "gp1-vb", "steward": "s1", "reason": "x"},
    )
    assert unknown.status_code == 404

"""HL7 v2 ADT over HTTP on both databases: applied in order, de-duplicated, cancellations
undone, merges honoured, failures kept as dead letters and replayable."""

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.fhir_gateway.feeds.messages import adt
from tests.fhir_gateway.identity.test_flow import dispatch, persons_linking

HL7 = {"Content-Type": "x-application/hl7-v2+er7"}


def send(client: TestClient, raw: str) -> tuple[str, str]:
    response = client.post("/feeds/hl7v2", content=raw.encode(), headers=HL7)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("x-application/hl7-v2+er7")
    msa = next(line for line in response.text.split("\r") if line.startswith("MSA|"))
    return response.headers["X-HL7-Ack"], msa


def search(client: TestClient, query: str) -> list[dict[str, Any]]:
    response = client.get(f"/fhir/{query}")
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


def encounter(client: TestClient, visit: str = "V0001") -> dict[str, Any]:
    (found,) = search(
        client, f"Encounter?identifier=https://fhir.carejoin.example/Id/Z9H/visit|{visit}"
    )
    return found


def test_admit_transfer_discharge(client: TestClient) -> None:
    assert send(client, adt("A01", "M1"))[0] == "AA"
    (patient,) = search(
        client, "Patient?identifier=https://fhir.carejoin.example/Id/Z9H/mrn|RH0000123"
    )
    admitted = encounter(client)
    assert admitted["status"] == "in-progress"
    assert admitted["subject"]["reference"] == f"Patient/{patient['id']}"
    assert admitted["priority"]["coding"][0]["code"] == "EM"

    assert send(client, adt("A02", "M2", ward="WARD9^A^1"))[0] == "AA"
    assert encounter(client)["location"][0]["location"]["display"] == "WARD9 room A bed 1"

    assert send(client, adt("A03", "M3", discharged="202611051200"))[0] == "AA"
    discharged = encounter(client)
    assert discharged["status"] == "finished"
    assert discharged["period"] == {
        "start": "2026-11-01T09:30:00+00:00",
        "end": "2026-11-05T12:00:00+00:00",
    }
    # One patient, one encounter, however many messages.
    assert (
        len(search(client, "Patient?identifier=https://fhir.carejoin.example/Id/Z9H/mrn|RH0000123"))
        == 1
    )


def test_a_resent_message_is_acknowledged_but_applied_once(client: TestClient) -> None:
    assert send(client, adt("A01", "D1"))[0] == "AA"
    version = encounter(client)["meta"]["versionId"]
    code, msa = send(client, adt("A01", "D1", ward="WARD9^A^1"))
    assert code == "AA"
    assert "already processed" in msa
    assert encounter(client)["meta"]["versionId"] == version


def test_cancellations_undo_what_their_event_did(client: TestClient) -> None:
    send(client, adt("A01", "X1"))
    send(client, adt("A02", "X2", ward="WARD9^A^1"))
    assert send(client, adt("A12", "X3", ward="WARD7^B^12"))[0] == "AA"
    assert encounter(client)["location"][0]["location"]["display"] == "WARD7 room B bed 12"
    send(client, adt("A03", "X4", discharged="202611051200"))
    assert send(client, adt("A13", "X5"))[0] == "AA"
    reopened = encounter(client)
    assert reopened["status"] == "in-progress"
    assert "end" not in reopened["period"]
    assert send(client, adt("A11", "X6"))[0] == "AA"
    assert encounter(client)["status"] == "entered-in-error"


def test_a_cancellation_of_nothing_is_an_error_and_a_dead_letter(client: TestClient) -> None:
    code, msa = send(client, adt("A11", "N1", visit="V404"))
    assert code == "AE"
    assert "never recorded" in msa
    letters = client.get("/feeds/hl7v2/dead-letters").json()["deadLetters"]
    (letter,) = [d for d in letters if d["controlId"] == "N1"]
    assert letter["ack"] == "AE"
    assert letter["message"].startswith("MSH|")
    # Nothing half-stored: no patient was created by the failed message.
    assert (
        search(client, "Encounter?identifier=https://fhir.carejoin.example/Id/Z9H/visit|V404") == []
    )


def test_a_dead_letter_replays_once_its_cause_is_fixed(client: TestClient) -> None:
    # The discharge arrives before the admission.
    code, _ = send(client, adt("A13", "R2", visit="V77"))
    assert code == "AE"
    (letter,) = [
        d
        for d in client.get("/feeds/hl7v2/dead-letters").json()["deadLetters"]
        if d["controlId"] == "R2"
    ]
    send(client, adt("A01", "R1", visit="V77"))
    replayed = client.post(f"/feeds/hl7v2/dead-letters/{letter['id']}/replay")
    assert replayed.status_code == 200
    assert replayed.json()["ack"] == "AA"
    remaining = client.get("/feeds/hl7v2/dead-letters").json()["deadLetters"]
    assert all(d["controlId"] != "R2" for d in remaining)
    assert client.post("/feeds/hl7v2/dead-letters/999999/replay").status_code == 404


def test_unreadable_messages_are_rejected_and_kept(client: TestClient) -> None:
    code, msa = send(client, "this is not HL7")
    assert code == "AR"
    assert msa.startswith("MSA|AR|")
    letters = client.get("/feeds/hl7v2/dead-letters").json()["deadLetters"]
    assert any(d["message"] == "this is not HL7" and d["ack"] == "AR" for d in letters)


def test_merge_marks_the_old_record_replaced_and_moves_its_encounters(client: TestClient) -> None:
    send(client, adt("A01", "G1", mrn="RH0000999", visit="V900", given="ADA"))
    send(client, adt("A28", "G2", mrn="RH0000123", pv1=False))
    merge = adt("A40", "G3", mrn="RH0000123", pv1=False, extra="MRG|RH0000999^^^Z9H^MR")
    assert send(client, merge)[0] == "AA"
    (old,) = search(client, "Patient?identifier=https://fhir.carejoin.example/Id/Z9H/mrn|RH0000999")
    (survivor,) = search(
        client, "Patient?identifier=https://fhir.carejoin.example/Id/Z9H/mrn|RH0000123"
    )
    assert old["active"] is False
    assert old["link"] == [
        {"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}
    ]
    assert {"other": {"reference": f"Patient/{old['id']}"}, "type": "replaces"} in survivor["link"]
    assert encounter(client, "V900")["subject"]["reference"] == f"Patient/{survivor['id']}"


def test_wrong_media_type_and_empty_body(client: TestClient) -> None:
    wrong = client.post(
        "/feeds/hl7v2", content=b"MSH|", headers={"Content-Type": "application/json"}
    )
    assert wrong.status_code == 415
    assert wrong.json()["resourceType"] == "OperationOutcome"
    empty = client.post("/feeds/hl7v2", content=b"  ", headers=HL7)
    assert empty.status_code == 400


def test_identity_follows_the_hospitals_merge(app: FastAPI, client: TestClient) -> None:
    # Two hospital numbers for one person, with nothing in common that would link them.
    send(client, adt("A28", "I1", mrn="RH0000555", pv1=False, nhs="", family="SMITH", given="JANE"))
    send(client, adt("A28", "I2", mrn="RH0000123", pv1=False))
    dispatch(app)
    old_id = search(
        client, "Patient?identifier=https://fhir.carejoin.example/Id/Z9H/mrn|RH0000555"
    )[0]["id"]
    new_id = search(
        client, "Patient?identifier=https://fhir.carejoin.example/Id/Z9H/mrn|RH0000123"
    )[0]["id"]
    assert persons_linking(client, old_id) != persons_linking(client, new_id)
    send(client, adt("A40", "I3", mrn="RH0000123", pv1=False, extra="MRG|RH0000555^^^Z9H^MR"))
    dispatch(app)
    (person,) = persons_linking(client, new_id)
    assert {link["target"]["reference"] for link in person["link"]} == {
        f"Patient/{old_id}",
        f"Patient/{new_id}",
    }

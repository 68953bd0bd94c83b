"""The social care (CLD-shaped) extract on both databases: mapping, bad rows by number,
idempotent re-load, and withdrawal of events missing from a later extract of the period."""

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from fhir_gateway.feeds import cld, social_care
from tests.fhir_gateway.identity.test_service import NOW

HEADER = (
    "LA_Code,Person_ID,NHS_Number,Given_Name,Family_Name,Date_of_Birth,Gender,Postcode,"
    "Reporting_Period_Start_Date,Reporting_Period_End_Date,Event_Type,Event_Reference,"
    "Event_Start_Date,Event_End_Date,Event_Outcome,Service_Type,Primary_Support_Reason"
)
PERIOD = "2026-07-01,2026-09-30"


def row(
    event: str, reference: str, *, start: str = "2026-07-14", end: str = "", **over: str
) -> str:
    values = {
        "person": "P1001",
        "nhs": "9991000003",
        "dob": "1941-03-12",
        "gender": "Female",
        "outcome": "Long Term Support",
        "service": "Long Term Support: Community",
        "reason": "Physical Support: Personal Care Support",
    } | over
    return (
        f"Z9C01,{values['person']},{values['nhs']},Adaeze,Okafor,{values['dob']},{values['gender']},"
        f"LS16 6AB,{PERIOD},{event},{reference},{start},{end},{values['outcome']},"
        f"{values['service'] if event == 'Service' else ''},{values['reason']}"
    )


def extract(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def get(client: TestClient, path: str) -> dict[str, Any]:
    response = client.get(f"/fhir/{path}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_events_map_to_fhir() -> None:
    parsed = cld.parse(
        extract(
            row("Request", "R1"),
            row("Assessment", "A1", end="2026-07-20"),
            row("Service", "S1", start="2026-08-01"),
            row("Review", "V1", end="2026-09-15"),
        )
    )
    assert parsed.errors == []
    kinds = [e.resource["resourceType"] for e in parsed.events]
    assert kinds == ["Task", "Encounter", "EpisodeOfCare", "Encounter"]
    service = parsed.events[2].resource
    assert service["status"] == "active"
    assert service["type"][0]["text"] == "Long Term Support: Community"
    # The primary support reason is a social care need category, not a clinical problem.
    (extension,) = service["extension"]
    assert extension["url"] == cld.SUPPORT_REASON_EXTENSION
    assert "Condition" not in kinds
    patient = parsed.events[0].patient
    assert patient["id"] == "z9c01-p1001"
    assert patient["meta"]["source"] == "urn:carejoin:source:Z9C01"


def test_bad_rows_are_reported_by_number_and_good_rows_load(
    app: FastAPI, client: TestClient
) -> None:
    text = extract(
        row("Service", "S1"),
        row("Service", "S2", nhs="9991000004"),  # wrong check digit
        row("Holiday", "H1"),
        row("Assessment", "A1", start="2026-13-01"),
        row("Review", "V1", start="2026-09-01", end="2026-08-01"),
        row("Service", "S3", gender="Sometimes"),
        "Z9C01,P1002",  # truncated
        row("Review", "V2", end="2026-09-15"),
    )
    report = social_care.load(app.state.unit_of_work, text, now=NOW)
    reasons = dict(report.errors)
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8]
    assert "Modulus 11" in reasons[3]
    assert "Event_Type" in reasons[4]
    assert "not a date" in reasons[5]
    assert "before" in reasons[6]
    assert "Gender" in reasons[7]
    assert "missing" in reasons[8]
    assert report.loaded == 2
    assert get(client, "EpisodeOfCare/z9c01-ev-s1")["status"] == "active"
    assert get(client, "Encounter/z9c01-ev-v2")["status"] == "finished"


def test_reloading_the_same_extract_changes_nothing(app: FastAPI, client: TestClient) -> None:
    text = extract(row("Service", "S1"), row("Assessment", "A1", end="2026-07-20"))
    first = social_care.load(app.state.unit_of_work, text, now=NOW)
    assert first.loaded == 2
    again = social_care.load(app.state.unit_of_work, text, now=NOW)
    assert again.loaded == 0
    assert again.unchanged == 2
    assert get(client, "EpisodeOfCare/z9c01-ev-s1")["meta"]["versionId"] == "1"


def test_an_event_missing_from_a_later_extract_is_withdrawn(
    app: FastAPI, client: TestClient
) -> None:
    social_care.load(
        app.state.unit_of_work,
        extract(row("Service", "S1"), row("Assessment", "A1", end="2026-07-20")),
        now=NOW,
    )
    later = social_care.load(
        app.state.unit_of_work, extract(row("Service", "S1", end="2026-09-01")), now=NOW
    )
    assert later.withdrawn == ["Encounter/z9c01-ev-a1"]
    assert get(client, "Encounter/z9c01-ev-a1")["status"] == "entered-in-error"
    assert get(client, "EpisodeOfCare/z9c01-ev-s1")["status"] == "finished"


def test_withdrawal_is_held_back_when_rows_were_refused(app: FastAPI, client: TestClient) -> None:
    social_care.load(
        app.state.unit_of_work,
        extract(row("Service", "S1"), row("Assessment", "A1", end="2026-07-20")),
        now=NOW,
    )
    # A1's row is now unreadable: it must not be taken as withdrawn.
    later = social_care.load(
        app.state.unit_of_work,
        extract(row("Service", "S1"), row("Assessment", "A1", start="not-a-date")),
        now=NOW,
    )
    assert later.withdrawn == []
    assert later.withdrawal_skipped == ["Z9C01 2026-07-01..2026-09-30"]
    assert get(client, "Encounter/z9c01-ev-a1")["status"] == "finished"


def test_a_file_without_the_required_columns_is_refused_whole() -> None:
    parsed = cld.parse("Person_ID,Event_Type\nP1,Service\n")
    assert parsed.events == []
    assert parsed.errors[0][0] == 1
    assert "LA_Code" in parsed.errors[0][1]
    assert cld.parse("").errors == [(1, "the file is empty")]

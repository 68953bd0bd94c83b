"""Caseloads, worklists and alerts on both databases: proposals with reasons, the lead's
decisions, the queue, referrals, handovers, and the admission/discharge alerts from the
hospital's ADT feed, raised once and withdrawn when the hospital cancels."""

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from coordination.alert.rules import follow_up_due, working_days_after
from coordination.caseload.models import TaskRow
from coordination.settings import CoordinationSettings
from fhir_gateway.audit.models import AuditEventRow
from fhir_gateway.auth.issuer import DevelopmentIssuer
from tests.coordination import world
from tests.coordination.conftest import TEAM, dispatch, staff, write
from tests.fhir_gateway.feeds.messages import NHS, adt

HL7 = {"Content-Type": "x-application/hl7-v2+er7"}
CASES = "/coordination/teams/int-a/cases"


def lead(issuer: DevelopmentIssuer, purpose: str = "TREAT") -> dict[str, str]:
    return staff(issuer, "lead-1", purpose=purpose)


def coordinator(issuer: DevelopmentIssuer, who: str = "coord-2") -> dict[str, str]:
    return staff(issuer, who)


@pytest.fixture
def team_world(
    coord_client: TestClient, coord_app: FastAPI, connection: Connection, issuer: DevelopmentIssuer
) -> dict[str, str]:
    """The team; a frail 85-year-old at Z90001 whom the hospital's PAS knows (the ADT
    messages' patient), found by case-finding; and a 70-year-old at Z90002 with social
    care and no hospital history."""
    admin = staff(issuer, "admin-1", role="R8008")
    assert (
        coord_client.put("/coordination/teams/int-a", json=TEAM, headers=admin).status_code == 201
    )
    born = "1941-03-12"
    gp = world.registered(
        coord_client, practice="Z90001", nhs=NHS, born=born, family="Okafor", given="Adaeze"
    )
    hospital = world.hospital_patient(
        coord_client, nhs=NHS, born=born, family="Okafor", given="Adaeze"
    )
    for code in ("F00.1", "W19", "R26.8"):
        world.diagnosis(coord_client, hospital, code, world.days_ago(90))
    other = world.registered(
        coord_client,
        practice="Z90002",
        nhs="9990012345",
        born=world.years_ago(70),
        family="Brennan",
    )
    dispatch(coord_app, connection)
    persons = {
        e["name"]: e["person"]
        for e in coord_client.get(
            "/coordination/teams/int-a/offers", headers=lead(issuer, "CASEFIND")
        ).json()["offers"]
    }
    return {"gp": gp, "hospital": hospital, "other": other, **persons}


def test_the_lead_sees_offers_with_a_proposed_coordinator_and_the_reasons(
    team_world: dict[str, str], coord_client: TestClient, issuer: DevelopmentIssuer
) -> None:
    response = coord_client.get(
        "/coordination/teams/int-a/offers", headers=lead(issuer, "CASEFIND")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    (offer,) = body["offers"]  # only the person case-finding found
    assert offer["name"] == "Adaeze Okafor"
    # Intermediate frailty calls for nursing: coord-2 is the team's nurse.
    assert offer["proposedCoordinator"] == "Practitioner/coord-2"
    assert any("nursing" in r and "frailty" in r for r in offer["reasons"])
    loads = {c["practitioner"]: (c["caseload"], c["capacity"]) for c in body["coordinators"]}
    assert loads == {"Practitioner/coord-1": (0, 120), "Practitioner/coord-2": (0, 60)}


def test_offers_are_for_the_lead_under_the_case_finding_purpose(
    team_world: dict[str, str], coord_client: TestClient, issuer: DevelopmentIssuer
) -> None:
    url = "/coordination/teams/int-a/offers"
    assert coord_client.get(url, headers=lead(issuer)).status_code == 403  # purpose TREAT
    assert (
        coord_client.get(url, headers=staff(issuer, "coord-1", purpose="CASEFIND")).status_code
        == 403
    )


def test_the_lead_takes_a_person_on_and_the_episode_is_fhir(
    team_world: dict[str, str],
    coord_client: TestClient,
    issuer: DevelopmentIssuer,
    connection: Connection,
) -> None:
    person = team_world["Adaeze Okafor"]
    opened = coord_client.post(CASES, json={"person": person}, headers=lead(issuer))
    assert opened.status_code == 201, opened.text
    case = opened.json()
    assert (case["status"], case["coordinator"]) == ("active", "Practitioner/coord-2")
    assert case["reason"]["chosenBy"] == "proposal"
    episode = coord_client.get(f"/fhir/{case['episodeOfCare']}").json()
    assert episode["status"] == "active"
    assert episode["careManager"] == {"reference": "Practitioner/coord-2"}
    assert episode["patient"] == {"reference": f"Patient/{team_world['gp']}"}
    assert episode["meta"]["source"] == "urn:carejoin:source:Z9C01"
    again = coord_client.post(CASES, json={"person": person}, headers=lead(issuer))
    assert again.status_code == 409
    # Only the lead decides; a person not aligned with the team is not the team's.
    refused = coord_client.post(CASES, json={"person": person}, headers=coordinator(issuer))
    assert refused.status_code == 403
    unknown = coord_client.post(CASES, json={"person": "Person/nobody"}, headers=lead(issuer))
    assert unknown.status_code == 404
    # The coordinator now has a legitimate relationship (care manager): the record opens.
    everything = coord_client.get(
        f"/fhir/Patient/{team_world['gp']}/$everything", headers=coordinator(issuer)
    )
    assert everything.status_code == 200
    assert everything.json()["total"] > 1


def test_the_lead_may_choose_another_coordinator_and_a_handover_task_follows(
    team_world: dict[str, str], coord_client: TestClient, issuer: DevelopmentIssuer
) -> None:
    person = team_world["Adaeze Okafor"]
    chosen = coord_client.post(
        CASES, json={"person": person, "coordinator": "Practitioner/coord-1"}, headers=lead(issuer)
    ).json()
    assert chosen["coordinator"] == "Practitioner/coord-1"
    assert chosen["reason"]["chosenBy"] == "team lead"
    not_in_team = coord_client.post(
        f"/coordination/cases/{chosen['id']}/assign",
        json={"coordinator": "Practitioner/coord-9"},
        headers=lead(issuer),
    )
    assert not_in_team.status_code == 422
    handed = coord_client.post(
        f"/coordination/cases/{chosen['id']}/assign",
        json={"coordinator": "Practitioner/coord-2"},
        headers=lead(issuer),
    )
    assert handed.status_code == 200
    assert handed.json()["coordinator"] == "Practitioner/coord-2"
    work = coord_client.get("/coordination/worklist", headers=coordinator(issuer)).json()
    (entry,) = work["entries"]
    assert entry["openTasks"] == 1
    tasks = coord_client.get(
        f"/fhir/Task?patient=Patient/{team_world['gp']}", headers=coordinator(issuer)
    ).json()
    (task,) = [e["resource"] for e in tasks["entry"]]
    assert task["code"]["coding"][0]["code"] == "handover"
    assert task["owner"] == {"reference": "Practitioner/coord-2"}
    assert (
        coord_client.get("/coordination/worklist", headers=coordinator(issuer, "coord-1")).json()[
            "entries"
        ]
        == []
    )


def test_a_full_team_queues_people_by_need(
    team_world: dict[str, str], coord_client: TestClient, issuer: DevelopmentIssuer
) -> None:
    admin = staff(issuer, "admin-1", role="R8008")
    tiny = {
        **TEAM,
        "members": [
            TEAM["members"][0],
            {"practitioner": "coord-2", "discipline": "nursing", "capacity": 0},
        ],
    }
    assert (
        coord_client.put("/coordination/teams/int-a", json=tiny, headers=admin).status_code == 200
    )
    person = team_world["Adaeze Okafor"]
    queued = coord_client.post(CASES, json={"person": person}, headers=lead(issuer)).json()
    assert (queued["status"], queued["coordinator"]) == ("waiting", None)
    assert coord_client.get(f"/fhir/{queued['episodeOfCare']}").json()["status"] == "waitlist"
    offers = coord_client.get(
        "/coordination/teams/int-a/offers", headers=lead(issuer, "CASEFIND")
    ).json()
    assert offers["offers"][0]["case"] == queued["episodeOfCare"]
    assert offers["offers"][0]["waiting"] is True
    # Room appears: confirming the proposal gives them the coordinator.
    roomy = {
        **tiny,
        "members": [
            TEAM["members"][0],
            {"practitioner": "coord-2", "discipline": "nursing", "capacity": 5},
        ],
    }
    assert (
        coord_client.put("/coordination/teams/int-a", json=roomy, headers=admin).status_code == 200
    )
    confirmed = coord_client.post(
        f"/coordination/cases/{queued['id']}/assign", json={}, headers=lead(issuer)
    )
    assert confirmed.json()["status"] == "active"
    assert confirmed.json()["coordinator"] == "Practitioner/coord-2"


def test_any_clinician_with_a_relationship_may_refer(
    team_world: dict[str, str], coord_client: TestClient, issuer: DevelopmentIssuer
) -> None:
    gp = staff(issuer, "gp-Z90002-0", org="Z90002", role="R8000")
    referral = {
        "patient": f"Patient/{team_world['other']}",
        "reason": "Struggling at home after a fall",
    }
    made = coord_client.post("/coordination/referrals", json=referral, headers=gp)
    assert made.status_code == 201, made.text
    case = made.json()
    assert (case["status"], case["route"]) == ("referred", "referral")
    request_ref = case["reason"]["referral"]
    service_request = coord_client.get(f"/fhir/{request_ref}").json()
    assert service_request["requester"] == {"reference": "Practitioner/gp-Z90002-0"}
    assert service_request["meta"]["source"] == "urn:carejoin:source:Z90002"
    assert (
        coord_client.post("/coordination/referrals", json=referral, headers=gp).status_code == 409
    )
    # A hospital doctor with no relationship cannot see the person, so cannot refer them.
    doctor = staff(issuer, "hosp-doctor-1", org="Z9H", role="R8000")
    assert (
        coord_client.post("/coordination/referrals", json=referral, headers=doctor).status_code
        == 404
    )
    # The lead sees the referral first; confirming gives it a coordinator.
    offers = coord_client.get(
        "/coordination/teams/int-a/offers", headers=lead(issuer, "CASEFIND")
    ).json()
    assert offers["offers"][0]["case"] == case["episodeOfCare"]
    assert offers["offers"][0]["route"] == "referral"
    bad = coord_client.post("/coordination/referrals", json={"patient": "Patient/x"}, headers=gp)
    assert bad.status_code == 400


def _send(client: TestClient, raw: str) -> None:
    response = client.post("/feeds/hl7v2", content=raw.encode(), headers=HL7)
    assert response.status_code == 200, response.text
    assert response.headers["X-HL7-Ack"] == "AA", response.text


def _tasks(connection: Connection) -> list[TaskRow]:
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        return list(session.scalars(select(TaskRow).order_by(TaskRow.created_at)))


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M")


def test_admission_and_discharge_alert_the_coordinator_once_and_cancellations_withdraw(
    team_world: dict[str, str],
    coord_client: TestClient,
    coord_app: FastAPI,
    connection: Connection,
    issuer: DevelopmentIssuer,
) -> None:
    person = team_world["Adaeze Okafor"]
    coord_client.post(CASES, json={"person": person}, headers=lead(issuer))
    admitted = datetime.now(UTC) - timedelta(hours=3)
    _send(coord_client, adt("A01", "MSG-1", admitted=_stamp(admitted)))
    _send(coord_client, adt("A01", "MSG-1", admitted=_stamp(admitted)))  # resent: once
    dispatch(coord_app, connection)
    dispatch(coord_app, connection)
    (task,) = _tasks(connection)
    assert (task.code, task.owner, task.status) == ("admission", "coord-2", "requested")
    alerts = coord_client.get("/fhir/Communication?category=alert").json()
    assert alerts["total"] == 1
    assert alerts["entry"][0]["resource"]["recipient"] == [
        {"reference": "Practitioner/coord-2"},
        {"reference": "Organization/int-a"},
    ]
    work = coord_client.get("/coordination/worklist", headers=coordinator(issuer)).json()
    assert "admitted" in work["entries"][0]["flags"]
    assert work["counts"]["admitted"] == 1

    discharged = datetime.now(UTC) - timedelta(minutes=30)
    _send(
        coord_client, adt("A03", "MSG-2", admitted=_stamp(admitted), discharged=_stamp(discharged))
    )
    dispatch(coord_app, connection)
    follow_up = [t for t in _tasks(connection) if t.code == "discharge-follow-up"]
    assert len(follow_up) == 1
    assert follow_up[0].due == follow_up_due(discharged)
    work = coord_client.get(
        "/coordination/worklist?flag=discharged", headers=coordinator(issuer)
    ).json()
    assert len(work["entries"]) == 1
    assert "admitted" not in work["entries"][0]["flags"]

    # A13: the discharge is cancelled; the follow-up is withdrawn, the person is in again.
    _send(coord_client, adt("A13", "MSG-3", admitted=_stamp(admitted)))
    dispatch(coord_app, connection)
    states = {t.code: t.status for t in _tasks(connection)}
    assert states == {"admission": "requested", "discharge-follow-up": "cancelled"}
    work = coord_client.get("/coordination/worklist", headers=coordinator(issuer)).json()
    assert "admitted" in work["entries"][0]["flags"]

    # A11: the admission itself is cancelled; what it raised is withdrawn.
    _send(coord_client, adt("A11", "MSG-4", admitted=_stamp(admitted)))
    dispatch(coord_app, connection)
    assert {t.status for t in _tasks(connection)} == {"cancelled"}
    work = coord_client.get("/coordination/worklist", headers=coordinator(issuer)).json()
    assert "admitted" not in work["entries"][0]["flags"]
    fhir_task = coord_client.get(f"/fhir/Task/{_tasks(connection)[0].task_id}").json()
    assert fhir_task["status"] == "cancelled"


def test_old_stays_and_people_not_on_a_caseload_raise_nothing(
    team_world: dict[str, str], coord_client: TestClient, coord_app: FastAPI, connection: Connection
) -> None:
    _send(coord_client, adt("A01", "MSG-9", admitted=_stamp(datetime.now(UTC))))
    dispatch(coord_app, connection)
    assert _tasks(connection) == []  # not on a caseload


def test_the_worklist_flags_filters_and_permissions(
    team_world: dict[str, str],
    coord_client: TestClient,
    issuer: DevelopmentIssuer,
    connection: Connection,
) -> None:
    person = team_world["Adaeze Okafor"]
    case = coord_client.post(CASES, json={"person": person}, headers=lead(issuer)).json()
    work = coord_client.get("/coordination/worklist", headers=coordinator(issuer)).json()
    (entry,) = work["entries"]
    assert entry["name"] == "Adaeze Okafor"
    assert entry["hfrsBand"] == "intermediate"
    assert entry["flags"] == ["no-care-plan"]
    assert work["counts"]["people"] == 1
    assert work["counts"]["no-care-plan"] == 1
    overdue = coord_client.post(
        f"/coordination/cases/{case['id']}/review",
        json={"reviewDue": (date.today() - timedelta(days=1)).isoformat()},
        headers=coordinator(issuer),
    )
    assert overdue.status_code == 200
    flagged = coord_client.get(
        "/coordination/worklist?flag=review-overdue", headers=coordinator(issuer)
    ).json()
    assert [e["name"] for e in flagged["entries"]] == ["Adaeze Okafor"]
    none = coord_client.get(
        "/coordination/worklist?flag=admitted", headers=coordinator(issuer)
    ).json()
    assert none["entries"] == []
    assert none["counts"]["review-overdue"] == 1
    assert (
        coord_client.get(
            "/coordination/worklist?flag=sleepy", headers=coordinator(issuer)
        ).status_code
        == 400
    )
    other = "/coordination/worklist?coordinator=Practitioner/coord-2"
    assert coord_client.get(other, headers=coordinator(issuer, "coord-1")).status_code == 403
    assert coord_client.get(other, headers=lead(issuer)).status_code == 200
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        audited = session.scalars(
            select(AuditEventRow.person).where(AuditEventRow.interaction == "worklist")
        ).all()
    # One event per person listed; an empty list is audited without a person.
    assert set(audited) == {person, None}


def test_a_care_plan_by_another_organisation_notifies_the_coordinator(
    team_world: dict[str, str],
    coord_client: TestClient,
    coord_app: FastAPI,
    connection: Connection,
    issuer: DevelopmentIssuer,
) -> None:
    person = team_world["Adaeze Okafor"]
    coord_client.post(CASES, json={"person": person}, headers=lead(issuer))
    plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{team_world['gp']}"},
        "title": "Falls prevention",
    }
    write(coord_client, plan, "Z90001")
    dispatch(coord_app, connection)
    alerts = coord_client.get("/fhir/Communication?category=alert").json()
    assert alerts["total"] == 1
    assert "Z90001" in alerts["entry"][0]["resource"]["payload"][0]["contentString"]
    # The GP's own plan is not the shared care plan.
    work = coord_client.get("/coordination/worklist", headers=coordinator(issuer)).json()
    assert "no-care-plan" in work["entries"][0]["flags"]


def test_the_shared_care_plan_is_versioned_with_if_match_and_provenance(
    team_world: dict[str, str],
    coord_client: TestClient,
    coord_app: FastAPI,
    connection: Connection,
    issuer: DevelopmentIssuer,
) -> None:
    person = team_world["Adaeze Okafor"]
    case = coord_client.post(CASES, json={"person": person}, headers=lead(issuer)).json()
    url = f"/coordination/cases/{case['id']}/care-plan"
    body = {
        "title": "Staying well at home",
        "reviewDate": (date.today() + timedelta(days=60)).isoformat(),
    }
    assert (
        coord_client.post(url, json=body, headers=coordinator(issuer, "coord-1")).status_code == 403
    )
    created = coord_client.post(url, json=body, headers=coordinator(issuer))
    assert created.status_code == 201, created.text
    assert created.headers["ETag"] == 'W/"1"'
    plan = created.json()
    assert plan["author"] == {"reference": "Organization/int-a"}
    assert plan["meta"]["source"] == "urn:carejoin:source:Z9C01"
    assert coord_client.post(url, json=body, headers=coordinator(issuer)).status_code == 409
    work = coord_client.get("/coordination/worklist", headers=coordinator(issuer)).json()
    assert "no-care-plan" not in work["entries"][0]["flags"]
    assert work["entries"][0]["reviewDue"] == body["reviewDate"]

    change_url = f"/coordination/care-plans/{plan['id']}"
    change = {"description": "Walking aid, key safe, daughter visits daily"}
    assert (
        coord_client.patch(change_url, json=change, headers=coordinator(issuer)).status_code == 428
    )
    stale = coord_client.patch(
        change_url, json=change, headers={**coordinator(issuer), "If-Match": 'W/"7"'}
    )
    assert stale.status_code == 412
    revised = coord_client.patch(
        change_url, json=change, headers={**coordinator(issuer), "If-Match": 'W/"1"'}
    )
    assert revised.status_code == 200
    assert revised.headers["ETag"] == 'W/"2"'
    assert revised.json()["description"] == change["description"]
    assert (
        coord_client.patch(
            change_url,
            json={"status": "asleep"},
            headers={**coordinator(issuer), "If-Match": 'W/"2"'},
        ).status_code
        == 422
    )

    # The GP practice contributes its own Goal, under its own source.
    gp = staff(issuer, "gp-Z90001-0", org="Z90001", role="R8000")
    goal = {
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "description": {"text": "Walk to the shop twice a week"},
        "subject": {"reference": f"Patient/{team_world['gp']}"},
    }
    goal_id = write(coord_client, goal, "Z90001")
    contribute = f"/coordination/care-plans/{plan['id']}/contributions"
    added = coord_client.post(
        contribute, json={"reference": f"Goal/{goal_id}"}, headers={**gp, "If-Match": 'W/"2"'}
    )
    assert added.status_code == 200, added.text
    assert added.json()["goal"] == [{"reference": f"Goal/{goal_id}"}]
    # Not the caller's own record, or not about this person: refused.
    other_goal = write(
        coord_client, {**goal, "subject": {"reference": f"Patient/{team_world['other']}"}}, "Z90002"
    )
    assert (
        coord_client.post(
            contribute,
            json={"reference": f"Goal/{other_goal}"},
            headers={**gp, "If-Match": 'W/"3"'},
        ).status_code
        == 404
    )
    theirs = write(
        coord_client, {**goal, "subject": {"reference": f"Patient/{team_world['other']}"}}, "Z90001"
    )
    assert (
        coord_client.post(
            contribute, json={"reference": f"Goal/{theirs}"}, headers={**gp, "If-Match": 'W/"3"'}
        ).status_code
        == 422
    )

    history = coord_client.get(f"/fhir/CarePlan/{plan['id']}/_history").json()
    assert len(history["entry"]) == 3
    found = coord_client.get(f"/fhir/Provenance?target=CarePlan/{plan['id']}&_count=50").json()
    by_version = {
        e["resource"]["target"][0]["reference"].rsplit("/", 1)[-1]: e["resource"]
        for e in found["entry"]
    }
    assert set(by_version) == {"1", "2", "3"}  # every version has its Provenance
    assert by_version["1"]["agent"][0]["who"] == {"reference": "Practitioner/coord-2"}
    latest = by_version["3"]
    assert latest["agent"][0]["who"] == {"reference": "Practitioner/gp-Z90001-0"}
    assert latest["agent"][0]["onBehalfOf"]["identifier"]["value"] == "Z90001"
    dispatch(coord_app, connection)
    alerts = coord_client.get("/fhir/Communication?category=alert").json()
    assert any(
        "Z90001 added" in e["resource"]["payload"][0]["contentString"] for e in alerts["entry"]
    )


def test_follow_ups_are_due_two_working_days_after_discharge_in_england() -> None:
    # Christmas 2026: Friday 25th, the weekend, Boxing Day observed on Monday 28th.
    assert working_days_after(date(2026, 12, 24), 2) == date(2026, 12, 30)
    assert working_days_after(date(2026, 11, 27), 2) == date(2026, 12, 1)  # Friday
    assert working_days_after(date(2026, 11, 24), 2) == date(2026, 11, 26)
    # Discharged at 23:30 UTC on 30 June is 00:30 on 1 July in England.
    assert follow_up_due(datetime(2026, 6, 30, 23, 30, tzinfo=UTC)) == date(2026, 7, 3)


def test_tasks_follow_the_workflow_and_the_pool_can_be_claimed(
    team_world: dict[str, str], coord_client: TestClient, issuer: DevelopmentIssuer
) -> None:
    person = team_world["Adaeze Okafor"]
    coord_client.post(CASES, json={"person": person}, headers=lead(issuer))
    pooled = coord_client.post(
        "/coordination/tasks",
        json={
            "person": person,
            "description": "Arrange a key safe",
            "due": date.today().isoformat(),
        },
        headers=coordinator(issuer, "coord-1"),
    )
    assert pooled.status_code == 201, pooled.text
    task = pooled.json()
    assert task["owner"] is None
    assert task["status"] == "requested"
    pool = coord_client.get(
        "/coordination/teams/int-a/tasks?owner=none", headers=coordinator(issuer)
    ).json()
    assert [t["task"] for t in pool["tasks"]] == [task["task"]]
    task_id = task["task"].removeprefix("Task/")
    claimed = coord_client.post(f"/coordination/tasks/{task_id}/claim", headers=coordinator(issuer))
    assert claimed.json()["owner"] == "Practitioner/coord-2"
    assert (
        coord_client.post(
            f"/coordination/tasks/{task_id}/claim", headers=coordinator(issuer, "coord-1")
        ).status_code
        == 409
    )
    work = coord_client.get("/coordination/worklist", headers=coordinator(issuer)).json()
    assert "tasks-due" in work["entries"][0]["flags"]
    # Someone else's task: only its owner or the lead moves it on.
    step = {"status": "accepted"}
    assert (
        coord_client.post(
            f"/coordination/tasks/{task_id}/status",
            json=step,
            headers=coordinator(issuer, "coord-1"),
        ).status_code
        == 403
    )
    for status in ("accepted", "in-progress", "completed"):
        moved = coord_client.post(
            f"/coordination/tasks/{task_id}/status",
            json={"status": status},
            headers=coordinator(issuer),
        )
        assert moved.status_code == 200
        assert moved.json()["status"] == status
    backwards = coord_client.post(
        f"/coordination/tasks/{task_id}/status",
        json={"status": "in-progress"},
        headers=coordinator(issuer),
    )
    assert backwards.status_code == 409
    assert coord_client.get(f"/fhir/{task['task']}").json()["status"] == "completed"
    work = coord_client.get("/coordination/worklist", headers=coordinator(issuer)).json()
    assert "tasks-due" not in work["entries"][0]["flags"]
    # Nobody outside the team sees or creates the team's tasks.
    outsider = staff(issuer, "coord-9")
    assert coord_client.get("/coordination/teams/int-a/tasks", headers=outsider).status_code == 404
    made = coord_client.post(
        "/coordination/tasks", json={"person": person, "description": "Hello"}, headers=outsider
    )
    assert made.status_code == 404
    bad_kind = coord_client.post(
        "/coordination/tasks",
        json={"person": person, "description": "x y z", "kind": "party"},
        headers=coordinator(issuer),
    )
    assert bad_kind.status_code == 400


def test_a_task_updated_through_the_fhir_api_moves_the_worklist(
    team_world: dict[str, str],
    coord_client: TestClient,
    coord_app: FastAPI,
    connection: Connection,
    issuer: DevelopmentIssuer,
) -> None:
    person = team_world["Adaeze Okafor"]
    coord_client.post(CASES, json={"person": person}, headers=lead(issuer))
    made = coord_client.post(
        "/coordination/tasks",
        json={
            "person": person,
            "description": "Phone the daughter",
            "owner": "Practitioner/coord-2",
            "due": (date.today() - timedelta(days=2)).isoformat(),
        },
        headers=coordinator(issuer),
    ).json()
    work = coord_client.get("/coordination/worklist", headers=coordinator(issuer)).json()
    assert "tasks-overdue" in work["entries"][0]["flags"]
    fhir_task = coord_client.get(f"/fhir/{made['task']}").json()
    fhir_task["status"] = "completed"
    # The system client writes as the team's host would (its record).
    assert coord_client.put(f"/fhir/{made['task']}", json=fhir_task).status_code == 200
    dispatch(coord_app, connection)
    work = coord_client.get("/coordination/worklist", headers=coordinator(issuer)).json()
    assert "tasks-overdue" not in work["entries"][0]["flags"]


def _month_of(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo("Europe/London")).strftime("%Y-%m")


def test_outcomes_per_team_and_practice_with_small_numbers_suppressed(
    team_world: dict[str, str],
    coord_client: TestClient,
    coord_app: FastAPI,
    connection: Connection,
    issuer: DevelopmentIssuer,
) -> None:
    person = team_world["Adaeze Okafor"]
    case = coord_client.post(CASES, json={"person": person}, headers=lead(issuer)).json()
    coord_client.post(
        f"/coordination/cases/{case['id']}/care-plan",
        json={"title": "Staying well at home"},
        headers=coordinator(issuer),
    )
    discharged = datetime.now(UTC) - timedelta(minutes=10)
    admitted = discharged - timedelta(hours=26)
    if _month_of(admitted) != _month_of(discharged):
        admitted = discharged - timedelta(minutes=1)
    _send(coord_client, adt("A01", "OUT-1", admitted=_stamp(admitted)))
    _send(
        coord_client, adt("A03", "OUT-2", admitted=_stamp(admitted), discharged=_stamp(discharged))
    )
    dispatch(coord_app, connection)
    (follow_up,) = [t for t in _tasks(connection) if t.code == "discharge-follow-up"]
    done = coord_client.post(
        f"/coordination/tasks/{follow_up.task_id}/status",
        json={"status": "completed"},
        headers=coordinator(issuer),
    )
    assert done.status_code == 200
    month = _month_of(discharged)
    staff_member = staff(issuer, "coord-1", scope="user/*.rs")

    # Default threshold (5): every count here is below it, so nothing small is shown.
    bundle = coord_client.get(
        f"/coordination/outcomes?month={month}&team=int-a", headers=staff_member
    )
    assert bundle.status_code == 200, bundle.text
    reports = [e["resource"] for e in bundle.json()["entry"]]
    assert [r["subject"] for r in reports] == [
        {"reference": "Organization/int-a"},
        {
            "identifier": {
                "system": "https://fhir.nhs.uk/Id/ods-organization-code",
                "value": "Z90001",
            }
        },
        {
            "identifier": {
                "system": "https://fhir.nhs.uk/Id/ods-organization-code",
                "value": "Z90002",
            }
        },
    ]
    team = {g["code"]["coding"][0]["code"]: g for g in reports[0]["group"]}
    assert team["people_on_caseloads"]["extension"][0]["valueCode"] == "masked"
    assert "measureScore" not in team["people_on_caseloads"]
    assert team["caseload_capacity"]["measureScore"]["value"] == 180
    csv_text = coord_client.get(
        f"/coordination/outcomes?month={month}&team=int-a&_format=csv", headers=staff_member
    ).text
    assert f"{month},int-a,,people_on_caseloads,,yes" in csv_text.splitlines()

    # A threshold of 1 shows the figures themselves.
    coord_app.state.coordination_settings = CoordinationSettings(suppression_threshold=1)
    reports = [
        e["resource"]
        for e in coord_client.get(
            f"/coordination/outcomes?month={month}&team=int-a", headers=staff_member
        ).json()["entry"]
    ]
    team = {
        g["code"]["coding"][0]["code"]: g["measureScore"]["value"]
        for g in reports[0]["group"]
        if "measureScore" in g
    }
    assert team["people_on_caseloads"] == 1
    assert team["care_plan_percent"] == 100
    assert team["follow_ups_due"] == 1
    assert team["follow_ups_on_time_percent"] == 100
    assert team["registered_65_plus"] == 2
    assert team["emergency_admissions_per_1000"] == 500
    assert team["average_length_of_stay_days"] == pytest.approx(
        round((discharged - admitted).total_seconds() / 86400, 2), abs=0.02
    )
    z90002 = {
        g["code"]["coding"][0]["code"]: g.get("measureScore", {}).get("value")
        for g in reports[2]["group"]
    }
    assert z90002["registered_65_plus"] == 1
    assert z90002["emergency_admissions_per_1000"] == 0

    assert (
        coord_client.get("/coordination/outcomes?month=2026-13", headers=staff_member).status_code
        == 400
    )
    assert (
        coord_client.get("/coordination/outcomes?month=soon", headers=staff_member).status_code
        == 400
    )
    assert (
        coord_client.get(
            f"/coordination/outcomes?month={month}&team=nope", headers=staff_member
        ).status_code
        == 404
    )
    assert coord_client.get(f"/coordination/outcomes?month={month}").status_code == 403  # a system


ANSWERS = {
    "what-matters": "Staying in my own home with my cat",
    "living": "alone",
    "carer": True,
    "carer-details": "Daughter visits daily",
    "mobility": "some-help",
    "falls": 2,
    "personal-care": "some-help",
    "goals": "Walk to the shop twice a week",
}


def test_one_unified_assessment_is_shared_not_repeated(
    team_world: dict[str, str], coord_client: TestClient, issuer: DevelopmentIssuer
) -> None:
    person = team_world["Adaeze Okafor"]
    coord_client.post(CASES, json={"person": person}, headers=lead(issuer))
    gp = staff(issuer, "gp-Z90001-0", org="Z90001", role="R8000")
    patient = f"Patient/{team_world['gp']}"
    bad = [
        ({**ANSWERS, "shoe-size": 6}, "shoe-size"),
        ({k: v for k, v in ANSWERS.items() if k != "goals"}, "goals"),
        ({**ANSWERS, "mobility": "flying"}, "mobility"),
        ({**ANSWERS, "falls": -1}, "falls"),
        ({**ANSWERS, "carer": "sometimes"}, "carer"),
    ]
    for answers, item in bad:
        refused = coord_client.post(
            "/coordination/assessments", json={"patient": patient, "answers": answers}, headers=gp
        )
        assert refused.status_code == 422, answers
        assert item in refused.json()["issue"][0]["diagnostics"]
    made = coord_client.post(
        "/coordination/assessments", json={"patient": patient, "answers": ANSWERS}, headers=gp
    )
    assert made.status_code == 201, made.text
    response = made.json()
    assert response["meta"]["source"] == "urn:carejoin:source:Z90001"
    assert response["questionnaire"].startswith(
        "https://fhir.carejoin.example/Questionnaire/unified-assessment|"
    )
    answered = {i["linkId"]: i["answer"][0] for i in response["item"]}
    assert answered["mobility"]["valueCoding"]["code"] == "some-help"
    assert answered["falls"] == {"valueInteger": 2}
    assert coord_client.get("/fhir/Questionnaire/unified-assessment").status_code == 200

    # The coordinator (council) sees the GP's assessment and is not asked to repeat it.
    again = coord_client.post(
        "/coordination/assessments",
        json={"patient": patient, "answers": ANSWERS},
        headers=coordinator(issuer),
    )
    assert again.status_code == 409
    assert response["id"] in again.json()["issue"][0]["diagnostics"]
    no_reason = coord_client.post(
        "/coordination/assessments",
        json={"patient": patient, "answers": ANSWERS, "reassess": True},
        headers=coordinator(issuer),
    )
    assert no_reason.status_code == 422
    reassessed = coord_client.post(
        "/coordination/assessments",
        json={
            "patient": patient,
            "answers": {**ANSWERS, "mobility": "full-help"},
            "reassess": True,
            "reason": "Fell again; now needs two to transfer",
        },
        headers=coordinator(issuer),
    )
    assert reassessed.status_code == 201
    listed = coord_client.get(f"/coordination/assessments?patient={patient}", headers=gp).json()
    assert [a["id"] for a in listed["assessments"]][1] == response["id"]
    assert len(listed["assessments"]) == 2
    # No relationship, no assessment: as if the person did not exist.
    doctor = staff(issuer, "hosp-doctor-1", org="Z9H", role="R8000")
    hidden = coord_client.get(f"/coordination/assessments?patient={patient}", headers=doctor)
    assert hidden.status_code == 404


def test_undoing_a_wrong_link_withdraws_what_it_raised(
    team_world: dict[str, str],
    coord_client: TestClient,
    coord_app: FastAPI,
    connection: Connection,
    issuer: DevelopmentIssuer,
) -> None:
    person = team_world["Adaeze Okafor"]
    coord_client.post(CASES, json={"person": person}, headers=lead(issuer))
    _send(coord_client, adt("A01", "LINK-1", admitted=_stamp(datetime.now(UTC))))
    dispatch(coord_app, connection)
    (task,) = _tasks(connection)
    assert task.status == "requested"
    found = coord_client.get(
        "/fhir/Patient?identifier=https://fhir.carejoin.example/Id/Z9H/mrn|RH0000123"
    ).json()
    (pas_patient,) = [e["resource"]["id"] for e in found["entry"]]

    steward = staff(issuer, "steward-1", org="Z9H", role="R8008")
    unlinked = coord_client.post(
        "/identity/unlink",
        json={"patient": f"Patient/{pas_patient}", "reason": "Not the same person"},
        headers=steward,
    )
    assert unlinked.status_code == 200, unlinked.text
    dispatch(coord_app, connection)
    (task,) = _tasks(connection)
    assert task.status == "cancelled"
    fhir_task = coord_client.get(f"/fhir/Task/{task.task_id}").json()
    assert "undone" in fhir_task["statusReason"]["text"]
    alerts = coord_client.get("/fhir/Communication?category=alert").json()
    assert [e["resource"]["status"] for e in alerts["entry"]] == ["entered-in-error"]
    work = coord_client.get("/coordination/worklist", headers=coordinator(issuer)).json()
    assert "admitted" not in work["entries"][0]["flags"]


@pytest.mark.parametrize(
    ("path", "resource_type"),
    [
        ("/coordination/teams", "Organization"),
        ("/coordination/teams/int-a", "Organization"),
        ("/coordination/teams/int-a/tasks", "Task"),
        ("/coordination/outcomes?month=2026-11", "MeasureReport"),
    ],
)
def test_coordination_reads_refuse_a_narrowed_scope_they_cannot_apply(
    coord_client: TestClient,
    issuer: DevelopmentIssuer,
    team_world: dict[str, str],
    path: str,
    resource_type: str,
) -> None:
    # These read outside the consent predicate, so a scope narrowed by search parameters
    # (SMART v2) could not be honoured: refused rather than read whole.
    narrowed = staff(issuer, "coord-2", scope=f"user/{resource_type}.rs?status=active")
    refused = coord_client.get(path, headers=narrowed)
    assert refused.status_code == 403, refused.text
    assert "narrowed" in refused.json()["issue"][0]["diagnostics"]
    whole = staff(issuer, "coord-2", scope=f"user/{resource_type}.rs")
    assert coord_client.get(path, headers=whole).status_code == 200

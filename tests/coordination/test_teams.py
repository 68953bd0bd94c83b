"""Teams over HTTP on both databases: who may set them up, what is stored, bad input."""

from fastapi.testclient import TestClient
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from fhir_gateway.audit.models import AuditEventRow
from fhir_gateway.auth.issuer import DevelopmentIssuer
from tests.coordination.conftest import TEAM, staff


def _admin(issuer: DevelopmentIssuer) -> dict[str, str]:
    return staff(issuer, "admin-1", role="R8008")


def test_an_administrator_of_the_host_sets_up_a_team_published_as_fhir(
    coord_client: TestClient, issuer: DevelopmentIssuer, connection: Connection
) -> None:
    created = coord_client.put("/coordination/teams/int-a", json=TEAM, headers=_admin(issuer))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["practices"] == ["Z90001", "Z90002"]
    capacities = {m["practitioner"]: m["capacity"] for m in body["members"]}
    # Full time: 120; half time pro rata; a lead carries no caseload unless given one.
    assert capacities == {
        "Practitioner/coord-1": 120,
        "Practitioner/coord-2": 60,
        "Practitioner/lead-1": 0,
    }

    organization = coord_client.get("/fhir/Organization/int-a").json()
    assert organization["type"][0]["coding"][0]["code"] == "team"
    assert organization["partOf"]["identifier"]["value"] == "Z9C01"
    assert organization["meta"]["source"] == "urn:carejoin:source:Z9C01"
    aligned = [e["valueReference"]["identifier"]["value"] for e in organization["extension"]]
    assert aligned == ["Z90001", "Z90002"]
    role = coord_client.get("/fhir/PractitionerRole/int-a.coord-2").json()
    assert role["specialty"][0]["coding"][0]["code"] == "nursing"
    assert role["organization"]["reference"] == "Organization/int-a"
    found = coord_client.get("/fhir/PractitionerRole?organization=Organization/int-a").json()
    assert found["total"] == 3

    listed = coord_client.get("/coordination/teams", headers=_admin(issuer)).json()
    assert [t["id"] for t in listed["teams"]] == ["int-a"]
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        audited = session.scalars(
            select(AuditEventRow).where(AuditEventRow.interaction == "team")
        ).all()
    assert [(a.agent, a.organisation, a.action) for a in audited] == [
        ("Practitioner/admin-1", "Z9C01", "C")
    ]


def test_a_member_who_leaves_keeps_an_inactive_role_and_replacing_is_idempotent(
    coord_client: TestClient, issuer: DevelopmentIssuer
) -> None:
    assert (
        coord_client.put("/coordination/teams/int-a", json=TEAM, headers=_admin(issuer)).status_code
        == 201
    )
    again = coord_client.put("/coordination/teams/int-a", json=TEAM, headers=_admin(issuer))
    assert again.status_code == 200
    assert coord_client.get("/fhir/Organization/int-a").json()["meta"]["versionId"] == "1"

    smaller = {**TEAM, "members": TEAM["members"][:2]}
    assert (
        coord_client.put(
            "/coordination/teams/int-a", json=smaller, headers=_admin(issuer)
        ).status_code
        == 200
    )
    role = coord_client.get("/fhir/PractitionerRole/int-a.coord-2").json()
    assert role["active"] is False
    team = coord_client.get("/coordination/teams/int-a", headers=_admin(issuer)).json()
    assert [m["practitioner"] for m in team["members"]] == [
        "Practitioner/coord-1",
        "Practitioner/lead-1",
    ]


def test_only_an_administrator_of_the_host_organisation_may_set_up_its_teams(
    coord_client: TestClient, issuer: DevelopmentIssuer
) -> None:
    coordinator = staff(issuer, "coord-1")
    other_admin = staff(issuer, "admin-9", org="Z9H", role="R8008")
    for headers in (coordinator, other_admin):
        refused = coord_client.put("/coordination/teams/int-a", json=TEAM, headers=headers)
        assert refused.status_code == 403
        assert refused.json()["resourceType"] == "OperationOutcome"
    assert coord_client.get("/fhir/Organization/int-a").status_code == 404
    assert coord_client.get("/coordination/teams/int-a", headers=coordinator).status_code == 404


def test_a_practice_is_aligned_with_one_team_only(
    coord_client: TestClient, issuer: DevelopmentIssuer
) -> None:
    assert (
        coord_client.put("/coordination/teams/int-a", json=TEAM, headers=_admin(issuer)).status_code
        == 201
    )
    clash = {**TEAM, "name": "Another team", "practices": ["Z90002", "Z90003"], "members": []}
    refused = coord_client.put("/coordination/teams/int-b", json=clash, headers=_admin(issuer))
    assert refused.status_code == 409
    assert "Z90002" in refused.json()["issue"][0]["diagnostics"]
    # Nothing of the refused team was written.
    assert coord_client.get("/fhir/Organization/int-b").status_code == 404
    assert coord_client.get("/coordination/teams/int-b", headers=_admin(issuer)).status_code == 404


def test_bad_team_documents_get_an_operation_outcome(
    coord_client: TestClient, issuer: DevelopmentIssuer
) -> None:
    bad = [
        {**TEAM, "practices": ["not an ods code"]},
        {**TEAM, "practices": ["Z90001", "Z90001"]},
        {**TEAM, "members": [{"practitioner": "coord-1", "discipline": "astrology"}]},
        {**TEAM, "members": [{"practitioner": "coord-1", "discipline": "nursing", "capacity": -1}]},
        {**TEAM, "members": [TEAM["members"][1], TEAM["members"][1]]},
        {**TEAM, "colour": "blue"},
        {"name": "No host"},
    ]
    for body in bad:
        response = coord_client.put("/coordination/teams/int-a", json=body, headers=_admin(issuer))
        assert response.status_code == 400, body
        assert response.json()["resourceType"] == "OperationOutcome"
    odd_id = coord_client.put("/coordination/teams/a b", json=TEAM, headers=_admin(issuer))
    assert odd_id.status_code == 400
    assert coord_client.get("/fhir/Organization/int-a").status_code == 404

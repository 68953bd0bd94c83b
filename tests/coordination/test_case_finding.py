"""Case-finding on both databases: scores from the joined-up record, refreshed as records
arrive, the team's ranked list under the purpose CASEFIND, audited, objections respected,
sensitive facts left out."""

from datetime import UTC, date, datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from coordination.case_finding import service
from coordination.case_finding.models import CaseFindingRow
from coordination.settings import CoordinationSettings
from fhir_gateway.access.service import AgreementStore
from fhir_gateway.audit.models import AuditEventRow
from fhir_gateway.auth.issuer import DevelopmentIssuer
from tests.coordination import world
from tests.coordination.conftest import TEAM, dispatch, staff, write
from tests.factories import fhir

NHS_FRAIL = "9990001234"
NHS_YOUNG = "9990012345"


def _rows(connection: Connection) -> dict[str, CaseFindingRow]:
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        rows = session.scalars(select(CaseFindingRow)).all()
        return {row.name or "": row for row in rows}


def _team(client: TestClient, issuer: DevelopmentIssuer) -> None:
    admin = staff(issuer, "admin-1", role="R8008")
    assert client.put("/coordination/teams/int-a", json=TEAM, headers=admin).status_code == 201


@pytest.fixture
def frail(
    coord_client: TestClient, coord_app: FastAPI, connection: Connection, issuer: DevelopmentIssuer
) -> dict[str, str]:
    """An 80-year-old at Z90001 with dementia, a fall and gait problems in hospital (HFRS
    7.1 + 3.2 + 2.6 = 12.9, intermediate) and two emergency admissions this year; and a
    60-year-old at Z90002 with pneumonia (under 75: not scored for frailty)."""
    _team(coord_client, issuer)
    born = world.years_ago(80, days=30)
    gp = world.registered(
        coord_client, practice="Z90001", nhs=NHS_FRAIL, born=born, family="Ashworth"
    )
    hospital = world.hospital_patient(coord_client, nhs=NHS_FRAIL, born=born, family="Ashworth")
    ids = {"gp": gp, "hospital": hospital}
    for code in ("F00.1", "W19", "R26.8"):
        ids[code] = world.diagnosis(coord_client, hospital, code, world.days_ago(100))
    world.admission(coord_client, hospital, method="21", start=world.days_ago(200), days=6)
    world.admission(coord_client, hospital, method="21", start=world.days_ago(40), days=3)
    world.admission(coord_client, hospital, method="11", start=world.days_ago(20), days=2)
    young_born = world.years_ago(60)
    young = world.registered(
        coord_client, practice="Z90002", nhs=NHS_YOUNG, born=young_born, family="Brennan"
    )
    young_hospital = world.hospital_patient(
        coord_client, nhs=NHS_YOUNG, born=young_born, family="Brennan"
    )
    world.diagnosis(coord_client, young_hospital, "J18.9", world.days_ago(50))
    ids["young"] = young
    dispatch(coord_app, connection)
    return ids


def test_scores_come_from_the_joined_up_record_as_records_arrive(
    frail: dict[str, str], connection: Connection
) -> None:
    rows = _rows(connection)
    assert set(rows) == {"Iris Ashworth", "Iris Brennan"}
    ashworth = rows["Iris Ashworth"]
    assert (ashworth.practice, ashworth.team_id, ashworth.age) == ("Z90001", "int-a", 80)
    assert ashworth.hfrs == pytest.approx(12.9)
    assert ashworth.hfrs_band == "intermediate"
    # Emergency told by admission method: the elective stay (11) does not count.
    assert ashworth.emergency_admissions == 2
    assert ashworth.emergency_bed_days == 9
    assert ashworth.found
    assert "frail-75-plus" in ashworth.cohorts.split()
    assert "repeat-emergency-65-plus" in ashworth.cohorts.split()
    assert ashworth.patient_id == frail["gp"]

    brennan = rows["Iris Brennan"]
    assert brennan.age == 60
    assert brennan.hfrs is None
    assert brennan.hfrs_band is None
    assert not brennan.found
    assert brennan.cohorts == ""
    assert ashworth.need > brennan.need


def test_a_new_diagnosis_rescoring_the_person_when_it_arrives(
    frail: dict[str, str], coord_client: TestClient, coord_app: FastAPI, connection: Connection
) -> None:
    # Pressure ulcer (L89, 1.7): 12.9 + 1.7 = 14.6; then delirium (F05, 3.2): 17.8, high.
    world.diagnosis(coord_client, frail["hospital"], "L89.1", world.days_ago(5))
    dispatch(coord_app, connection)
    assert _rows(connection)["Iris Ashworth"].hfrs == pytest.approx(14.6)
    world.diagnosis(coord_client, frail["hospital"], "F05.9", world.days_ago(2))
    dispatch(coord_app, connection)
    row = _rows(connection)["Iris Ashworth"]
    assert row.hfrs == pytest.approx(17.8)
    assert row.hfrs_band == "high"


def test_the_batch_run_gives_the_same_results_and_drops_people_no_longer_registered(
    frail: dict[str, str], coord_app: FastAPI, connection: Connection, agreement_path: str
) -> None:
    before = {
        name: (r.hfrs, r.charlson, r.cohorts, r.need) for name, r in _rows(connection).items()
    }
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        session.add(
            CaseFindingRow(
                person_id="gone-away",
                charlson=0,
                conditions=0,
                emergency_admissions=0,
                emergency_bed_days=0,
                ae_attendances=0,
                services=0,
                cohorts="",
                found=False,
                need=0,
                explanation="{}",
                computed_at=datetime(2020, 1, 1, tzinfo=UTC),
            )
        )
        session.commit()
    factory = _factory(connection)
    agreement = AgreementStore(default_path=agreement_path).current(factory.begin)
    report = service.run(
        factory,
        agreement,
        CoordinationSettings(),
        as_of=date.today(),
        now=datetime.now(UTC),
        chunk=1,
    )
    assert (report.persons, report.found, report.removed) == (2, 1, 1)
    after = {name: (r.hfrs, r.charlson, r.cohorts, r.need) for name, r in _rows(connection).items()}
    assert after == before


def _factory(connection: Connection):  # type: ignore[no-untyped-def]
    from sqlalchemy.orm import sessionmaker

    return sessionmaker(bind=connection, join_transaction_mode="create_savepoint")


def _audits(connection: Connection, interaction: str) -> list[AuditEventRow]:
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        return list(
            session.scalars(select(AuditEventRow).where(AuditEventRow.interaction == interaction))
        )


def test_the_team_sees_its_ranked_list_with_the_reasons_and_every_view_is_audited(
    frail: dict[str, str],
    coord_client: TestClient,
    issuer: DevelopmentIssuer,
    connection: Connection,
) -> None:
    finder = staff(issuer, "coord-1", purpose="CASEFIND", scope="user/*.rs")
    response = coord_client.get("/coordination/teams/int-a/case-finding", headers=finder)
    assert response.status_code == 200, response.text
    listed = response.json()
    assert listed["total"] == 1
    (entry,) = listed["entries"]
    assert entry["name"] == "Iris Ashworth"
    assert entry["hfrs"] == {"score": 12.9, "band": "intermediate"}
    hfrs = {c["key"]: c for c in entry["contributions"]["hfrs"]}
    assert set(hfrs) == {"F00", "W19", "R26"}
    assert hfrs["F00"]["facts"][0]["organisation"] == "Z9H"
    assert hfrs["F00"]["facts"][0]["reference"] == f"Condition/{frail['F00.1']}"
    audits = _audits(connection, "case-finding")
    assert len(audits) == 1
    assert audits[0].purpose == "CASEFIND"
    assert audits[0].person == entry["person"]


def test_case_finding_is_refused_without_the_purpose_the_role_or_the_team(
    frail: dict[str, str],
    coord_client: TestClient,
    issuer: DevelopmentIssuer,
    connection: Connection,
) -> None:
    url = "/coordination/teams/int-a/case-finding"
    refused = {
        "treat purpose": staff(issuer, "coord-1"),
        "role not named": staff(issuer, "coord-1", role="CJ0001", purpose="CASEFIND"),
        "not in the team": staff(issuer, "coord-9", purpose="CASEFIND"),
    }
    for why, headers in refused.items():
        response = coord_client.get(url, headers=headers)
        assert response.status_code == 403, why
        assert response.json()["resourceType"] == "OperationOutcome"
        assert "Ashworth" not in response.text
    assert _audits(connection, "case-finding") == []
    missing = coord_client.get(
        "/coordination/teams/nope/case-finding",
        headers=staff(issuer, "coord-1", purpose="CASEFIND"),
    )
    assert missing.status_code == 404


def test_people_who_objected_are_left_out(
    frail: dict[str, str], coord_client: TestClient, issuer: DevelopmentIssuer
) -> None:
    objection = fhir.privacy_consent(
        frail["gp"],
        {"type": "deny"},
        policyRule={
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}
            ]
        },
    )
    write(coord_client, objection, "Z90001")
    finder = staff(issuer, "coord-1", purpose="CASEFIND", scope="user/*.rs")
    listed = coord_client.get("/coordination/teams/int-a/case-finding", headers=finder).json()
    assert listed["total"] == 0
    assert listed["entries"] == []


def test_sensitive_facts_count_in_the_score_but_are_never_shown(
    frail: dict[str, str],
    coord_client: TestClient,
    coord_app: FastAPI,
    connection: Connection,
    issuer: DevelopmentIssuer,
) -> None:
    # HIV disease (B20): a Charlson condition (weight 4) and a sensitive category.
    charlson_before = _rows(connection)["Iris Ashworth"].charlson
    world.diagnosis(coord_client, frail["hospital"], "B20.1", world.days_ago(30))
    dispatch(coord_app, connection)
    row = _rows(connection)["Iris Ashworth"]
    assert "hiv" in (row.labels or "").split()
    assert row.charlson == charlson_before + 4
    finder = staff(issuer, "coord-1", purpose="CASEFIND", scope="user/*.rs")
    response = coord_client.get("/coordination/teams/int-a/case-finding", headers=finder)
    assert response.status_code == 200
    assert "B20" not in response.text
    assert "aids" not in response.text.lower()
    assert "hiv" not in response.text.lower()


def test_rescoring_is_queued_by_the_event_and_done_after_the_batch(
    frail: dict[str, str], coord_client: TestClient, coord_app: FastAPI, connection: Connection
) -> None:
    from coordination.case_finding.models import RescoreRow

    world.diagnosis(coord_client, frail["hospital"], "L89.1", world.days_ago(5))
    world.diagnosis(coord_client, frail["hospital"], "F05.9", world.days_ago(4))
    dispatcher = coord_app.state.dispatcher
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        assert dispatcher.dispatch_once(session, now=datetime.now(UTC)) == 2
        queued = session.scalars(select(RescoreRow.person_id)).all()
        assert len(queued) == 1  # two events, one person, queued once
        assert session.get(CaseFindingRow, queued[0]).hfrs == pytest.approx(12.9)  # not yet
        assert dispatcher.run_deferred(session, now=datetime.now(UTC)) == 1
        assert session.get(CaseFindingRow, queued[0]).hfrs == pytest.approx(17.8)
        assert session.scalars(select(RescoreRow)).all() == []
        assert dispatcher.run_deferred(session, now=datetime.now(UTC)) == 0
        session.commit()

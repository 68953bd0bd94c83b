"""Reading the audit trail through FHIR, on both databases: a privacy officer sees and
searches everything; a person sees who (organisation and role), when and why for the
successful accesses to their own record; anyone else is refused; nobody writes it."""

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources.R4B.auditevent import AuditEvent
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.audit import Outcome
from fhir_gateway.audit.models import AuditEventRow
from fhir_gateway.auth.issuer import DevelopmentIssuer
from fhir_gateway.identity import service as identity
from fhir_gateway.validation import validate_resource
from tests.conftest import bearer, user_claims
from tests.fhir_gateway.audit.records import add_through, days_after, record
from tests.fhir_gateway.identity.test_flow import dispatch, put_patient
from tests.fhir_gateway.identity.test_scoring import NUMBER_A, NUMBER_B

OLD = {"date": "lt2021-01-01"}  # only the seeded events, never the ones requests record now


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def officer(issuer: DevelopmentIssuer) -> dict[str, str]:
    claims = user_claims("audit-privacy-1", organization="Z9H", role="CJ0003", scope="user/*.rs")
    return bearer(issuer, claims)


def _search(client: TestClient, headers: dict[str, str], **params: str) -> dict[str, Any]:
    response = client.get("/fhir/AuditEvent", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "Bundle"
    assert "total" not in body
    return body


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def _next(bundle: dict[str, Any]) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)


# --- The privacy officer ---------------------------------------------------------------------


def test_search_by_agent_pages_newest_first(
    app: FastAPI, client: TestClient, officer: dict[str, str]
) -> None:
    agent = f"Practitioner/{_unique('gp')}"
    ids = add_through(
        app.state.unit_of_work,
        *(record(agent=agent, recorded_at=days_after(n)) for n in range(5)),
    )
    bundle = _search(client, officer, agent=agent, _count="2", **OLD)
    seen = _ids(bundle)
    pages = 1
    while (url := _next(bundle)) is not None:
        response = client.get(url.removeprefix("http://testserver"), headers=officer)
        assert response.status_code == 200, response.text
        bundle = response.json()
        seen += _ids(bundle)
        pages += 1
    assert seen == list(reversed(ids))
    assert pages == 3


def test_every_entry_is_a_valid_audit_event(
    app: FastAPI, client: TestClient, officer: dict[str, str]
) -> None:
    agent = f"Practitioner/{_unique('gp')}"
    (event_id,) = add_through(
        app.state.unit_of_work,
        record(agent=agent, person="Person/p-audit", resource="Condition/c-audit"),
    )
    (entry,) = _search(client, officer, agent=agent, **OLD)["entry"]
    assert entry["fullUrl"] == f"http://testserver/fhir/AuditEvent/{event_id}"
    resource = entry["resource"]
    AuditEvent.model_validate(resource)
    validate_resource(resource)
    assert resource["agent"][0]["who"] == {"reference": agent}
    assert resource["entity"][0]["what"] == {"reference": "Person/p-audit"}

    read = client.get(f"/fhir/AuditEvent/{event_id}", headers=officer)
    assert read.status_code == 200
    assert read.headers["content-type"].startswith("application/fhir+json")
    assert read.json() == resource


def test_search_by_patient_covers_the_whole_person(
    app: FastAPI, client: TestClient, officer: dict[str, str]
) -> None:
    gp, hospital, other = _unique("gp1"), _unique("rh"), _unique("gp1")
    put_patient(client, gp, "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True)
    put_patient(client, hospital, "urn:ods:Z9H", nhs_number=NUMBER_A, verified=True)
    put_patient(client, other, "urn:ods:Z90001", nhs_number=NUMBER_B, verified=True, given="Bo")
    dispatch(app)
    with app.state.unit_of_work() as session:
        person = identity.person_of(session, gp)
        other_person = identity.person_of(session, other)
    assert person is not None
    assert other_person not in (None, person)
    ids = add_through(
        app.state.unit_of_work,
        record(person=f"Person/{person}"),
        record(person=f"Patient/{hospital}"),  # before identity had filed it
        record(person=f"Person/{other_person}"),
    )
    for asked in (f"Patient/{gp}", f"Person/{person}", gp):
        assert _ids(_search(client, officer, patient=asked, **OLD)) == [ids[1], ids[0]]
    both = _search(client, officer, patient=f"Patient/{hospital},Person/{other_person}", **OLD)
    assert _ids(both) == list(reversed(ids))


def test_search_by_purpose_outcome_organisation_and_role(
    app: FastAPI, client: TestClient, officer: dict[str, str]
) -> None:
    agent = f"Practitioner/{_unique('doc')}"
    treat, btg, denied, failed = add_through(
        app.state.unit_of_work,
        record(agent=agent),
        record(
            agent=agent,
            purpose="BTG",
            break_glass=True,
            organisation="Z9H",
            role="R8001",
            detail="Collapsed in clinic",
        ),
        record(agent=agent, outcome=Outcome.DENIED),
        record(agent=agent, outcome=Outcome.FAILED),
    )

    def found(**params: str) -> list[str]:
        return _ids(_search(client, officer, agent=agent, **params, **OLD))

    assert found(purpose="BTG") == [btg]
    assert found(purpose="http://terminology.hl7.org/CodeSystem/v3-ActReason|BTG") == [btg]
    assert found(outcome="4") == [denied]
    assert found(outcome="4,8") == [failed, denied]
    assert found(organization="Z9H") == [btg]
    assert found(**{"agent-role": "R8001"}) == [btg]
    (entry,) = _search(client, officer, agent=agent, purpose="BTG", **OLD)["entry"]
    assert entry["resource"]["outcomeDesc"] == "Collapsed in clinic"
    assert treat in found()


def test_search_by_date(app: FastAPI, client: TestClient, officer: dict[str, str]) -> None:
    agent = f"Practitioner/{_unique('doc')}"
    jan, feb, mar = add_through(
        app.state.unit_of_work,
        record(agent=agent, recorded_at=days_after(0)),  # 2020-01-01
        record(agent=agent, recorded_at=days_after(31)),  # 2020-02-01
        record(agent=agent, recorded_at=days_after(60)),  # 2020-03-01
    )
    cases: list[tuple[list[tuple[str, str]], list[str]]] = [
        ([("date", "2020-02")], [feb]),
        ([("date", "eq2020-02-01")], [feb]),
        ([("date", "ge2020-02")], [mar, feb]),
        ([("date", "gt2020-02")], [mar]),
        ([("date", "le2020-02")], [feb, jan]),
        ([("date", "lt2020-02")], [jan]),
        ([("date", "ge2020-01-15"), ("date", "lt2020-03")], [feb]),
    ]
    for params, expected in cases:
        response = client.get(
            "/fhir/AuditEvent", params=[("agent", agent), *params], headers=officer
        )
        assert response.status_code == 200, response.text
        assert _ids(response.json()) == expected, params


def test_search_with_a_form_post(app: FastAPI, client: TestClient, officer: dict[str, str]) -> None:
    agent = f"Practitioner/{_unique('doc')}"
    (event_id,) = add_through(app.state.unit_of_work, record(agent=agent))
    response = client.post(
        "/fhir/AuditEvent/_search",
        content=f"agent={agent}&date=lt2021",
        headers={**officer, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    assert _ids(response.json()) == [event_id]


@pytest.mark.parametrize(
    "params",
    [
        {"colour": "blue"},
        {"outcome": "2"},
        {"date": "ne2020"},
        {"date": "yesterday"},
        {"_count": "0"},
        {"_cursor": "x"},
        {"agent": ""},
        {"patient": "Observation/1"},
    ],
    ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()),
)
def test_bad_searches_are_refused(
    client: TestClient, officer: dict[str, str], params: dict[str, str]
) -> None:
    response = client.get("/fhir/AuditEvent", params=params, headers=officer)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_reading_the_audit_is_audited(
    client: TestClient, session: Session, officer: dict[str, str]
) -> None:
    marker = _unique("purpose")
    _search(client, officer, purpose=marker)
    (event,) = session.scalars(
        select(AuditEventRow).where(AuditEventRow.query.contains(marker))
    ).all()
    assert (event.interaction, event.outcome, event.agent) == (
        "search-type",
        "0",
        "Practitioner/audit-privacy-1",
    )
    assert (event.role, event.person) == ("CJ0003", None)
    assert event.query == f"/fhir/AuditEvent?purpose={marker}"


def test_an_unknown_event_is_not_found(client: TestClient, officer: dict[str, str]) -> None:
    response = client.get(f"/fhir/AuditEvent/{uuid.uuid4().hex}", headers=officer)
    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-found"


# --- Everyone else --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [
        user_claims("audit-gp", role="R8000", scope="user/*.cruds"),
        user_claims("audit-po", role="CJ0003", scope="user/Patient.rs"),  # no AuditEvent scope
        {"sub": "integration", "client_id": "integration", "scope": "system/*.cruds"},
    ],
    ids=["gp", "officer-without-scope", "system"],
)
def test_others_are_forbidden(
    client: TestClient, issuer: DevelopmentIssuer, claims: dict[str, object]
) -> None:
    headers = bearer(issuer, claims)
    for path in ("/fhir/AuditEvent", f"/fhir/AuditEvent/{uuid.uuid4().hex}"):
        response = client.get(path, headers=headers)
        assert response.status_code == 403, path
        assert response.json()["issue"][0]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/fhir/AuditEvent"),
        ("PUT", "/fhir/AuditEvent/abc"),
        ("PUT", "/fhir/AuditEvent"),
        ("DELETE", "/fhir/AuditEvent/abc"),
        ("PATCH", "/fhir/AuditEvent/abc"),
        ("GET", "/fhir/AuditEvent/abc/_history"),
    ],
)
def test_nobody_writes_the_audit(
    client: TestClient, officer: dict[str, str], method: str, path: str
) -> None:
    body = {"resourceType": "AuditEvent"}
    for headers in ({}, officer):  # not even a privacy officer; the system client has every scope
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == "GET"
        assert response.json()["issue"][0]["code"] == "not-supported"


# --- The person -----------------------------------------------------------------------------

ALLOWED = {"resourceType", "id", "type", "recorded", "purposeOfEvent", "agent", "source"}


def test_a_person_sees_who_when_and_why_for_their_own_record(
    app: FastAPI, client: TestClient, session: Session, issuer: DevelopmentIssuer
) -> None:
    gp, hospital, other = _unique("gp1"), _unique("rh"), _unique("gp1")
    put_patient(client, gp, "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True)
    put_patient(client, hospital, "urn:ods:Z9H", nhs_number=NUMBER_A, verified=True)
    put_patient(client, other, "urn:ods:Z90001", nhs_number=NUMBER_B, verified=True, given="Bo")
    dispatch(app)
    with app.state.unit_of_work() as s:
        person = identity.person_of(s, gp)
        other_person = identity.person_of(s, other)
    doctor = f"Practitioner/{_unique('doc')}"
    glass, hospital_read, denied, others, own = add_through(
        app.state.unit_of_work,
        record(
            agent=doctor,
            person=f"Person/{person}",
            purpose="BTG",
            break_glass=True,
            detail="Found unresponsive at home",
            query=f"/fhir/Patient/{gp}/$everything",
            recorded_at=days_after(1),
        ),
        record(
            agent=doctor,
            person=f"Patient/{hospital}",
            organisation="Z9H",
            role="R8001",
            recorded_at=days_after(2),
        ),
        record(agent=doctor, person=f"Person/{person}", outcome=Outcome.DENIED),
        record(agent=doctor, person=f"Person/{other_person}"),
        record(
            caller_kind="patient",
            agent=f"patient-{gp}",
            person=f"Person/{person}",
            purpose="PATRQT",
            organisation=None,
            role=None,
        ),
    )
    me = bearer(issuer, {"sub": f"patient-{gp}", "patient": gp, "scope": "patient/*.rs"})

    bundle = _search(client, me, **OLD)
    assert _ids(bundle) == [hospital_read, glass]
    text = str(bundle)
    for secret in (doctor, "Found unresponsive", "$everything", f"Patient/{gp}"):
        assert secret not in text
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert set(resource) <= ALLOWED
        AuditEvent.model_validate(resource)
        validate_resource(resource)
    latest, earliest = (e["resource"] for e in bundle["entry"])
    assert latest["agent"][0]["who"]["identifier"]["value"] == "Z9H"
    assert latest["agent"][0]["role"][0]["coding"][0]["code"] == "R8001"
    assert earliest["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"
    assert earliest["recorded"] == "2020-01-02T09:00:00.000000Z"

    # Asking about their own record by any of its names; never about anyone else's.
    for asked in (f"Patient/{gp}", f"Patient/{hospital}", f"Person/{person}"):
        assert _ids(_search(client, me, patient=asked, **OLD)) == [hospital_read, glass]
    assert _ids(_search(client, me, organization="Z9H", **OLD)) == [hospital_read]
    for params in ({"patient": f"Patient/{other}"}, {"agent": doctor}, {"outcome": "4"}):
        response = client.get("/fhir/AuditEvent", params=params, headers=me)
        assert response.status_code == 403, params

    read = client.get(f"/fhir/AuditEvent/{glass}", headers=me)
    assert read.status_code == 200
    assert set(read.json()) <= ALLOWED
    for hidden in (denied, others, own):
        assert client.get(f"/fhir/AuditEvent/{hidden}", headers=me).status_code == 404

    # Their reading is audited as an access to their own record.
    (audited,) = session.scalars(
        select(AuditEventRow).where(
            AuditEventRow.agent == f"patient-{gp}",
            AuditEventRow.resource == f"AuditEvent/{glass}",
            AuditEventRow.outcome == "0",
        )
    ).all()
    assert (audited.caller_kind, audited.person, audited.purpose) == (
        "patient",
        f"Person/{person}",
        "PATRQT",
    )
    assert audited.resource == f"AuditEvent/{glass}"


def test_a_person_not_yet_filed_sees_accesses_to_their_patient(
    app: FastAPI, client: TestClient, issuer: DevelopmentIssuer
) -> None:
    patient = _unique("unfiled")
    seen, unseen = add_through(
        app.state.unit_of_work,
        record(person=f"Patient/{patient}"),
        record(person=f"Patient/{patient}-someone-else"),
    )
    me = bearer(issuer, {"sub": f"patient-{patient}", "patient": patient, "scope": "patient/*.rs"})
    assert _ids(_search(client, me, **OLD)) == [seen]
    assert unseen not in _ids(_search(client, me, **OLD))

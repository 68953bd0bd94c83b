"""Denied and failed requests are audited in a transaction of their own (decision 6), on both
databases; if that write fails, the caller still gets the original error."""

import logging
import uuid

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from fhir_gateway.audit import service
from fhir_gateway.auth.issuer import DevelopmentIssuer
from tests.conftest import bearer, user_claims
from tests.fhir_gateway.audit.records import events_asking
from tests.fhir_gateway.identity.test_flow import dispatch, put_patient
from tests.fhir_gateway.identity.test_scoring import NUMBER_A


def _marker() -> str:
    return f"audit-{uuid.uuid4().hex[:12]}"


def test_no_token_is_denied_and_audited_without_a_caller(
    client: TestClient, session: Session
) -> None:
    marker = _marker()
    response = client.get(f"/fhir/Patient/{marker}", headers={"Authorization": ""})
    assert response.status_code == 401
    (event,) = events_asking(session, marker)
    assert (event.outcome, event.caller_kind, event.agent) == ("4", "unknown", "unknown")
    assert (event.interaction, event.action) == ("read", "R")
    assert (event.resource, event.person) == (f"Patient/{marker}", f"Patient/{marker}")
    assert event.query == f"/fhir/Patient/{marker}"
    assert event.detail is not None
    assert "access token" in event.detail


def test_insufficient_scope_is_denied_and_audited_with_the_caller(
    client: TestClient, session: Session, issuer: DevelopmentIssuer
) -> None:
    marker = _marker()
    claims = user_claims("audit-nurse", role="R8001", scope="user/Observation.rs")
    response = client.get("/fhir/Patient", params={"name": marker}, headers=bearer(issuer, claims))
    assert response.status_code == 403
    (event,) = events_asking(session, marker)
    assert event.outcome == "4"
    assert (event.caller_kind, event.agent) == ("user", "Practitioner/audit-nurse")
    assert (event.organisation, event.role, event.purpose) == ("Z90001", "R8001", "TREAT")
    assert event.interaction == "search-type"
    assert event.query == f"/fhir/Patient?name={marker}"
    assert event.detail == response.json()["issue"][0]["diagnostics"]


def test_not_found_is_denied_and_audited(client: TestClient, session: Session) -> None:
    marker = _marker()
    assert client.get(f"/fhir/Condition/{marker}").status_code == 404
    (event,) = events_asking(session, marker)
    assert (event.outcome, event.caller_kind, event.agent) == ("4", "system", "test-system")
    assert (event.resource, event.person) == (f"Condition/{marker}", None)


def test_a_bad_request_is_a_failure(client: TestClient, session: Session) -> None:
    marker = _marker()
    response = client.post(f"/fhir/Patient?marker={marker}", content=b'{"resourceType": ')
    assert response.status_code == 400
    (event,) = events_asking(session, marker)
    assert (event.outcome, event.interaction, event.action) == ("8", "create", "C")


def test_a_method_not_allowed_is_a_failure(client: TestClient, session: Session) -> None:
    marker = _marker()
    assert client.patch(f"/fhir/Patient/{marker}", json={}).status_code == 405
    (event,) = events_asking(session, marker)
    assert (event.outcome, event.interaction, event.action) == ("8", "patch", "U")


def test_other_protected_apis_are_audited(
    client: TestClient, session: Session, issuer: DevelopmentIssuer
) -> None:
    marker = _marker()
    claims = user_claims("audit-clerk", scope="user/Observation.rs")
    response = client.get(
        "/identity/reviews", params={"marker": marker}, headers=bearer(issuer, claims)
    )
    assert response.status_code == 403
    (event,) = events_asking(session, marker)
    assert (event.outcome, event.interaction, event.agent) == (
        "4",
        "read",
        "Practitioner/audit-clerk",
    )


def test_a_filed_patient_is_recorded_as_their_person(
    app: FastAPI, client: TestClient, session: Session, issuer: DevelopmentIssuer
) -> None:
    marker = _marker()
    put_patient(client, marker, "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True)
    dispatch(app)
    claims = user_claims("audit-sw", scope="user/Observation.rs")
    assert client.get(f"/record/{marker}", headers=bearer(issuer, claims)).status_code == 403
    (event,) = events_asking(session, f"/record/{marker}")
    assert event.person is not None
    assert event.person.startswith("Person/")
    assert event.resource == f"Patient/{marker}"


def test_public_metadata_is_not_audited(client: TestClient, session: Session) -> None:
    marker = _marker()
    response = client.get(
        "/fhir/metadata", params={"marker": marker}, headers={"Accept": "application/fhir+xml"}
    )
    assert response.status_code == 406
    assert events_asking(session, marker) == []


def test_the_original_error_is_returned_when_the_audit_cannot_be_written(
    client: TestClient,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the audit database is unreachable")

    monkeypatch.setattr(service, "record_failure", broken)
    marker = _marker()
    with caplog.at_level(logging.ERROR, logger="carejoin.audit"):
        response = client.get(f"/fhir/Condition/{marker}")
    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-found"
    assert "could not audit the 404 answer" in caplog.text
    assert "the audit database is unreachable" in caplog.text
    assert events_asking(session, marker) == []


@pytest.mark.parametrize(
    ("method", "path", "interaction", "resource"),
    [
        ("GET", "/fhir/Patient", "search-type", None),
        ("POST", "/fhir/Patient/_search", "search-type", None),
        ("GET", "/fhir/Patient/p1", "read", "Patient/p1"),
        ("GET", "/fhir/Patient/p1/_history", "history-instance", "Patient/p1"),
        ("GET", "/fhir/Patient/p1/_history/2", "vread", "Patient/p1"),
        ("GET", "/fhir/Patient/_history", "history-type", None),
        ("GET", "/fhir/_history", "history-system", None),
        ("GET", "/fhir/Patient/p1/$everything", "$everything", "Patient/p1"),
        ("POST", "/fhir/Patient/$match", "$match", None),
        ("POST", "/fhir", "transaction", None),
        ("POST", "/fhir/Observation", "create", None),
        ("PUT", "/fhir/Observation/o1", "update", "Observation/o1"),
        ("PUT", "/fhir/Observation", "update", None),
        ("DELETE", "/fhir/Observation/o1", "delete", "Observation/o1"),
        ("GET", "/record/p1", "read", "Patient/p1"),
        ("POST", "/identity/link", "operation", None),
        ("POST", "/feeds/hl7v2", "operation", None),
    ],
)
def test_the_interaction_is_guessed_from_method_and_path(
    method: str, path: str, interaction: str, resource: str | None
) -> None:
    target = service.describe_request(method, path)
    assert (target.interaction, target.resource) == (interaction, resource)


@pytest.mark.parametrize(
    ("path", "audited"),
    [
        ("/fhir/Patient", True),
        ("/fhir", True),
        ("/fhir/metadata", False),
        ("/fhir/.well-known/smart-configuration", False),
        ("/identity/reviews", True),
        ("/feeds/hl7v2", True),
        ("/record/p1", True),
        ("/auth/token", False),
        ("/docs", False),
    ],
)
def test_which_paths_are_audited(path: str, audited: bool) -> None:
    assert service.is_audited_path(path) is audited

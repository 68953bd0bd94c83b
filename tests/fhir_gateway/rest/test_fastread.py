"""Reads by id answered by ``rest.fastread`` give what the router gives: the same status,
headers, body and AuditEvents, on both databases; and only the requests the router would
give to its read route are taken."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, select

from fhir_gateway.app import create_app
from fhir_gateway.audit.inline import AUDIT_COLUMNS
from fhir_gateway.audit.models import AuditEventRow
from fhir_gateway.auth.issuer import DevelopmentIssuer
from fhir_gateway.rest.fastread import FHIR_ID, READ_TYPES, FastReadMiddleware, read_target
from fhir_gateway.search.registry import SUPPORTED_TYPES
from fhir_gateway.settings import GatewaySettings
from fhir_gateway.store.reads import ConnectionReader
from tests.conftest import SYSTEM_CLAIMS, bearer, joined_unit_of_work, user_claims
from tests.factories import fhir

# What an AuditEvent says of the access (its time and id differ from one request to the next).
AUDITED = (*(c for c in AUDIT_COLUMNS if c != "recorded_at"), "person", "resource")


def _service(
    engine: Any, connection: Connection, settings: GatewaySettings, *, fast: bool
) -> TestClient:
    application = create_app(settings, engine=engine)
    if not fast:
        application.user_middleware = [
            m
            for m in application.user_middleware
            if m.cls is not FastReadMiddleware  # type: ignore[comparison-overlap]
        ]
    application.state.unit_of_work = joined_unit_of_work(connection)
    application.state.reader = ConnectionReader(joined_unit_of_work(connection))
    return TestClient(application, raise_server_exceptions=False)


@pytest.fixture
def both(
    engine: Any, connection: Connection, gateway_settings: GatewaySettings
) -> Iterator[tuple[TestClient, TestClient]]:
    """The service as it is, and the same service with every read going through the router
    (neither sending any header of its own)."""
    with (
        _service(engine, connection, gateway_settings, fast=True) as fast,
        _service(engine, connection, gateway_settings, fast=False) as slow,
    ):
        yield fast, slow


def _audit_after(connection: Connection, pk: int) -> list[tuple[Any, ...]]:
    rows = connection.execute(
        select(*(getattr(AuditEventRow, name) for name in AUDITED))
        .where(AuditEventRow.pk > pk)
        .order_by(AuditEventRow.pk)
    ).all()
    return [tuple(row) for row in rows]


def _last_audit(connection: Connection) -> int:
    found = connection.execute(
        select(AuditEventRow.pk).order_by(AuditEventRow.pk.desc()).limit(1)
    ).scalar()
    return int(found or 0)


def _answer(
    client: TestClient, connection: Connection, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes, list[tuple[Any, ...]]]:
    before = _last_audit(connection)
    response = client.get(path, headers=headers)
    kept = {k: v for k, v in response.headers.items() if k.lower() != "date"}
    return response.status_code, kept, response.content, _audit_after(connection, before)


def test_every_kind_of_read_is_answered_as_the_router_answers_it(
    client: TestClient,
    both: tuple[TestClient, TestClient],
    connection: Connection,
    issuer: DevelopmentIssuer,
) -> None:
    patient = client.post("/fhir/Patient", json=fhir.patient()).json()
    observation = client.post(
        "/fhir/Observation", json=fhir.observation(patient_id=patient["id"])
    ).json()
    gone = client.post("/fhir/Patient", json=fhir.patient(family="Gone")).json()
    assert client.delete(f"/fhir/Patient/{gone['id']}").status_code in (200, 204)
    system = bearer(issuer, SYSTEM_CLAIMS)
    fhir_json = {**system, "Accept": "application/fhir+json"}
    narrow: dict[str, object] = {**SYSTEM_CLAIMS, "scope": "system/Observation.rs"}
    only_observations = bearer(issuer, narrow)
    staff = bearer(issuer, user_claims(organization="Z90002"))
    cases: list[tuple[str, dict[str, str], int]] = [
        (f"/fhir/Patient/{patient['id']}", fhir_json, 200),
        (f"/fhir/Observation/{observation['id']}", system, 200),
        (f"/fhir/Patient/{patient['id']}?_summary=true", system, 200),
        (f"/fhir/Patient/{patient['id']}?_elements=name", system, 200),
        (f"/fhir/Patient/{patient['id']}?_format=json", system, 200),
        ("/fhir/Patient/never-made", system, 404),
        (f"/fhir/Patient/{gone['id']}", system, 410),
        (f"/fhir/Patient/{patient['id']}", {**system, "Accept": "application/fhir+xml"}, 406),
        (f"/fhir/Patient/{patient['id']}?_format=xml", system, 406),
        (f"/fhir/Patient/{patient['id']}", {}, 401),
        (f"/fhir/Patient/{patient['id']}", {"Authorization": "Bearer not-a-token"}, 401),
        (f"/fhir/Patient/{patient['id']}", only_observations, 403),
        (f"/fhir/Patient/{patient['id']}", staff, 404),  # no relationship: as if not there
        ("/fhir/Patient/a$b", system, 404),  # not an id: the router's
        ("/fhir/Unknown/1", system, 404),
        ("/fhir/AuditEvent/no-such-event", system, 403),  # the audit router: officers only
    ]
    for path, headers, status in cases:
        fast = _answer(both[0], connection, path, headers)
        slow = _answer(both[1], connection, path, headers)
        assert fast[0] == status, (path, fast[2])
        assert fast == slow, path
        if status == 200:
            assert fast[3], f"{path}: a released read writes its AuditEvent"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/fhir/Patient/p-1", ("Patient", "p-1")),
        ("GET", "/fhir/Observation/A.b-9", ("Observation", "A.b-9")),
        ("POST", "/fhir/Patient/p-1", None),
        ("PUT", "/fhir/Patient/p-1", None),
        ("GET", "/fhir/Patient", None),
        ("GET", "/fhir/Patient/p-1/_history", None),
        ("GET", "/fhir/Patient/$match", None),
        ("GET", "/fhir/Patient/_history", None),
        ("GET", "/fhir/AuditEvent/e-1", None),
        ("GET", "/fhir/Unknown/p-1", None),
        ("GET", "/fhir/Patient/" + "x" * 65, None),
        ("GET", "/record/Patient/p-1", None),
        ("GET", "/fhir/metadata", None),
    ],
)
def test_only_the_read_routes_requests_are_taken(
    method: str, path: str, expected: tuple[str, str] | None
) -> None:
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    assert read_target(scope) == expected
    assert read_target({**scope, "root_path": "/behind-a-proxy"}) is None


def test_no_other_route_answers_a_get_of_the_reads_shape(
    gateway_settings: GatewaySettings,
) -> None:
    """Every GET route of the service, as its OpenAPI document lists them (all but the audit
    trail's 405 refusals, whose type the fast path leaves alone): none but the read route
    matches a path the fast path takes (``/fhir/{type}/{id}``, a type of ``READ_TYPES``, an
    id of FHIR's pattern)."""
    from carejoin.app import create_service
    from carejoin.settings import Settings

    service: FastAPI = create_service(Settings(database_url="sqlite://"))
    paths = service.openapi()["paths"]
    read = "/fhir/{resource_type}/{resource_id}"
    assert "get" in paths[read]
    shaped = []
    for path, operations in paths.items():
        parts = path.split("/")
        if "get" not in operations or path == read or len(parts) != 4 or parts[1] != "fhir":
            continue
        kind, name = parts[2], parts[3]
        any_type = kind.startswith("{") or kind in READ_TYPES
        any_id = name.startswith("{") or bool(FHIR_ID.fullmatch(name))
        if any_type and any_id:
            shaped.append(path)
    assert shaped == []
    assert READ_TYPES < SUPPORTED_TYPES

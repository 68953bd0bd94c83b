"""Coordination over HTTP and on both databases: the gateway's app with coordination's
extension, in the test's rolled-back transaction."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from coordination.extension import extension
from coordination.settings import CoordinationSettings
from fhir_gateway.app import create_app
from fhir_gateway.auth.issuer import DevelopmentIssuer
from fhir_gateway.settings import GatewaySettings
from fhir_gateway.store.reads import ConnectionReader
from tests.conftest import SYSTEM_CLAIMS, bearer, joined_unit_of_work, user_claims

TEAM = {
    "name": "Millbrook Integrated Neighbourhood Team",
    "host": "Z9C01",
    "practices": ["Z90001", "Z90002"],
    "members": [
        {"practitioner": "lead-1", "role": "lead", "discipline": "nursing"},
        {"practitioner": "coord-1", "discipline": "social-work"},
        {"practitioner": "coord-2", "discipline": "nursing", "hours_per_week": 18.75},
    ],
}


@pytest.fixture
def coordination_settings() -> CoordinationSettings:
    return CoordinationSettings()


@pytest.fixture
def coord_app(
    engine: Engine,
    connection: Connection,
    gateway_settings: GatewaySettings,
    coordination_settings: CoordinationSettings,
) -> FastAPI:
    application = create_app(
        gateway_settings,
        engine=engine,
        extensions=(
            extension(coordination_settings, agreement_path=gateway_settings.agreement_path),
        ),
    )
    application.state.unit_of_work = joined_unit_of_work(connection)
    application.state.reader = ConnectionReader(joined_unit_of_work(connection))
    return application


@pytest.fixture
def coord_client(coord_app: FastAPI, issuer: DevelopmentIssuer) -> Iterator[TestClient]:
    """Signed in as the integration engine (every scope); requests pass their own headers
    to act as someone else."""
    with TestClient(coord_app, raise_server_exceptions=False) as c:
        c.headers.update(
            {
                "Content-Type": "application/fhir+json",
                "Accept": "application/fhir+json",
                "Authorization": f"Bearer {issuer.issue(SYSTEM_CLAIMS)}",
            }
        )
        yield c


def staff(
    issuer: DevelopmentIssuer,
    user: str,
    *,
    org: str = "Z9C01",
    role: str = "CJ0002",
    purpose: str = "TREAT",
    scope: str = "user/*.cruds",
) -> dict[str, str]:
    return bearer(
        issuer,
        user_claims(user, organization=org, role=role, purpose_of_use=purpose, scope=scope),
    )


def dispatch(app: FastAPI, connection: Connection) -> int:
    """Drain the outbox in the test's transaction (identity, then coordination), with the
    deferred work (re-scoring) after each batch, as the service's dispatcher does."""
    total = 0
    dispatcher = app.state.dispatcher
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        while True:
            count = dispatcher.dispatch_once(session, now=datetime.now(UTC))
            deferred = dispatcher.run_deferred(session, now=datetime.now(UTC))
            total += count
            if count == 0 and deferred == 0:
                break
        session.commit()
    return total


def write(client: TestClient, resource: dict[str, Any], ods: str) -> str:
    response = client.post(
        f"/fhir/{resource['resourceType']}",
        json={**resource, "meta": {"source": f"urn:carejoin:source:{ods}"}},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])

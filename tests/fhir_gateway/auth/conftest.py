"""Sign-in fixtures: the app with personas, a public client and a clock the tests move; a
browser (an https test client with a cookie jar and no token)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine

from consent.context import AccessContext
from fhir_gateway.app import create_app
from fhir_gateway.auth.authorize import register_public_client
from fhir_gateway.auth.dependencies import authenticate
from fhir_gateway.settings import AuthSettings, GatewaySettings
from fhir_gateway.store.reads import ConnectionReader
from tests.conftest import BASE_URL, joined_unit_of_work
from tests.fhir_gateway.auth.browser import APP_CLIENT, APP_REDIRECT, PERSONAS, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def signin_auth(auth_settings: AuthSettings, tmp_path: Path) -> AuthSettings:
    clients = tmp_path / "clients.json"
    register_public_client(str(clients), client_id=APP_CLIENT, redirect_uris=[APP_REDIRECT])
    return auth_settings.model_copy(update={"development_clients_path": str(clients)})


@pytest.fixture
def signin_settings(signin_auth: AuthSettings, agreement_path: str) -> GatewaySettings:
    return GatewaySettings(
        database_url="sqlite://",
        base_url=BASE_URL,
        dispatch_events=False,
        auth=signin_auth,
        agreement_path=agreement_path,
    )


@pytest.fixture
def contexts() -> list[AccessContext]:
    """The access context of every request to ``/test/context``."""
    return []


def build_app(
    settings: GatewaySettings,
    engine: Engine,
    connection: Connection,
    clock: FakeClock,
    contexts: list[AccessContext],
) -> FastAPI:
    application = create_app(settings, engine=engine, personas=PERSONAS, clock=clock)
    application.state.unit_of_work = joined_unit_of_work(connection)
    application.state.reader = ConnectionReader(joined_unit_of_work(connection))

    @application.api_route(
        "/test/context", methods=["GET", "POST"], dependencies=[Depends(authenticate)]
    )
    def seen(request: Request) -> Response:
        contexts.append(request.state.access)
        return Response(status_code=204)

    return application


@pytest.fixture
def signin_app(
    signin_settings: GatewaySettings,
    engine: Engine,
    connection: Connection,
    clock: FakeClock,
    contexts: list[AccessContext],
) -> FastAPI:
    return build_app(signin_settings, engine, connection, clock, contexts)


@pytest.fixture
def browser(signin_app: FastAPI) -> Iterator[TestClient]:
    """A browser on https (the cookies are Secure), following no redirect by itself."""
    with TestClient(
        signin_app,
        base_url="https://testserver",
        follow_redirects=False,
        raise_server_exceptions=False,
    ) as c:
        yield c

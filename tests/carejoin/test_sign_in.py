"""Signing in as a demo persona through the development issuer's page gives the access
context ``carejoin token --persona`` gives, for every persona a person can sign in as."""

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine
from typer.testing import CliRunner

from carejoin import cli
from carejoin.personas import personas
from carejoin.settings import get_settings
from consent.context import AccessContext, CallerKind
from fhir_gateway.app import create_app
from fhir_gateway.auth.authorize import register_public_client
from fhir_gateway.auth.verify import TokenVerifier
from fhir_gateway.settings import AuthSettings, GatewaySettings
from tests.conftest import BASE_URL, ISSUER, joined_unit_of_work
from tests.fhir_gateway.auth.browser import APP_CLIENT, APP_REDIRECT, code_for, exchange

PEOPLE = [p.name for p in personas().values() if p.kind is not CallerKind.SYSTEM]


@pytest.fixture
def app_and_env(
    engine: Engine,
    connection: Connection,
    auth_settings: AuthSettings,
    agreement_path: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TestClient]:
    clients = tmp_path / "clients.json"
    register_public_client(str(clients), client_id=APP_CLIENT, redirect_uris=[APP_REDIRECT])
    auth = auth_settings.model_copy(update={"development_clients_path": str(clients)})
    settings = GatewaySettings(
        base_url=BASE_URL, dispatch_events=False, auth=auth, agreement_path=agreement_path
    )
    app = create_app(settings, engine=engine, personas=tuple(personas().values()))
    app.state.unit_of_work = joined_unit_of_work(connection)
    # The command line signs with the same development key, for the same server.
    monkeypatch.setenv("CAREJOIN_BASE_URL", BASE_URL)
    monkeypatch.setenv("CAREJOIN_AUTH__ISSUER", ISSUER)
    monkeypatch.setenv("CAREJOIN_AUTH__DEVELOPMENT_KEY_PATH", auth.development_key_path)
    get_settings.cache_clear()
    try:
        with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
            yield client
    finally:
        get_settings.cache_clear()


def _same_caller(context: AccessContext) -> AccessContext:
    return replace(context, token_id=None, expires_at=0)


@pytest.mark.parametrize("persona", PEOPLE)
def test_the_picker_gives_what_the_command_line_gives(
    app_and_env: TestClient, persona: str
) -> None:
    printed = CliRunner().invoke(cli.app, ["token", "--persona", persona])
    assert printed.exit_code == 0, printed.output
    verifier: TokenVerifier = app_and_env.app.state.token_verifier  # type: ignore[attr-defined]
    from_cli = verifier.verify(printed.output.strip())

    code, code_verifier, _ = code_for(app_and_env, persona=persona)  # the defaults offered
    answer = exchange(app_and_env, code, code_verifier)
    assert answer.status_code == 200, answer.text
    from_page = verifier.verify(answer.json()["access_token"])
    assert _same_caller(from_page) == _same_caller(from_cli)


def test_a_persona_may_sign_in_in_another_role_it_holds(app_and_env: TestClient) -> None:
    printed = CliRunner().invoke(cli.app, ["token", "--persona", "gp", "--role", "R8008"])
    assert printed.exit_code == 0, printed.output
    verifier: TokenVerifier = app_and_env.app.state.token_verifier  # type: ignore[attr-defined]
    assert verifier.verify(printed.output.strip()).role == "R8008"
    refused = CliRunner().invoke(cli.app, ["token", "--persona", "gp", "--role", "CJ0003"])
    assert refused.exit_code != 0
    code, code_verifier, _ = code_for(app_and_env, persona="gp", role="R8008")
    token = exchange(app_and_env, code, code_verifier).json()["access_token"]
    assert verifier.verify(token).role == "R8008"

"""The service refuses to start on a database without its migrations, on both databases.

A service started against a schema its code is newer than would answer every request that
touches what the missing migrations add with a 500; it stops at start-up instead, naming the
command that brings the database up to date.
"""

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from fhir_gateway import migrate
from fhir_gateway.app import create_app
from fhir_gateway.db import create_engine_for
from fhir_gateway.settings import AuthSettings, GatewaySettings
from tests.conftest import BASE_URL, own_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    with own_engine(request.param, tmp_path_factory, "schema") as engine:
        yield engine


def _last_two() -> tuple[str, str]:
    """The newest revision and the one before it."""
    script = ScriptDirectory.from_config(migrate.alembic_config())
    newest = script.get_revision("head")
    assert newest is not None
    assert isinstance(newest.down_revision, str)
    return newest.revision, newest.down_revision


def _to(engine: Engine, revision: str) -> None:
    config = migrate.alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _app(engine: Engine, auth_settings: AuthSettings, agreement_path: str) -> TestClient:
    settings = GatewaySettings(
        database_url=str(engine.url),
        base_url=BASE_URL,
        dispatch_events=False,
        auth=auth_settings,
        agreement_path=agreement_path,
    )
    return TestClient(create_app(settings, engine=engine))


def test_a_database_behind_the_code_is_refused_at_start_up(
    database: Engine, auth_settings: AuthSettings, agreement_path: str
) -> None:
    assert migrate.missing(database) == []
    newest, before = _last_two()
    _to(database, f"{before}-1")
    assert migrate.missing(database) == [before, newest]
    with (
        pytest.raises(migrate.SchemaBehind, match=rf"{before}, {newest}.*carejoin db upgrade"),
        _app(database, auth_settings, agreement_path),
    ):
        pass
    migrate.upgrade(database)
    assert migrate.missing(database) == []
    with _app(database, auth_settings, agreement_path) as client:
        assert client.get("/fhir/metadata").status_code == 200


def test_an_empty_database_lacks_every_migration(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path_factory.mktemp('empty') / 'x.db'}")
    try:
        lacking = migrate.missing(engine)
        assert lacking[0] == "0001"
        assert lacking[-1] == _last_two()[0]
        assert len(lacking) == len(set(lacking))
    finally:
        engine.dispose()

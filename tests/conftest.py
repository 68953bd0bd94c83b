"""Shared fixtures: real SQLite and real PostgreSQL, a rolled-back transaction per test.

The ``engine`` fixture is parametrised over both backends. PostgreSQL is the one this machine
starts (``CAREJOIN_TEST_POSTGRES_URL``, default the local ``test`` database); each run works
in its own freshly created schema and drops it at the end. Where PostgreSQL is expected (CI,
or the URL given) and unreachable the suite fails loudly; on a machine without it, the
PostgreSQL half is skipped with one clear reason.
"""

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from fhir_gateway import migrate
from fhir_gateway.app import create_app
from fhir_gateway.auth.issuer import DevelopmentIssuer
from fhir_gateway.db import create_engine_for
from fhir_gateway.settings import AuthSettings, GatewaySettings
from fhir_gateway.store.reads import ConnectionReader
from tests.factories.agreement import test_agreement

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BASE_URL = "http://testserver/fhir"


def _postgres_expected() -> bool:
    return bool(os.environ.get("CI")) or "CAREJOIN_TEST_POSTGRES_URL" in os.environ


@contextmanager
def _postgres_engine() -> Iterator[Engine]:
    url = os.environ.get("CAREJOIN_TEST_POSTGRES_URL", DEFAULT_PG)
    schema = f"carejoin_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        if _postgres_expected():
            raise RuntimeError(f"PostgreSQL at {url} is expected but unreachable: {exc}") from exc
        pytest.skip("PostgreSQL is not reachable on this machine; PostgreSQL tests skipped")
    # The schema is in the URL (libpq ``options``), so anything built from ``engine.url``,
    # such as the asyncio read pool, works in the same schema.
    schema_url = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    engine = create_engine(schema_url, pool_size=5, max_overflow=10)
    try:
        migrate.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def _sqlite_engine(directory: Path) -> Iterator[Engine]:
    engine = create_engine_for(f"sqlite:///{directory / 'carejoin-test.db'}")
    try:
        migrate.upgrade(engine)
        yield engine
    finally:
        engine.dispose()


def own_engine(
    backend: str, tmp_path_factory: pytest.TempPathFactory, name: str
) -> AbstractContextManager[Engine]:
    """A database of its own for a module whose tests commit: a SQLite file in a fresh
    directory called ``name``, or a fresh PostgreSQL schema (``backend``: the fixture's param)."""
    if backend == "sqlite":
        return _sqlite_engine(Path(tmp_path_factory.mktemp(name)))
    return _postgres_engine()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    if request.param == "sqlite":
        with _sqlite_engine(tmp_path_factory.mktemp("sqlite")) as e:
            yield e
    else:
        with _postgres_engine() as e:
            yield e


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside an outer transaction that is rolled back after the test."""
    conn = engine.connect()
    outer = conn.begin()
    try:
        yield conn
    finally:
        if outer.is_active:
            outer.rollback()
        conn.close()


@pytest.fixture
def session(connection: Connection) -> Iterator[Session]:
    """A session joined to the test's transaction: its commits are savepoints."""
    with Session(bind=connection, join_transaction_mode="create_savepoint") as s:
        yield s


def joined_unit_of_work(connection: Connection) -> Callable[[], object]:
    @contextmanager
    def unit_of_work() -> Iterator[Session]:
        with Session(bind=connection, join_transaction_mode="create_savepoint") as s, s.begin():
            yield s

    return unit_of_work


ISSUER = "http://testserver/auth"


@pytest.fixture(scope="session")
def auth_settings(tmp_path_factory: pytest.TempPathFactory) -> AuthSettings:
    """The development issuer, its key made once per run."""
    folder = tmp_path_factory.mktemp("issuer")
    return AuthSettings(
        issuer=ISSUER,
        audience=BASE_URL,
        development_key_path=str(folder / "key.pem"),
        development_clients_path=str(folder / "clients.json"),
    )


@pytest.fixture(scope="session")
def issuer(auth_settings: AuthSettings) -> DevelopmentIssuer:
    return DevelopmentIssuer(
        issuer=ISSUER, audience=BASE_URL, key_path=Path(auth_settings.development_key_path)
    )


SYSTEM_CLAIMS = {"sub": "test-system", "scope": "system/*.cruds", "client_id": "test-system"}


def user_claims(user: str = "records-officer-1", **claims: object) -> dict[str, object]:
    """A member of staff at the test practice, every scope unless ``scope`` is given."""
    return {
        "sub": user,
        "fhirUser": f"Practitioner/{user}",
        "organization": "Z90001",
        "role": "R8000",
        "scope": "user/*.cruds",
        **claims,
    }


def bearer(issuer: DevelopmentIssuer, claims: dict[str, object]) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue(claims)}"}


@pytest.fixture(scope="session")
def agreement_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("agreement") / "agreement.json"
    path.write_text(json.dumps(test_agreement()))
    return str(path)


@pytest.fixture
def gateway_settings(auth_settings: AuthSettings, agreement_path: str) -> GatewaySettings:
    # The dispatcher is driven explicitly by the tests that need it, in the test's transaction.
    return GatewaySettings(
        database_url="sqlite://",
        base_url=BASE_URL,
        max_body_bytes=64 * 1024,
        dispatch_events=False,
        auth=auth_settings,
        agreement_path=agreement_path,
    )


@pytest.fixture
def app(engine: Engine, connection: Connection, gateway_settings: GatewaySettings) -> FastAPI:
    application = create_app(gateway_settings, engine=engine)
    application.state.unit_of_work = joined_unit_of_work(connection)
    application.state.reader = ConnectionReader(joined_unit_of_work(connection))
    return application


@pytest.fixture
def client(app: FastAPI, issuer: DevelopmentIssuer) -> Iterator[TestClient]:
    """A client signed in as a system with every scope (consent is tested on its own)."""
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers.update(
            {
                "Content-Type": "application/fhir+json",
                "Accept": "application/fhir+json",
                "Authorization": f"Bearer {issuer.issue(SYSTEM_CLAIMS)}",
            }
        )
        yield c

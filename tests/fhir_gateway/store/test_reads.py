"""The read path's readers return what the store wrote, on both databases.

Data is committed (the PostgreSQL reader uses its own asyncio pool, which cannot see a test's
uncommitted transaction), so each backend gets its own fresh database or schema.
"""

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine

from fhir_gateway.db import session_factory_for
from fhir_gateway.store import service
from fhir_gateway.store.reads import ConnectionReader, PostgresReader, reader_for
from tests.conftest import _postgres_engine, _sqlite_engine
from tests.factories import fhir


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    make = (
        _sqlite_engine(Path(tmp_path_factory.mktemp("reads")))
        if request.param == "sqlite"
        else _postgres_engine()
    )
    with make as e:
        yield e


def test_the_backend_gets_its_own_reader(engine: Engine) -> None:
    reader = reader_for(engine, max_size=2)
    expected = PostgresReader if engine.dialect.name == "postgresql" else ConnectionReader
    assert isinstance(reader, expected)


def test_current_and_versions_match_what_was_written(engine: Engine) -> None:
    factory = session_factory_for(engine)
    now = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    with factory.begin() as session:
        first = service.create(session, fhir.patient(family="Reader"), now=now)
    patient_id = first.stored.resource_id
    with factory.begin() as session:
        updated = fhir.patient(family="Reader", gender="male")
        updated["id"] = patient_id
        service.update(session, "Patient", patient_id, updated, now=now)
    with factory.begin() as session:
        service.delete(session, "Patient", patient_id, now=now)

    async def read_all() -> tuple[object, ...]:
        reader = reader_for(engine, max_size=2)
        await reader.open()
        try:
            return (
                await reader.current("Patient", patient_id),
                await reader.version("Patient", patient_id, 1),
                await reader.version("Patient", patient_id, 2),
                await reader.version("Patient", patient_id, 3),
                await reader.version("Patient", patient_id, 4),
                await reader.current("Patient", "no-such-id"),
                await reader.current("Observation", patient_id),
            )
        finally:
            await reader.close()

    current, v1, v2, v3, v4, unknown, wrong_type = asyncio.run(read_all())
    assert current is not None
    assert current.deleted
    assert current.version_id == 3
    assert v1 is not None
    assert v2 is not None
    assert v3 is not None
    assert v1.body is not None
    assert v2.body is not None
    assert orjson.loads(v1.body)["meta"]["versionId"] == "1"
    assert orjson.loads(v1.body)["gender"] == "female"
    assert orjson.loads(v2.body)["gender"] == "male"
    assert not v1.deleted
    assert not v2.deleted
    assert v3.deleted
    assert v4 is None
    assert unknown is None
    assert wrong_type is None
    assert v1.last_updated == now
    assert v1.last_updated.tzinfo is UTC

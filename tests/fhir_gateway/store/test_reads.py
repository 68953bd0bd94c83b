"""The read path's readers return what the store wrote, on both databases.

Data is committed (the PostgreSQL reader uses its own asyncio pool, which cannot see a test's
uncommitted transaction), so each backend gets its own fresh database or schema.
"""

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest
from sqlalchemy import Engine, select

from consent.audit import Action, Outcome, record_for
from consent.context import context_from_claims
from consent.visibility import Const, Predicate, SourceIn
from fhir_gateway.audit.models import AuditEventRow
from fhir_gateway.db import session_factory_for
from fhir_gateway.store import service
from fhir_gateway.store.reads import ConnectionReader, PostgresReader, ReadAccess, reader_for
from tests.conftest import own_engine
from tests.factories import fhir


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    with own_engine(request.param, tmp_path_factory, "reads") as e:
        yield e


READER = context_from_claims(
    {
        "sub": "u1",
        "fhirUser": "Practitioner/u1",
        "organization": "Z90001",
        "role": "R8000",
        "scope": "user/*.rs",
    }
)


def _access(predicate: Predicate) -> ReadAccess:
    now = datetime.now(UTC)
    return ReadAccess(
        predicate=predicate,
        now=now,
        audit=record_for(
            READER,
            recorded_at=now,
            action=Action.READ,
            interaction="read",
            outcome=Outcome.SUCCESS,
            query="/fhir/Patient/x",
        ),
    )


def _audited(engine: Engine, resource: str) -> list[tuple[str | None, str]]:
    with session_factory_for(engine).begin() as session:
        rows = session.execute(
            select(AuditEventRow.person, AuditEventRow.interaction).where(
                AuditEventRow.resource == resource
            )
        ).all()
    return [(r[0], r[1]) for r in rows]


def test_a_read_finds_only_what_the_caller_may_see_and_audits_it_in_the_same_statement(
    engine: Engine,
) -> None:
    factory = session_factory_for(engine)
    now = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    theirs = {**fhir.patient(family="Elsewhere"), "meta": {"source": "urn:carejoin:source:Z9H"}}
    mine = {**fhir.patient(family="Home"), "meta": {"source": "urn:carejoin:source:Z90001"}}
    with factory.begin() as session:
        their_id = service.create(session, theirs, now=now).stored.resource_id
        my_id = service.create(session, mine, now=now).stored.resource_id
    own_practice = _access(SourceIn(frozenset({"Z90001"})))

    async def read_both() -> tuple[object, object, object]:
        reader = reader_for(engine, max_size=2)
        await reader.open()
        try:
            return (
                await reader.current("Patient", their_id, own_practice),
                await reader.current("Patient", my_id, own_practice),
                await reader.version("Patient", their_id, 1, own_practice),
            )
        finally:
            await reader.close()

    hidden, shown, hidden_version = asyncio.run(read_both())
    assert hidden is None  # exactly as if it did not exist
    assert hidden_version is None
    assert shown is not None
    assert shown.resource_id == my_id
    assert _audited(engine, f"Patient/{my_id}") == [(f"Patient/{my_id}", "read")]
    assert _audited(engine, f"Patient/{their_id}") == []  # nothing released, nothing recorded


def test_the_backend_gets_its_own_reader(engine: Engine) -> None:
    reader = reader_for(engine, max_size=2)
    expected = PostgresReader if engine.dialect.name == "postgresql" else ConnectionReader
    assert isinstance(reader, expected)


def test_fixed_shape_reads_keep_one_plan_and_searches_plan_for_their_values(
    engine: Engine,
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("plan caching is PostgreSQL's")
    reader = reader_for(engine, max_size=2)
    assert isinstance(reader, PostgresReader)

    async def modes() -> tuple[str, str, str, str]:
        await reader.open()
        try:
            async with reader.fixed_pool.connection() as conn:
                fixed = await (await conn.execute("SHOW plan_cache_mode")).fetchone()
                # The connection string's own options (here the test's schema) still apply.
                path = await (await conn.execute("SHOW search_path")).fetchone()
                zone = await (await conn.execute("SHOW TimeZone")).fetchone()
            async with reader.pool.connection() as conn:
                values = await (await conn.execute("SHOW plan_cache_mode")).fetchone()
        finally:
            await reader.close()
        return fixed[0], values[0], path[0], zone[0]

    fixed, values, path, zone = asyncio.run(modes())
    assert zone == "UTC"
    assert fixed == "force_generic_plan"
    assert values == "auto"
    schema = str(engine.url.query["options"]).split("search_path=", 1)[1]
    assert path == schema


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

    access = _access(Const(True))

    async def read_all() -> tuple[object, ...]:
        reader = reader_for(engine, max_size=2)
        await reader.open()
        try:
            return (
                await reader.current("Patient", patient_id, access),
                await reader.version("Patient", patient_id, 1, access),
                await reader.version("Patient", patient_id, 2, access),
                await reader.version("Patient", patient_id, 3, access),
                await reader.version("Patient", patient_id, 4, access),
                await reader.current("Patient", "no-such-id", access),
                await reader.current("Observation", patient_id, access),
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

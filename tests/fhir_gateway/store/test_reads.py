"""The read path's readers return what the store wrote, on both databases.

Data is committed (the PostgreSQL reader uses its own asyncio pool, which cannot see a test's
uncommitted transaction), so each backend gets its own fresh database or schema.
"""

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, select

from consent.context import context_from_claims
from consent.visibility import Const, Predicate, SourceIn
from fhir_gateway.audit.models import AuditEventRow
from fhir_gateway.db import session_factory_for
from fhir_gateway.store import service
from fhir_gateway.store.reads import ConnectionReader, PostgresReader, ReadAccess, reader_for
from tests.conftest import own_engine
from tests.factories import fhir
from tests.fhir_gateway.access.worlds import read_access


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
    return _access_as(READER, predicate, "/fhir/Patient/x")


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


def _caller(user: str, role: str = "R8000") -> Any:
    return context_from_claims(
        {
            "sub": user,
            "fhirUser": f"Practitioner/{user}",
            "organization": "Z90001",
            "role": role,
            "scope": "user/*.rs",
        }
    )


def _access_as(context: Any, predicate: Predicate, query: str) -> ReadAccess:
    return read_access(context, predicate, query, now=datetime.now(UTC))


def _noting_groups(engine: Engine) -> tuple[PostgresReader, list[int]]:
    """A PostgreSQL reader that notes the size of each group of reads it sends."""
    reader = reader_for(engine, max_size=2)
    assert isinstance(reader, PostgresReader)
    groups: list[int] = []
    grouped = reader._grouped

    async def noting(group: list[Any]) -> list[Any]:
        groups.append(len(group))
        return await grouped(group)

    reader._grouped = noting  # type: ignore[method-assign]
    return reader, groups


def _own_patients(engine: Engine, families: list[str]) -> list[str]:
    now = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    with session_factory_for(engine).begin() as session:
        return [
            service.create(
                session,
                {**fhir.patient(family=f), "meta": {"source": "urn:carejoin:source:Z90001"}},
                now=now,
            ).stored.resource_id
            for f in families
        ]


def test_reads_one_after_another_each_go_alone(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("grouped reads are the PostgreSQL reader's")
    ids = _own_patients(engine, ["Alone1", "Alone2", "Alone3"])
    reader, groups = _noting_groups(engine)
    access = _access(SourceIn(frozenset({"Z90001"})))

    async def read_each() -> list[Any]:
        await reader.open()
        try:
            return [await reader.current("Patient", i, access) for i in ids]
        finally:
            await reader.close()

    found = asyncio.run(read_each())
    assert [f.resource_id for f in found] == ids
    assert groups == [1, 1, 1]


def test_when_the_audit_cannot_be_written_every_read_of_the_group_fails(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("grouped reads are the PostgreSQL reader's")
    ids = _own_patients(engine, ["Refused1", "Refused2", "Refused3"])
    reader, groups = _noting_groups(engine)
    predicate = SourceIn(frozenset({"Z90001"}))
    caller = _caller("refused")
    accesses = [_access_as(caller, predicate, f"/fhir/Patient/{i}?refused") for i in ids]
    refuse = (
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
        "$$BEGIN RAISE EXCEPTION 'audit store unavailable'; END$$; "
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_event "
        "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
    )
    with engine.begin() as conn:
        conn.exec_driver_sql(refuse)

    async def read_all() -> list[Any]:
        await reader.open()
        try:
            return await asyncio.gather(
                *(reader.current("Patient", i, a) for i, a in zip(ids, accesses, strict=True)),
                return_exceptions=True,
            )
        finally:
            await reader.close()

    try:
        outcomes = asyncio.run(read_all())
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "DROP TRIGGER refuse_audit ON audit_event; DROP FUNCTION refuse_audit()"
            )
    assert groups == [3]
    assert all(isinstance(o, Exception) for o in outcomes), outcomes
    assert all("audit store unavailable" in str(o) for o in outcomes)
    with session_factory_for(engine).begin() as session:
        written = session.execute(
            select(AuditEventRow.pk).where(AuditEventRow.query.like("%?refused"))
        ).all()
    assert written == []


def test_reads_asked_together_go_as_one_statement_per_kind_of_caller_each_audited(
    engine: Engine,
) -> None:
    # Two users of one organisation, role and purpose, with one consent predicate, share a
    # statement, each read audited as its own user's; a user with another role (another
    # AuditEvent role, and in life another predicate) never shares theirs.
    if engine.dialect.name != "postgresql":
        pytest.skip("grouped reads are the PostgreSQL reader's")
    factory = session_factory_for(engine)
    now = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    mine = [
        {**fhir.patient(family=f"Grouped{n}"), "meta": {"source": "urn:carejoin:source:Z90001"}}
        for n in range(5)
    ]
    theirs = {**fhir.patient(family="Hidden"), "meta": {"source": "urn:carejoin:source:Z9H"}}
    gone = {**fhir.patient(family="Gone"), "meta": {"source": "urn:carejoin:source:Z90001"}}
    with factory.begin() as session:
        my_ids = [service.create(session, p, now=now).stored.resource_id for p in mine]
        their_id = service.create(session, theirs, now=now).stored.resource_id
        gone_id = service.create(session, gone, now=now).stored.resource_id
    with factory.begin() as session:
        service.delete(session, "Patient", gone_id, now=now)
    predicate = SourceIn(frozenset({"Z90001"}))
    first, second = _caller("grouped-1"), _caller("grouped-2")
    nurse = _caller("grouped-3", role="R8001")
    asks = [(first, i) for i in my_ids] + [
        (first, their_id),
        (first, gone_id),
        (first, "no-such-id"),
        (second, my_ids[0]),
        (second, my_ids[1]),
        (nurse, my_ids[2]),
        (nurse, my_ids[3]),
    ]
    accesses = [
        _access_as(who, predicate, f"/fhir/Patient/{i}?n={n}") for n, (who, i) in enumerate(asks)
    ]
    reader, groups = _noting_groups(engine)

    async def read_all() -> list[Any]:
        await reader.open()
        try:
            return await asyncio.gather(
                *(
                    reader.current("Patient", i, a)
                    for (_w, i), a in zip(asks, accesses, strict=True)
                )
            )
        finally:
            await reader.close()

    found = asyncio.run(read_all())
    # Asked together: the two users' reads went as one statement, the other role's as its own.
    assert sorted(groups) == [2, 10]
    assert [f.resource_id if f else None for f in found] == [
        *my_ids,
        None,  # not the caller's to see: as if it did not exist
        gone_id,  # deleted: the router answers 410
        None,
        my_ids[0],
        my_ids[1],
        my_ids[2],
        my_ids[3],
    ]
    assert found[6] is not None
    assert found[6].deleted
    with factory.begin() as session:
        rows = session.execute(
            select(
                AuditEventRow.agent,
                AuditEventRow.role,
                AuditEventRow.query,
                AuditEventRow.resource,
                AuditEventRow.event_id,
            )
            .where(AuditEventRow.query.like("/fhir/Patient/%?n=%"))
            .order_by(AuditEventRow.query)
        ).all()
    released = {
        (access.audit.query, f"Patient/{i}")
        for (_who, i), access in zip(asks, accesses, strict=True)
        if i in my_ids
    }
    assert {(r.query, r.resource) for r in rows} == released
    assert len({r.event_id for r in rows}) == len(rows) == 9  # one event per released read
    agents = {r.query: (r.agent, r.role) for r in rows}
    for n, (_who, i) in enumerate(asks):
        if i in my_ids:
            audit = accesses[n].audit
            assert agents[f"/fhir/Patient/{i}?n={n}"] == (audit.agent, audit.role)

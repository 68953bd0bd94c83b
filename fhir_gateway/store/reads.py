"""The hot read path: read and vread by id, without a thread hop or an ORM on PostgreSQL.

A read is one indexed SELECT that returns the stored JSON text, so what it costs is
round trips and per-request overhead, not the query. On PostgreSQL, ``PostgresReader`` runs
that SELECT on psycopg's asyncio connection pool, on the event loop, in autocommit (one round
trip, no BEGIN/COMMIT), as a server-side prepared statement. The SQL is compiled once from
the same SQLAlchemy table definitions the rest of the store uses, so there is one source of
truth for names. ``ConnectionReader`` runs the repository's ordinary queries in the thread
pool: it serves SQLite (the embedded default) and the tests that hold a connection open.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC
from typing import Any, Protocol

from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Connection, Engine, bindparam, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from fhir_gateway.store import repository
from fhir_gateway.store.models import HistoryRow, ResourceRow
from fhir_gateway.store.repository import StoredResource


class ResourceReader(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def current(self, resource_type: str, resource_id: str) -> StoredResource | None: ...

    async def version(
        self, resource_type: str, resource_id: str, version_id: int
    ) -> StoredResource | None: ...


class ConnectionReader:
    """Reads through the repository on a SQLAlchemy connection, in the thread pool."""

    def __init__(self, connect: Callable[[], AbstractContextManager[Connection | Session]]):
        self._connect = connect

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _current(self, resource_type: str, resource_id: str) -> StoredResource | None:
        with self._connect() as db:
            return repository.get_current(db, resource_type, resource_id)

    def _version(
        self, resource_type: str, resource_id: str, version_id: int
    ) -> StoredResource | None:
        with self._connect() as db:
            return repository.get_version(db, resource_type, resource_id, version_id)

    async def current(self, resource_type: str, resource_id: str) -> StoredResource | None:
        return await run_in_threadpool(self._current, resource_type, resource_id)

    async def version(
        self, resource_type: str, resource_id: str, version_id: int
    ) -> StoredResource | None:
        return await run_in_threadpool(self._version, resource_type, resource_id, version_id)


def _compile(statement: Any) -> str:
    dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
    return str(statement.compile(dialect=dialect))


_CURRENT_SQL = _compile(
    select(*repository.CURRENT_COLUMNS).where(
        ResourceRow.resource_type == bindparam("resource_type"),
        ResourceRow.resource_id == bindparam("resource_id"),
    )
)
_VERSION_SQL = _compile(
    select(*repository.VERSION_COLUMNS).where(
        HistoryRow.resource_type == bindparam("resource_type"),
        HistoryRow.resource_id == bindparam("resource_id"),
        HistoryRow.version_id == bindparam("version_id"),
    )
)


def _stored(row: Any) -> StoredResource:
    # psycopg gives timestamptz in the session's time zone; the API speaks UTC.
    return replace(repository.stored_from_row(row), last_updated=row.last_updated.astimezone(UTC))


class PostgresReader:
    """Reads on psycopg's asyncio pool (autocommit, prepared after a few uses)."""

    def __init__(self, conninfo: str, *, max_size: int = 10, connect_timeout: float = 10.0):
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True, "row_factory": namedtuple_row},
            timeout=connect_timeout,
            open=False,
        )

    async def open(self) -> None:
        await self._pool.open()

    async def close(self) -> None:
        await self._pool.close()

    async def _one(self, sql: str, params: dict[str, Any]) -> StoredResource | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            row = await cursor.fetchone()
        return None if row is None else _stored(row)

    async def current(self, resource_type: str, resource_id: str) -> StoredResource | None:
        return await self._one(
            _CURRENT_SQL, {"resource_type": resource_type, "resource_id": resource_id}
        )

    async def version(
        self, resource_type: str, resource_id: str, version_id: int
    ) -> StoredResource | None:
        return await self._one(
            _VERSION_SQL,
            {"resource_type": resource_type, "resource_id": resource_id, "version_id": version_id},
        )


def reader_for(engine: Engine, *, max_size: int) -> ResourceReader:
    """The fastest reader for ``engine``'s backend."""
    if engine.dialect.name == "postgresql":
        url = engine.url.set(drivername="postgresql")
        return PostgresReader(url.render_as_string(hide_password=False), max_size=max_size)

    def connect() -> AbstractContextManager[Connection]:
        return engine.connect()

    return ConnectionReader(connect)

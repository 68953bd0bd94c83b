"""The hot read path: read and vread by id, without a thread hop or an ORM on PostgreSQL.

A read is one indexed SELECT that returns the stored JSON text, so what it costs is
round trips and per-request overhead, not the query. On PostgreSQL, ``PostgresReader`` runs
it on psycopg's asyncio connection pool, on the event loop, in autocommit, as a server-side
prepared statement written with positional parameters (``$1``), so psycopg sends it as it
is instead of parsing a long statement again on every read, and the statement does three
things at once: it finds the resource only
if the caller may see it (consent's predicate, compiled by ``store.visibility``), it inserts
the AuditEvent for the access (a data-modifying CTE), and it returns the row. Autocommit makes
that one statement one transaction, so the audit record is committed before a byte of the
resource leaves, and a failed audit insert returns nothing. The SQL is compiled from the same
SQLAlchemy table definitions the rest of the store uses, once per shape of consent predicate.

``ConnectionReader`` does the same with the repository's ordinary queries in one transaction
in the thread pool: it serves SQLite (the embedded default) and the tests that hold a
connection open.
"""

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol, TypeVar

from psycopg import AsyncRawCursor
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import (
    ARRAY,
    Connection,
    Engine,
    String,
    func,
    insert,
    literal,
    literal_column,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, aliased
from starlette.concurrency import run_in_threadpool

from consent.audit import AuditRecord
from consent.visibility import AllOf, AnyOf, BrokeGlass, Predicate, Related
from fhir_gateway.access.people import person_references
from fhir_gateway.audit.inline import AUDIT_COLUMNS, audit_params
from fhir_gateway.audit.models import AuditEventRow
from fhir_gateway.audit.repository import add_events
from fhir_gateway.db import SESSION_OPTIONS
from fhir_gateway.identity.models import IdentityRecord
from fhir_gateway.store import repository
from fhir_gateway.store.models import HistoryRow, ResourceRow, UtcDateTime
from fhir_gateway.store.raw import slot
from fhir_gateway.store.repository import StoredResource
from fhir_gateway.store.visibility import compile_visibility

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReadAccess:
    """Who is reading: what they may see, and the audit record of the read (``person`` and
    ``resource`` are filled in from the row found)."""

    predicate: Predicate
    now: datetime
    audit: AuditRecord


class ResourceReader(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def current(
        self, resource_type: str, resource_id: str, access: ReadAccess
    ) -> StoredResource | None: ...

    async def version(
        self, resource_type: str, resource_id: str, version_id: int, access: ReadAccess
    ) -> StoredResource | None: ...


def _audited(access: ReadAccess, db: Session | Connection, found: StoredResource | None) -> None:
    if found is None or found.deleted:
        return  # a miss or a 410 is audited by the error handler, in its own transaction
    person = person_references(db, [found.patient_id]).get(found.patient_id or "")
    add_events(
        db,
        [
            replace(
                access.audit,
                person=person,
                resource=f"{found.resource_type}/{found.resource_id}",
            )
        ],
    )


class ConnectionReader:
    """Reads through the repository in one transaction, in the thread pool."""

    def __init__(self, connect: Callable[[], AbstractContextManager[Connection | Session]]):
        self._connect = connect

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _current(
        self, resource_type: str, resource_id: str, access: ReadAccess
    ) -> StoredResource | None:
        visible = compile_visibility(access.predicate, now=access.now)
        with self._connect() as db:
            found = repository.get_current(db, resource_type, resource_id, visible=visible)
            _audited(access, db, found)
            return found

    def _version(
        self, resource_type: str, resource_id: str, version_id: int, access: ReadAccess
    ) -> StoredResource | None:
        def visible_on(row: Any) -> Any:
            return compile_visibility(access.predicate, now=access.now, row=row)

        with self._connect() as db:
            found = repository.get_version(
                db, resource_type, resource_id, version_id, visible_on=visible_on
            )
            _audited(access, db, found)
            return found

    def within(self, work: Callable[..., T], *args: Any) -> T:
        """``work(db, *args)`` in one transaction (call from the thread pool)."""
        with self._connect() as db:
            return work(db, *args)

    async def current(
        self, resource_type: str, resource_id: str, access: ReadAccess
    ) -> StoredResource | None:
        return await run_in_threadpool(self._current, resource_type, resource_id, access)

    async def version(
        self, resource_type: str, resource_id: str, version_id: int, access: ReadAccess
    ) -> StoredResource | None:
        return await run_in_threadpool(
            self._version, resource_type, resource_id, version_id, access
        )


def _audited_read(found: Any, *, per_read: tuple[str, ...] = ()) -> Any:
    """SELECT ``found``'s columns, inserting the AuditEvent of the read as a CTE.
    ``per_read``: audit columns taken from ``found``'s own column ``g_<name>`` (a grouped
    read's, which differ from read to read) instead of from their slots."""
    r = found.cte("r")
    person = func.coalesce(
        select(literal("Person/") + IdentityRecord.person_id)
        .where(IdentityRecord.patient_id == r.c.patient_id)
        .scalar_subquery(),
        literal("Patient/") + r.c.patient_id,
    )
    columns = AuditEventRow.__table__.c
    values = select(
        *(
            r.c[f"g_{name}"] if name in per_read else slot(f"a_{name}", columns[name].type)
            for name in ("event_id", *AUDIT_COLUMNS)
        ),
        person,
        r.c.resource_type + "/" + r.c.resource_id,
    ).where(r.c.deleted.is_(False))
    audit = (
        insert(AuditEventRow)
        .from_select(["event_id", *AUDIT_COLUMNS, "person", "resource"], values)
        .cte("audited")
    )
    return select(*(c for c in r.c)).add_cte(audit)


@dataclass(frozen=True, slots=True)
class ReadStatement:
    """A read's SQL with positional parameters (``$1``...), and where each comes from: the
    constants of the caller's predicate (fixed when it was compiled) or a slot each
    execution fills in (the key, the time, the audit record)."""

    sql: bytes
    order: tuple[str, ...]
    constants: dict[str, Any]

    def bind(self, given: dict[str, Any]) -> list[Any]:
        constants = self.constants
        return [given[name] if name in given else constants[name] for name in self.order]


_COMPILED: dict[tuple[str, int, bool], tuple[Predicate, ReadStatement]] = {}


def _compiled(kind: str, predicate: Predicate, *, audited: bool = True) -> ReadStatement:
    """The SQL of a read for one shape of caller, remembered by the predicate object's
    identity (``access.service.predicate_for`` returns the same object to the same
    caller), so a read neither rebuilds nor rehashes the tree."""
    key = (kind, id(predicate), audited)
    found = _COMPILED.get(key)
    if found is not None and found[0] is predicate:
        return found[1]
    if kind == "group":
        statement = _compile_group(predicate, audited=audited)
    else:
        statement = _compile_read(kind, predicate, audited=audited)
    if len(_COMPILED) > 2048:
        _COMPILED.clear()
    _COMPILED[key] = (predicate, statement)
    return statement


def _compile_read(kind: str, predicate: Predicate, *, audited: bool) -> ReadStatement:
    """The read's SQL. The row is first found by its key in a MATERIALIZED CTE, and consent's
    predicate is tested on that one row: PostgreSQL then runs its subqueries once for the
    row, instead of (with a prepared statement's generic plan) hashing every relationship
    of the caller's organisation on every read. ``audited``: with the AuditEvent's insert
    (the read path always; without it only to measure what the insert costs)."""
    now = slot("consent_now", UtcDateTime())
    found: Any
    current = (
        select(ResourceRow)
        .where(
            ResourceRow.resource_type == slot("resource_type"),
            ResourceRow.resource_id == slot("resource_id"),
        )
        .cte("candidate")
        .prefix_with("MATERIALIZED")
    )
    row = aliased(ResourceRow, current)
    if kind == "current":
        found = select(*_current_columns(row)).where(
            compile_visibility(predicate, now=now, row=row)
        )
    else:
        version = (
            select(HistoryRow)
            .where(
                HistoryRow.resource_type == slot("resource_type"),
                HistoryRow.resource_id == slot("resource_id"),
                HistoryRow.version_id == slot("version_id"),
            )
            .cte("version")
            .prefix_with("MATERIALIZED")
        )
        old = aliased(HistoryRow, version)
        found = (
            select(
                old.resource_pk.label("pk"),
                old.resource_type,
                old.resource_id,
                old.version_id,
                old.last_updated,
                (old.method == literal_column("'DELETE'")).label("deleted"),
                old.body,
                row.patient_id,
            )
            .select_from(old)
            .join(row, row.pk == old.resource_pk)
            .where(
                compile_visibility(predicate, now=now, row=row),
                # The version is governed by its own labels as well as the resource's now.
                compile_visibility(predicate, now=now, row=old),
            )
        )
    return _statement(_audited_read(found) if audited else found)


def _current_columns(row: Any) -> tuple[Any, ...]:
    """What a read of the current version returns of its row."""
    return (
        row.pk,
        row.resource_type,
        row.resource_id,
        row.version_id,
        row.last_updated,
        row.deleted,
        row.body,
        row.patient_id,
        row.source_org,
    )


def _statement(query: Any) -> ReadStatement:
    dialect = postgresql.psycopg.dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
    compiled = query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    constants = {k: v for k, v in compiled.params.items() if v is not None}
    order = tuple(compiled.positiontup or ())
    return ReadStatement(str(compiled).encode(), order, constants)


# The audit columns that differ between the reads of one group (the user among them); the
# others (organisation, role, purpose, break-glass...: ``GROUP_SHARED``) and the shape of the
# consent predicate (``group_shape``) are the group's, and only reads that agree on them are
# grouped.
GROUP_PER_READ = ("event_id", "recorded_at", "query", "agent")
GROUP_LIMIT = 64  # reads in one statement at most
GROUP_SHARED = tuple(n for n in AUDIT_COLUMNS if n not in GROUP_PER_READ)
# What a grouped statement takes as one array per name: each read's key, its own audit values
# (from the read's slots of the same name: ``resource_type``, ``a_event_id``...) and the
# practitioner its caller's predicate names (``practitioner``).
_GROUP_KEYED = ("resource_type", "resource_id", *GROUP_PER_READ, "practitioner")

PER_READ_PRACTITIONER = "(the practitioner of each read)"
"""What a group's shape (``group_shape``) holds where its callers' predicates name their
practitioner. It is never compared as a value: the grouped statement tests each row against
its own read's practitioner instead; compiled any other way it matches no one."""

_SHAPES: dict[int, tuple[Predicate, Predicate, str | None]] = {}
_SHAPE_OF: dict[Predicate, Predicate] = {}


def group_shape(predicate: Predicate) -> tuple[Predicate, str | None]:
    """(``predicate`` with the practitioner it names taken out, that practitioner).

    Callers whose predicates differ only by the practitioner that their relationship and
    break-glass tests name (the users of one organisation with one role and purpose) have
    one shape, and their reads can share a statement that tests each row against its own
    read's practitioner. A tree naming no practitioner is its own shape (None); one naming
    two is left whole (its own shape and None: grouped only with equal trees). Equal shapes
    are the same object, remembered by the predicate's identity
    (``access.service.predicate_for`` returns the same object to the same caller)."""
    found = _SHAPES.get(id(predicate))
    if found is not None and found[0] is predicate:
        return found[1], found[2]
    named: set[str] = set()
    _practitioners(predicate, named)
    practitioner = next(iter(named)) if len(named) == 1 else None
    shape = predicate if practitioner is None else _without_practitioner(predicate)
    shape = _SHAPE_OF.setdefault(shape, shape)
    if len(_SHAPES) > 4096:
        _SHAPES.clear()
        _SHAPE_OF.clear()
        _SHAPE_OF[shape] = shape
    _SHAPES[id(predicate)] = (predicate, shape, practitioner)
    return shape, practitioner


def _practitioners(node: Predicate, named: set[str]) -> None:
    if isinstance(node, AnyOf | AllOf):
        for item in node.items:
            _practitioners(item, named)
    elif isinstance(node, Related | BrokeGlass) and node.practitioner is not None:
        named.add(node.practitioner)


def _without_practitioner(node: Predicate) -> Predicate:
    if isinstance(node, AnyOf | AllOf):
        return replace(node, items=tuple(_without_practitioner(i) for i in node.items))
    if isinstance(node, Related | BrokeGlass) and node.practitioner is not None:
        return replace(node, practitioner=PER_READ_PRACTITIONER)
    return node


def _compile_group(shape: Predicate, *, audited: bool) -> ReadStatement:
    """Several current reads by callers of one ``shape`` (``group_shape``) as one statement
    (see ``PostgresReader``): the keys, and each read's event id, time, query, user and
    practitioner, come as arrays (``unnest ... WITH ORDINALITY``); each row found carries its
    read's position (``g_ord``). Consent's predicate is tested on each candidate row as in
    ``_compile_read``, with its read's own practitioner, and each released row gets its own
    AuditEvent, all committed by the one statement."""
    now = slot("consent_now", UtcDateTime())
    # Unbounded text (as the single read's slots), so that an over-long key is compared
    # whole rather than cut to the column's length by the cast.
    want = (
        func.unnest(
            *(
                slot(f"all_{name}", ARRAY(UtcDateTime() if name == "recorded_at" else String()))
                for name in _GROUP_KEYED
            )
        )
        .table_valued(*_GROUP_KEYED, with_ordinality="ord")
        .render_derived(name="want")
    )
    candidate = (
        select(
            ResourceRow,
            want.c.ord.label("g_ord"),
            *(want.c[name].label(f"g_{name}") for name in (*GROUP_PER_READ, "practitioner")),
        )
        .select_from(want)
        .join(
            ResourceRow,
            (ResourceRow.resource_type == want.c.resource_type)
            & (ResourceRow.resource_id == want.c.resource_id),
        )
        .cte("candidate")
        .prefix_with("MATERIALIZED")
    )
    row = aliased(ResourceRow, candidate)
    found = select(
        *_current_columns(row),
        candidate.c.g_ord,
        *(candidate.c[f"g_{name}"] for name in GROUP_PER_READ),
    ).where(compile_visibility(shape, now=now, row=row, practitioner=candidate.c.g_practitioner))
    return _statement(_audited_read(found, per_read=GROUP_PER_READ) if audited else found)


def _params(access: ReadAccess, **given: Any) -> dict[str, Any]:
    """The values of a read's slots."""
    params = dict(given)
    params["consent_now"] = access.now
    params.update(audit_params(access.audit))
    return params


def group_read(
    access: ReadAccess, **given: Any
) -> tuple[tuple[Any, ...], Predicate, dict[str, Any]]:
    """A current read by id as ``PostgresReader`` groups it: (its lane's key, the shape of its
    caller's predicate, its slots' values with the practitioner the predicate names). Reads
    of one key may go in one statement (``group_statement``)."""
    shape, practitioner = group_shape(access.predicate)
    params = _params(access, practitioner=practitioner, **given)
    return (id(shape), *(params[f"a_{name}"] for name in GROUP_SHARED)), shape, params


def group_statement(
    predicate: Predicate, reads: list[tuple[datetime, dict[str, Any]]]
) -> tuple[bytes, list[Any]]:
    """The SQL and values of one statement for ``reads`` (each its time and its values from
    ``group_read``), by callers whose predicates have ``predicate``'s shape (``group_shape``) and who agree on
    ``GROUP_SHARED``."""
    first = reads[0][1]
    given = {f"a_{name}": first[f"a_{name}"] for name in GROUP_SHARED}
    # Consent is decided as of the latest of the reads' times (every read had been asked by
    # then); each AuditEvent keeps its own read's time.
    given["consent_now"] = max(now for now, _params_of in reads)
    for name in _GROUP_KEYED:
        own = name if name in ("resource_type", "resource_id", "practitioner") else f"a_{name}"
        given[f"all_{name}"] = [p[own] for _n, p in reads]
    statement = _compiled("group", group_shape(predicate)[0])
    return statement.sql, statement.bind(given)


def group_answers(rows: list[Any], count: int) -> list[StoredResource | None]:
    """Each of ``count`` grouped reads' answer, from the rows of its statement."""
    answers: list[StoredResource | None] = [None] * count
    for row in rows:
        answers[row.g_ord - 1] = repository.stored_from_row(row, utc=True)
    return answers


# A read waiting in its lane: its time, its slots' values, its caller's own predicate (a
# read that goes alone runs its caller's single-read statement) and its answer to come.
_Waiting = tuple[datetime, dict[str, Any], Predicate, "asyncio.Future[StoredResource | None]"]


@dataclass(slots=True)
class _Lane:
    """The reads by id in progress of callers of one shape (``group_shape``) who agree on
    ``GROUP_SHARED``: whether their statement is running, and the reads waiting for the
    next. Holding the shape keeps its ``id`` (part of the lane's key) from being reused
    while the lane exists."""

    shape: Predicate
    busy: bool = False
    waiting: list[_Waiting] = field(default_factory=list)


class PostgresReader:
    """Reads on psycopg's asyncio pools (autocommit, raw positional statements, prepared
    after a few uses).

    Two pools, because PostgreSQL plans a prepared statement afresh for each execution
    while it judges that the values might change the plan (its "custom plans"): right for a
    search, whose best plan depends on its values (a name prefix can use an index only once
    PostgreSQL knows it), but for the statements whose plan does not (a resource by its key,
    a person's record by its patients), planning costs more than executing, and more again
    under consent's longer predicates. Those run on ``fixed_pool``, whose connections keep
    one generic plan per prepared statement (``plan_cache_mode = force_generic_plan``).

    Reads by id are grouped per kind of caller. Each read's AuditEvent makes the read a write
    transaction, whose commit costs PostgreSQL more than the read itself; so each kind of
    caller has one read statement running at a time, and the reads that arrive meanwhile
    wait and then go as one statement (``_compile_group``, at most ``GROUP_LIMIT``): each
    read still finds only what consent lets its own caller see and gets its own AuditEvent,
    and they all commit in one transaction before any of them is answered. A kind of caller
    is one shape of consent predicate (``group_shape``: the predicate but for the
    practitioner it names, which each read brings) with one set of the audit's shared
    values (organisation, role, purpose, break-glass...: ``GROUP_SHARED``): the users of one
    organisation with one role and purpose share statements, other callers never do. A read
    that finds nothing running waits one turn of the event loop for the reads arriving with
    it, then goes (alone, as its caller's single-read statement, if none came); a group is
    decided as of the latest of its reads' times. If the statement fails, every read in it
    fails, as each would have failed alone (the audit could not be written: nothing is
    released).
    """

    def __init__(
        self,
        conninfo: str,
        *,
        max_size: int = 10,
        connect_timeout: float = 10.0,
    ):
        self._lanes: dict[tuple[Any, ...], _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # The session speaks UTC, as the API does: psycopg then gives timestamps in
        # ``datetime.UTC`` itself, which costs nothing to convert (a zone it must look up
        # costs microseconds a row, hundreds of rows a request).
        given = conninfo_to_dict(conninfo).get("options") or ""
        options = f"{given} {SESSION_OPTIONS} -c TimeZone=UTC".strip()
        self._pool = self._make_pool(conninfo, max_size, connect_timeout, options=options)
        self._fixed_pool = self._make_pool(
            conninfo,
            max_size,
            connect_timeout,
            options=f"{options} -c plan_cache_mode=force_generic_plan",
        )

    @staticmethod
    def _make_pool(
        conninfo: str, max_size: int, connect_timeout: float, **connect: str
    ) -> AsyncConnectionPool[Any]:
        return AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            kwargs={
                "autocommit": True,
                "row_factory": namedtuple_row,
                "cursor_factory": AsyncRawCursor,
                **connect,
            },
            timeout=connect_timeout,
            open=False,
        )

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        """The pool for statements whose plan depends on their values (searches)."""
        return self._pool

    @property
    def fixed_pool(self) -> AsyncConnectionPool[Any]:
        """The pool for statements whose plan does not depend on their values (generic
        plans: see the class's docstring)."""
        return self._fixed_pool

    async def open(self) -> None:
        await self._pool.open()
        await self._fixed_pool.open()

    async def close(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._pool.close()
        await self._fixed_pool.close()

    async def _one(self, statement: ReadStatement, given: dict[str, Any]) -> StoredResource | None:
        async with self._fixed_pool.connection() as conn:
            cursor = await conn.execute(statement.sql, statement.bind(given))
            row = await cursor.fetchone()
        return None if row is None else repository.stored_from_row(row, utc=True)

    async def current(
        self, resource_type: str, resource_id: str, access: ReadAccess
    ) -> StoredResource | None:
        key, shape, params = group_read(
            access, resource_type=resource_type, resource_id=resource_id
        )
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(shape)
        waiting: asyncio.Future[StoredResource | None] = asyncio.get_running_loop().create_future()
        lane.waiting.append((access.now, params, access.predicate, waiting))
        if not lane.busy:
            lane.busy = True
            try:
                await asyncio.sleep(0)  # the reads arriving now join this one's statement
            finally:
                self._next(key, lane)
        return await waiting

    def _next(self, key: tuple[Any, ...], lane: "_Lane") -> None:
        """After a statement of ``lane``: the reads that queued meanwhile, as one statement."""
        waiting = [w for w in lane.waiting if not w[3].done()]
        group, lane.waiting = waiting[:GROUP_LIMIT], waiting[GROUP_LIMIT:]
        if not group:
            lane.busy = False
            if self._lanes.get(key) is lane:
                del self._lanes[key]
            return
        task = asyncio.create_task(self._group(key, lane, group))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _group(self, key: tuple[Any, ...], lane: "_Lane", group: list[_Waiting]) -> None:
        try:
            found = await self._grouped(group)
        except asyncio.CancelledError:
            for *_read, waiting in group:
                waiting.cancel()
            raise
        except Exception as exc:  # each read fails as it would have failed alone
            for *_read, waiting in group:
                if not waiting.done():
                    waiting.set_exception(exc)
        else:
            for (*_read, waiting), stored in zip(group, found, strict=True):
                if not waiting.done():
                    waiting.set_result(stored)
        finally:
            self._next(key, lane)

    async def _grouped(self, group: list[_Waiting]) -> list[StoredResource | None]:
        """Each read of ``group``'s answer, by one statement (a group of one: the read's own)."""
        if len(group) == 1:
            _now, given, predicate, _waiting = group[0]
            return [await self._one(_compiled("current", predicate), given)]
        sql, values = group_statement(group[0][2], [(now, given) for now, given, *_ in group])
        async with self._fixed_pool.connection() as conn:
            cursor = await conn.execute(sql, values)
            return group_answers(await cursor.fetchall(), len(group))

    async def version(
        self, resource_type: str, resource_id: str, version_id: int, access: ReadAccess
    ) -> StoredResource | None:
        return await self._one(
            _compiled("version", access.predicate),
            _params(
                access, resource_type=resource_type, resource_id=resource_id, version_id=version_id
            ),
        )


def reader_for(engine: Engine, *, max_size: int) -> ResourceReader:
    """The fastest reader for ``engine``'s backend."""
    if engine.dialect.name == "postgresql":
        url = engine.url.set(drivername="postgresql")
        return PostgresReader(url.render_as_string(hide_password=False), max_size=max_size)

    writer = engine.execution_options(sqlite_immediate=True)

    def connect() -> AbstractContextManager[Connection]:
        # One transaction per read, which writes its audit record: on SQLite it begins
        # IMMEDIATE like every other writer, so it waits its turn instead of failing.
        return writer.begin()

    return ConnectionReader(connect)

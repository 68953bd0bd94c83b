"""``Patient/$everything`` for one caller: the joined-up record of the person a patient
belongs to, as consent lets the caller see it, audited.

What a request does: find the person's source patients (identity), decide the person-level
parts of the caller's predicate once (``access.people.person_visibility``), check that the
caller may see the patient asked about (404 otherwise, 410 if deleted), read one page of the
record with the resources it refers to (``store.everything``), record one AuditEvent per
person released, and say whether anything was withheld (never what or how much).

Two ways to run it, with the same answers (``tests/fhir_gateway/record/test_everything_sql``
compares them on random worlds):

- ``in_session``: the store's queries in one transaction. It serves SQLite (the embedded
  default) and the tests that hold a connection open.
- ``PostgresEverything``: two statements on the read path's asyncio pool for statements
  whose plan does not depend on their values (``PostgresReader.fixed_pool``), in autocommit.
  The first (``FACTS_SQL``, fixed) reads the person's source patients with their
  relationships, break-glass grants and whether they have any directive. The second
  (``page_statement``, compiled once per shape of request and specialised predicate) checks
  the patient, reads the page, the referenced resources, the total and whether something is
  withheld, and inserts the AuditEvents as a data-modifying CTE: one statement is one
  transaction, so the audit records commit with the data they describe, before a byte of it
  leaves, and a failed insert releases nothing. Raw positional SQL on psycopg, prepared
  after a few uses: no ORM, no statement built per request.
"""

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import (
    Integer,
    String,
    and_,
    any_,
    case,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    null,
    or_,
    select,
    union,
    union_all,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, aliased
from starlette.concurrency import run_in_threadpool

from consent.visibility import Predicate, specialise
from fhir_gateway.access.people import (
    FACTS_SQL,
    NOBODY,
    Who,
    per_person,
    person_facts,
    person_references,
    person_visibility,
    who_from_rows,
)
from fhir_gateway.audit.inline import audit_events, audit_params
from fhir_gateway.audit.repository import add_events
from fhir_gateway.identity import service as identity
from fhir_gateway.outcomes import Gone, NotFound
from fhir_gateway.store import repository
from fhir_gateway.store.everything import (
    REFERENCED_TYPES,
    EverythingPage,
    care_date_filter,
    everything,
)
from fhir_gateway.store.models import ResourceRow, UtcDateTime, search_reference
from fhir_gateway.store.raw import slot
from fhir_gateway.store.reads import (
    ConnectionReader,
    PostgresReader,
    ReadAccess,
    ReadStatement,
    ResourceReader,
)
from fhir_gateway.store.repository import StoredResource
from fhir_gateway.store.visibility import (
    ArrayText,
    _TextArray,
    array_literal,
    compile_visibility_live,
    compile_visibility_shared,
    scope_of,
    something_withheld,
    withheld_candidates,
    withheld_clause,
    withheld_scope,
)


@dataclass(frozen=True, slots=True)
class EverythingQuery:
    """One ``$everything`` request, its parameters already checked."""

    patient_id: str
    count: int
    cursor: int | None = None
    types: tuple[str, ...] = ()
    since: datetime | None = None
    start: datetime | None = None
    end: datetime | None = None
    # Whether the caller may be told that something is withheld (never the person).
    tell_withheld: bool = True

    @property
    def person_wanted(self) -> bool:
        return not self.types or "Person" in self.types

    @property
    def referenced_types(self) -> list[str]:
        """Which referenced types come with the first page."""
        if self.cursor is not None:
            return []
        return [t for t in REFERENCED_TYPES if not self.types or t in self.types]


@dataclass(frozen=True, slots=True)
class EverythingResult:
    person_id: str | None
    page: EverythingPage
    withheld: bool


def _require(found: StoredResource | None, patient_id: str) -> None:
    if found is None:
        raise NotFound(f"Patient/{patient_id} is not known")
    if found.deleted:
        raise Gone(f"Patient/{patient_id} has been deleted")


# --- In one transaction (SQLite, and connections held by tests) ------------------------------


def in_session(
    db: repository.Reader, query: EverythingQuery, access: ReadAccess
) -> EverythingResult:
    """``$everything`` in ``db``'s transaction: on PostgreSQL the same two statements as
    ``PostgresEverything`` (on the transaction's own connection), elsewhere the store's
    queries."""
    connection = db.connection() if isinstance(db, Session) else db
    if connection.dialect.name == "postgresql":
        driver = cast(psycopg.Connection[Any], connection.connection.driver_connection)
        with psycopg.RawCursor(driver, row_factory=namedtuple_row) as cursor:
            who = who_from_rows(
                query.patient_id, cursor.execute(FACTS_SQL, [query.patient_id]).fetchall()
            )
            sql, params = statement_for(query, who, access)
            return result_from_rows(query, who, cursor.execute(sql, params).fetchall())
    person_id, patient_ids = identity.joined_patients(db, query.patient_id)  # type: ignore[arg-type]
    ids = sorted({*patient_ids, query.patient_id})
    forms = person_visibility(access.predicate, person_facts(db, ids), ids, now=access.now)
    _require(
        repository.get_current(db, "Patient", query.patient_id, visible=forms.within),
        query.patient_id,
    )
    page = everything(
        db,  # type: ignore[arg-type]
        patient_ids,
        count=query.count,
        cursor=query.cursor,
        types=query.types,
        since=query.since,
        start=query.start,
        end=query.end,
        visible=forms.within,
        visible_included=forms.guarded,
        # The Person is in its first patient's compartment (Person.link), so it is usually a
        # match already; otherwise it comes first among the includes.
        also_include=[("Person", person_id)] if person_id and query.person_wanted else [],
    )
    released = [*page.resources, *page.included]
    persons = person_references(db, (r.patient_id for r in released)).values()
    add_events(db, per_person(access.audit, persons))
    withheld = False
    if query.cursor is None and query.tell_withheld:
        withheld = something_withheld(
            db,
            patient_ids=list(patient_ids),
            visible=forms.within,
            types=list(query.types) or None,
            in_scope=scope_of(access.predicate),
        )
    return EverythingResult(person_id, page, withheld)


# --- On PostgreSQL: two statements on the read pool ----------------------------------------


@dataclass(frozen=True, slots=True)
class Shape:
    """What varies the page statement's SQL (besides the caller's predicate)."""

    paged: bool  # a cursor was given
    types: bool
    since: bool
    start: bool
    end: bool
    referenced: bool  # referenced resources (and the Person) come with this page
    person: bool  # the Person is asked for among the includes
    withheld: bool  # say whether something is withheld


def shape_of(query: EverythingQuery, who: Who) -> Shape:
    first = query.cursor is None
    return Shape(
        paged=not first,
        types=bool(query.types),
        since=query.since is not None,
        start=query.start is not None,
        end=query.end is not None,
        referenced=first and bool(query.referenced_types),
        person=first and who.person_id is not None and query.person_wanted,
        withheld=first and query.tell_withheld,
    )


_COLUMNS = tuple(c.key for c in repository.CURRENT_COLUMNS)


def _compile_page(within_tree: Predicate, predicate: Predicate, shape: Shape) -> ReadStatement:
    row = ResourceRow
    theirs = row.patient_id == any_(slot("pats", _TextArray()))
    within = and_(theirs, compile_visibility_shared(within_tree))
    guarded = or_(
        within,
        and_(
            row.patient_id.is_(None),
            compile_visibility_shared(specialise(predicate, NOBODY, now=datetime.now(UTC))),
        ),
        and_(not_(theirs), compile_visibility_live(predicate)),
    )
    # The patient asked about, found by its key, then tested (see ``repository.get_current``).
    key = aliased(ResourceRow)
    anchor = (
        select(row.deleted)
        .where(
            row.pk
            == select(key.pk)
            .where(
                key.resource_type == literal_column("'Patient'"),
                key.resource_id == slot("patient_id"),
            )
            .scalar_subquery(),
            within,
        )
        .cte("anchor")
        .prefix_with("MATERIALIZED")
    )
    conditions: list[Any] = [theirs, row.deleted.is_(False), within]
    if shape.types:
        conditions.append(row.resource_type == any_(slot("types", _TextArray())))
    if shape.since:
        conditions.append(row.last_updated >= slot("since", UtcDateTime()))
    if shape.start or shape.end:
        conditions.append(
            care_date_filter(
                slot("start", UtcDateTime()) if shape.start else None,
                slot("end", UtcDateTime()) if shape.end else None,
            )
        )
    page_conditions = list(conditions)
    if shape.paged:
        page_conditions.append(row.pk > slot("cursor", Integer()))
    columns = repository.CURRENT_COLUMNS
    page = (
        select(*columns)
        .where(*page_conditions)
        .order_by(row.pk)
        .limit(slot("limit", Integer()))
        .cte("page")
        .prefix_with("MATERIALIZED")
    )
    counted = select(func.count()).select_from(row).where(*conditions).scalar_subquery()
    # Whether this page holds everything the caller may see (a first page that did not
    # overflow). Then the page's rows are the record: its length is the total, and the
    # predicate need not be tested again for the references or the withheld notice. An
    # uncorrelated condition, so PostgreSQL decides it once and skips the branches it rules
    # out (one-time filters).
    whole: Any = None
    if shape.paged:
        total: Any = counted
    else:
        over = select(func.count()).select_from(page).scalar_subquery()
        whole = over <= slot("count", Integer())
        total = case((whole, null()), else_=counted)
    parts = [select(literal_column("'m'").label("what"), *page.c)]
    released = [select(page.c.patient_id)]
    if shape.referenced or shape.person:
        wanted: list[Any] = []
        if shape.referenced:
            # The record's rows: the page's when it is whole, else found (and tested) again.
            owned: Any = select(row.pk).where(*conditions)
            if whole is not None:
                owned = union_all(select(page.c.pk).where(whole), owned.where(not_(whole)))
            ref = search_reference
            wanted.append(
                select(ref.c.target_type, ref.c.target_id).where(
                    ref.c.resource_pk.in_(owned),
                    ref.c.target_type == any_(slot("wanted", _TextArray())),
                    ref.c.target_id.is_not(None),
                )
            )
        if shape.person:
            wanted.append(
                select(
                    literal_column("'Person'", String()).label("target_type"),
                    slot("person_id", String()).label("target_id"),
                )
            )
        either: Any = wanted[0] if len(wanted) == 1 else union(*wanted)
        targets = either.cte("targets")
        included = (
            select(*columns)
            .select_from(row)
            .join(
                targets,
                and_(
                    row.resource_type == targets.c.target_type,
                    row.resource_id == targets.c.target_id,
                ),
            )
            .where(row.deleted.is_(False), guarded)
            .cte("included")
            .prefix_with("MATERIALIZED")
        )
        parts.append(select(literal_column("'i'"), *included.c))
        released.append(select(included.c.patient_id))
    released_rows: Any = released[0] if len(released) == 1 else union(*released)
    source = released_rows.cte("released")
    # One AuditEvent per person released (at least one), only if the patient may be seen.
    audited = audit_events(
        source, anchor_ok=exists(select(anchor.c.deleted).where(anchor.c.deleted.is_(False)))
    )
    rows = union_all(*parts).subquery("x")
    withheld: Any = literal(False)
    if shape.withheld:
        types = row.resource_type == any_(slot("types", _TextArray())) if shape.types else None
        in_scope = scope_of(predicate)
        withheld = withheld_clause(patients=theirs, visible=within, types=types, in_scope=in_scope)
        if whole is not None and not (shape.since or shape.start or shape.end):
            # A whole page holding every row the notice counts hides none of them: no need
            # to test each row again (only when some is missing, is it sealed or withheld?).
            candidates = (
                select(func.count())
                .select_from(row)
                .where(*withheld_scope(theirs, types, in_scope))
            )
            shown = (
                select(func.count())
                .select_from(page)
                .where(*withheld_candidates(page.c.source_org, page.c.resource_type))
            )
            withheld = case(
                (and_(whole, candidates.scalar_subquery() == shown.scalar_subquery()), false()),
                else_=withheld,
            )
    statement = (
        select(
            anchor.c.deleted.label("anchor_deleted"),
            total.label("total"),
            withheld.label("withheld"),
            *rows.c,
        )
        .select_from(anchor.outerjoin(rows, literal(True)))
        .order_by(rows.c.what.desc(), rows.c.pk)
        .add_cte(audited)
    )
    dialect = postgresql.psycopg.dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    constants = {k: v for k, v in compiled.params.items() if v is not None}
    order = tuple(compiled.positiontup or ())
    return ReadStatement(str(compiled).encode(), order, constants)


_STATEMENTS: OrderedDict[tuple[Predicate, int, Shape], tuple[Predicate, ReadStatement]] = (
    OrderedDict()
)
_STATEMENTS_LOCK = threading.Lock()
STATEMENT_CACHE_SIZE = 512


def page_statement(within_tree: Predicate, predicate: Predicate, shape: Shape) -> ReadStatement:
    """The page statement for a caller (``predicate``, by identity: ``predicate_for`` returns
    the same object to the same caller), a person's specialised tree (by value: most
    people's is the same) and a shape; compiled once, then remembered."""
    key = (within_tree, id(predicate), shape)
    with _STATEMENTS_LOCK:
        found = _STATEMENTS.get(key)
        if found is not None and found[0] is predicate:
            _STATEMENTS.move_to_end(key)
            return found[1]
    statement = _compile_page(within_tree, predicate, shape)
    with _STATEMENTS_LOCK:
        _STATEMENTS[key] = (predicate, statement)
        while len(_STATEMENTS) > STATEMENT_CACHE_SIZE:
            _STATEMENTS.popitem(last=False)
    return statement


def page_params(query: EverythingQuery, who: Who, access: ReadAccess) -> dict[str, Any]:
    params: dict[str, Any] = {
        "pats": ArrayText(array_literal(sorted(set(who.patient_ids)))),
        "patient_id": query.patient_id,
        "limit": query.count + 1,
        "count": query.count,
        "consent_now_live": access.now,
    }
    if query.cursor is not None:
        params["cursor"] = query.cursor
    if query.types:
        params["types"] = ArrayText(array_literal(sorted(set(query.types))))
    if query.since is not None:
        params["since"] = query.since
    if query.start is not None:
        params["start"] = query.start
    if query.end is not None:
        params["end"] = query.end
    wanted = query.referenced_types
    if wanted:
        params["wanted"] = ArrayText(array_literal(wanted))
    if who.person_id is not None:
        params["person_id"] = who.person_id
    params.update(audit_params(access.audit))
    return params


def result_from_rows(query: EverythingQuery, who: Who, rows: Sequence[Any]) -> EverythingResult:
    """The page from the page statement's rows (404 with none: the patient was not found or
    may not be seen; 410 if it is deleted)."""
    if not rows:
        raise NotFound(f"Patient/{query.patient_id} is not known")
    head = rows[0]
    if head.anchor_deleted:
        raise Gone(f"Patient/{query.patient_id} has been deleted")
    matched = [repository.stored_from_row(r, utc=True) for r in rows if r.what == "m"]
    resources = matched[: query.count]
    next_cursor = resources[-1].pk if len(matched) > query.count and resources else None
    total = len(resources) if head.total is None else int(head.total)
    keys = {(r.resource_type, r.resource_id) for r in resources}
    person_key = ("Person", who.person_id)
    first: list[StoredResource] = []
    rest: list[StoredResource] = []
    for r in rows:
        if r.what != "i" or (r.resource_type, r.resource_id) in keys:
            continue
        (first if (r.resource_type, r.resource_id) == person_key else rest).append(
            repository.stored_from_row(r, utc=True)
        )
    rest.sort(key=lambda r: (r.resource_type, r.resource_id))
    page = EverythingPage(resources, first + rest, next_cursor, total)
    return EverythingResult(who.person_id, page, bool(head.withheld))


def statement_for(query: EverythingQuery, who: Who, access: ReadAccess) -> tuple[bytes, list[Any]]:
    """The page statement's SQL and its positional parameters."""
    tree = specialise(access.predicate, who.facts, now=access.now)
    statement = page_statement(tree, access.predicate, shape_of(query, who))
    return statement.sql, statement.bind(page_params(query, who, access))


class PostgresEverything:
    """``$everything`` on the read path's pool (see the module's docstring)."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def run(self, query: EverythingQuery, access: ReadAccess) -> EverythingResult:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(FACTS_SQL, [query.patient_id])
            who = who_from_rows(query.patient_id, await cursor.fetchall())
            sql, params = statement_for(query, who, access)
            cursor = await conn.execute(sql, params)
            rows = await cursor.fetchall()
        return result_from_rows(query, who, rows)


async def read_everything(
    reader: ResourceReader, query: EverythingQuery, access: ReadAccess
) -> EverythingResult:
    """``$everything`` through the fastest way ``reader``'s backend offers."""
    if isinstance(reader, PostgresReader):
        return await PostgresEverything(reader.fixed_pool).run(query, access)
    assert isinstance(reader, ConnectionReader)
    return await run_in_threadpool(reader.within, in_session, query, access)

"""The one place a consent ``Predicate`` becomes SQL.

``compile_visibility(predicate, now=...)`` returns a boolean SQL expression over the
``resource`` table (its label columns, and correlated EXISTS over relationships, directives,
break-glass grants and identity links), which every read path adds to its WHERE clause before
anything is counted, sorted or paged. Nothing here decides policy: it translates the tree
``consent.visibility.visibility`` built, node by node, and fails closed on a node it does not
know.

The person of a resource is every source patient identity has filed under the same Person
as the resource's own patient (and that patient itself, before identity has filed it), so a
relationship or directive recorded against the GP's Patient governs the hospital's and the
council's records of the same person, and unlinking a wrong match separates them again.
"""

import threading
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import postgres
from psycopg.adapt import Dumper
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Integer,
    String,
    and_,
    any_,
    bindparam,
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
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import Grouping
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator

from consent.context import TokenCriterion
from consent.directives import CONFIDENTIALITY_AT_LEAST
from consent.visibility import (
    AllOf,
    AnyOf,
    BrokeGlass,
    Const,
    DirectivesAllow,
    InScope,
    NoPatient,
    NotLabelled,
    OwnPerson,
    Predicate,
    Related,
    SensitivityNone,
    SensitivityWithin,
    SourceIn,
    TypeIn,
    scope_part,
)
from fhir_gateway.access.models import (
    BreakGlassGrantRow,
    CareRelationshipRow,
    ConsentDirectiveRow,
)
from fhir_gateway.identity.models import IdentityRecord
from fhir_gateway.search.model import ParamType
from fhir_gateway.search.registry import SEARCH_PARAMS
from fhir_gateway.search.storage import stored
from fhir_gateway.store.care_dates import CARE_DATE_PARAMS
from fhir_gateway.store.models import ResourceRow, UtcDateTime, search_date, search_token

# The policy's own constants, written into the SQL rather than sent as parameters (they never
# change, and every parameter is one more for the drivers to bind on every execution).
_ONE = literal_column("1", Integer())
_NONE = literal_column("-1", Integer())
_BLANK = literal_column("' '", String())
_SLASH = literal_column("'/'", String())
_REGISTERED = literal_column("'registered'", String())
_DENY = literal_column("'deny'", String())
_PERMIT = literal_column("'permit'", String())


class UncompilablePredicate(TypeError):
    """A predicate node this compiler does not know: refuse rather than guess."""


class ArrayText(str):
    """A text array already written in PostgreSQL's text form (``array_literal``)."""


class _ArrayTextDumper(Dumper):
    """Sends an ``ArrayText`` as it is, declared as ``varchar[]``: PostgreSQL parses it once
    when the statement is bound. (Sent as text and cast in the statement, it would be parsed
    again for every row a prepared statement's generic plan tests.)"""

    oid = postgres.types["varchar"].array_oid

    def dump(self, obj: str) -> bytes:
        connection = self.connection
        return obj.encode(connection.info.encoding if connection is not None else "utf-8")


psycopg.adapters.register_dumper(ArrayText, _ArrayTextDumper)


class _TextArray(TypeDecorator[str]):
    """``varchar[]`` whose value is an ``ArrayText``, passed to the driver untouched."""

    impl = ARRAY(String())
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None


class InSet(ColumnElement[bool]):
    """``column IN (values)``, as one parameter on PostgreSQL (``column = ANY(array)``).

    Consent's predicates test labels against sets (organisations, types); written as IN
    lists they made every statement carry a hundred parameters, which SQLAlchemy expands
    and psycopg re-parses on every execution (psycopg caches only short statements with
    few parameters). On PostgreSQL the set is one ``varchar[]`` parameter whose text is
    written once (psycopg would otherwise dump a list element by element, in Python, on
    every execution). Elsewhere (SQLite) it is the ordinary expanding IN. Same answers:
    NULL for a NULL column, false for no values."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("listed", InternalTraversal.dp_clauseelement),
        ("array", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: Any, values: Iterable[str]) -> None:
        ordered = sorted(set(values))
        self.column = column
        self.listed = bindparam(None, ordered, expanding=True, type_=String())
        self.array = bindparam(None, ArrayText(array_literal(ordered)), type_=_TextArray())


def array_literal(values: Iterable[str]) -> str:
    """PostgreSQL's text form of a one-dimensional text array (``{"a","b"}``): every
    element quoted, its backslashes and double quotes escaped, so any string survives."""
    quoted = ('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values)
    return "{" + ",".join(quoted) + "}"


@compiles(InSet)
def _in_set_default(element: InSet, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column.in_(element.listed), **kw)


@compiles(InSet, "postgresql")
def _in_set_postgresql(element: InSet, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column == any_(element.array), **kw)


def in_set(column: Any, values: Iterable[str]) -> ColumnElement[bool]:
    """``column`` is one of ``values`` (see ``InSet``)."""
    return InSet(column, values)


class Lacks(ColumnElement[bool]):
    """``column`` does not contain ``fragment`` (or, ``at_end``, does not end with it),
    compared exactly, case included: security codes are case-sensitive (``NOPAT`` is not
    ``nopat``).

    On PostgreSQL (and any other database) this is ``NOT LIKE`` with the fragment escaped,
    which is case-sensitive there. SQLite's ``LIKE`` ignores the case of ASCII letters, so
    there it is ``instr(column, fragment) = 0`` (or ``substr(column, -length(fragment)) !=
    fragment``), which compare bytes. Same answers otherwise: NULL for a NULL column."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True
    _traverse_internals = [
        ("portable", InternalTraversal.dp_clauseelement),
        ("exact", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: Any, fragment: str, *, at_end: bool) -> None:
        self.portable = not_(
            column.endswith(fragment, autoescape=True)
            if at_end
            else column.contains(fragment, autoescape=True)
        )
        value = bindparam(None, fragment, type_=String())
        self.exact = (
            func.substr(column, -func.length(value)) != value
            if at_end
            else func.instr(column, value) == literal_column("0", Integer())
        )

    def self_group(self, against: Any = None) -> ColumnElement[Any]:
        # Parenthesised wherever the NOT LIKE form would be, so PostgreSQL's SQL is the
        # same text as before this element existed.
        grouped = self.portable.self_group(against=against)
        return Grouping(self) if grouped is not self.portable else self


@compiles(Lacks)
def _lacks_default(element: Lacks, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.portable, **kw)


@compiles(Lacks, "sqlite")
def _lacks_sqlite(element: Lacks, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.exact, **kw)


def param_rows(table: Any, resource_type: str, code: str) -> ColumnElement[bool]:
    """The index rows of ``table`` that answer ``resource_type``'s parameter ``code``: its own,
    or those of the parameters it is derived from (``fhir_gateway.search.storage``)."""
    rows = stored(resource_type, code)
    clause = _one_of(table.c.param, rows.params)
    if rows.targets:
        clause = and_(clause, _one_of(table.c.target_type, rows.targets))
    return clause


def _one_of(column: Any, values: tuple[str, ...]) -> ColumnElement[bool]:
    # Never an expanding IN: its SQL would depend on the values, and a statement whose SQL
    # is not fixed cannot be compiled once and run raw (``store.raw``).
    return column == values[0] if len(values) == 1 else in_set(column, values)


def in_person(column: Any, patient_column: Any, row: Any = None) -> ColumnElement[bool]:
    """``column`` names a source patient of the person ``patient_column`` belongs to: the
    patient itself, or any patient identity has filed under the same Person. (Written as an
    OR of an equality and a correlated IN, so that the outer row is correlated in both.)"""
    mine = aliased(IdentityRecord)
    linked = aliased(IdentityRecord)
    linked_patients = (
        select(linked.patient_id)
        .join(mine, mine.person_id == linked.person_id)
        .where(mine.patient_id == patient_column)
    )
    if row is not None:
        # Nested two levels down (inside a subquery): correlate to the outer resource row
        # explicitly, or SQL would read every resource instead of this one.
        linked_patients = linked_patients.correlate(row)
    return or_(column == patient_column, column.in_(linked_patients))


def exists_for_person(
    table: Any, patient_column: Any, row: Any, *conditions: ColumnElement[bool]
) -> ColumnElement[bool]:
    """A row of ``table`` (keyed by source patient) meeting ``conditions`` exists for the
    person of ``row``: recorded against the resource's own patient, or against any patient
    filed under the same Person. Two EXISTS, each an index lookup (an OR inside one would
    defeat the indexes)."""
    direct = exists(
        select(_ONE).select_from(table).where(patient_column == row.patient_id, *conditions)
    )
    mine = aliased(IdentityRecord)
    linked = aliased(IdentityRecord)
    via_person = exists(
        select(_ONE)
        .select_from(mine)
        .join(linked, linked.person_id == mine.person_id)
        .join(table, patient_column == linked.patient_id)
        .where(mine.patient_id == row.patient_id, *conditions)
    )
    return or_(direct, via_person)


def compile_visibility(
    predicate: Predicate,
    *,
    now: datetime | Any,
    row: Any = ResourceRow,
    practitioner: ColumnElement[str] | None = None,
) -> ColumnElement[bool]:
    """SQL for ``predicate`` over ``row`` (the ``resource`` table or an alias of it).

    ``now`` is a datetime, or a bound parameter where the SQL is compiled once and run many
    times (the read path). ``practitioner``: a column holding, row by row, the practitioner
    that the tree's relationship and break-glass tests name (a statement answering reads of
    several practitioners at once, ``store.reads``), in place of the value in the tree."""
    return _compile(predicate, now, row, practitioner)


def _utcnow() -> datetime:
    return datetime.now(UTC)


_COMPILED: dict[tuple[int, int], tuple[Predicate, Any, ColumnElement[bool]]] = {}


def compile_visibility_live(predicate: Predicate, *, row: Any = ResourceRow) -> ColumnElement[bool]:
    """As ``compile_visibility``, with the time read when each statement runs, so the SQL
    expression for a caller's predicate object (``access.service.predicate_for`` returns the
    same object to the same caller) is built once and reused by every request."""
    key = (id(predicate), id(row))
    found = _COMPILED.get(key)
    if found is not None and found[0] is predicate and found[1] is row:
        return found[2]
    now = bindparam("consent_now_live", callable_=_utcnow, type_=UtcDateTime())
    expression = _compile(predicate, now, row)
    if len(_COMPILED) > 4096:
        _COMPILED.clear()
    _COMPILED[key] = (predicate, row, expression)
    return expression


_BY_VALUE: OrderedDict[Predicate, ColumnElement[bool]] = OrderedDict()
_BY_VALUE_LOCK = threading.Lock()
BY_VALUE_CACHE_SIZE = 1024


def compile_visibility_shared(predicate: Predicate) -> ColumnElement[bool]:
    """As ``compile_visibility_live`` over the ``resource`` table, remembered by the tree's
    value rather than its identity: for the predicates specialised for one person
    (``consent.visibility.specialise``), which are new objects on every request but take
    only a few distinct values (most people's specialised tree is the same), so their SQL
    expression is built once and SQLAlchemy finds its statements already compiled."""
    with _BY_VALUE_LOCK:
        found = _BY_VALUE.get(predicate)
        if found is not None:
            _BY_VALUE.move_to_end(predicate)
            return found
    now = bindparam("consent_now_live", callable_=_utcnow, type_=UtcDateTime())
    expression = _compile(predicate, now, ResourceRow)
    with _BY_VALUE_LOCK:
        _BY_VALUE[predicate] = expression
        while len(_BY_VALUE) > BY_VALUE_CACHE_SIZE:
            _BY_VALUE.popitem(last=False)
    return expression


def _compile(
    node: Predicate, now: Any, row: Any, practitioner: ColumnElement[str] | None = None
) -> ColumnElement[bool]:
    if isinstance(node, Const):
        return true() if node.value else false()
    if isinstance(node, AnyOf):
        return or_(*(_compile(item, now, row, practitioner) for item in node.items))
    if isinstance(node, AllOf):
        return and_(*(_compile(item, now, row, practitioner) for item in node.items))
    if isinstance(node, SourceIn):
        return in_set(row.source_org, node.organisations)
    if isinstance(node, TypeIn):
        return in_set(row.resource_type, node.types)
    if isinstance(node, NoPatient):
        return row.patient_id.is_(None)
    if isinstance(node, SensitivityNone):
        return or_(
            row.sensitivity.is_(None),
            and_(
                *(
                    not_(row.sensitivity.contains(f" {c} ", autoescape=True))
                    for c in sorted(node.categories)
                )
            ),
        )
    if isinstance(node, SensitivityWithin):
        # Stored as " a b ": take out every allowed category; only a blank may remain.
        remaining: Any = row.sensitivity
        for category in sorted(node.categories):
            remaining = func.replace(remaining, f" {category} ", _BLANK)
        return or_(row.sensitivity.is_(None), remaining == _BLANK)
    if isinstance(node, NotLabelled):
        return or_(
            row.security.is_(None),
            # Codes are stored "system|code system|code": match a code whole, and exactly
            # (see ``Lacks``: SQLite's LIKE would ignore case).
            and_(
                *(
                    and_(
                        Lacks(row.security, f"|{c} ", at_end=False),
                        Lacks(row.security, f"|{c}", at_end=True),
                    )
                    for c in sorted(node.codes)
                )
            ),
        )
    if isinstance(node, OwnPerson):
        return in_person(row.patient_id, literal(node.patient_id))
    if isinstance(node, Related):
        return _related(node, now, row, practitioner)
    if isinstance(node, BrokeGlass):
        grant = BreakGlassGrantRow.__table__.c
        return exists_for_person(
            BreakGlassGrantRow.__table__,
            grant.patient_id,
            row,
            grant.practitioner == (node.practitioner if practitioner is None else practitioner),
            grant.expires_at > now,
        )
    if isinstance(node, DirectivesAllow):
        return _directives_allow(node, now, row)
    if isinstance(node, InScope):
        return _in_scope(node, row)
    raise UncompilablePredicate(f"No SQL for predicate {type(node).__name__}")


def _in_scope(node: InScope, row: Any = ResourceRow) -> ColumnElement[bool]:
    """SQL for ``InScope`` over ``row``: a row of a narrowed type has, for every criterion
    of one of its type's queries, a matching value in the token index. The index holds the
    current version's values only, so a row of ``resource_history`` (``row`` has a
    ``resource_pk``) is in scope only if it is the current version and that is."""
    history = hasattr(row, "resource_pk")
    resource_pk = _row_pk(row)
    per_type = []
    for resource_type, queries in node.narrowed:
        matched = or_(
            *(
                and_(*(_criterion(resource_type, c, resource_pk) for c in query))
                for query in queries
            )
        )
        per_type.append(and_(row.resource_type == _quoted(resource_type), matched))
    if history:
        current = aliased(ResourceRow)
        per_type = [
            and_(
                clause,
                exists(
                    select(_ONE).where(
                        current.pk == row.resource_pk, current.version_id == row.version_id
                    )
                ),
            )
            for clause in per_type
        ]
    types = [resource_type for resource_type, _ in node.narrowed]
    return or_(not_(in_set(row.resource_type, types)), *per_type)


def _criterion(resource_type: str, criterion: TokenCriterion, resource_pk: Any) -> Any:
    """A value of the criterion's parameter matches one of its values. A parameter the type
    does not have, or one that is not a token parameter, matches nothing."""
    param = SEARCH_PARAMS.get(resource_type, {}).get(criterion.param)
    if param is None or param.type is not ParamType.TOKEN:
        return false()
    t = search_token.c
    values = [
        token_clause(search_token, system, code, written=True) for system, code in criterion.values
    ]
    # The values are written into the SQL, not sent as parameters: with parameters, a
    # prepared statement's generic plan cannot tell a common code from a rare one and read
    # every index row of the code (13-24 ms a read of one resource, measured: docs/benchmarks.md) instead of
    # the resource's own few rows. And a scalar subquery, not EXISTS: PostgreSQL may turn an
    # EXISTS under an OR into a hashed subplan over every row of the value. This is one
    # lookup by the resource's key (``ix_search_token_resource_pk``).
    first = (
        select(_ONE)
        .where(
            t.resource_pk == resource_pk,
            t.resource_type == _quoted(resource_type),
            param_rows(search_token, resource_type, criterion.param),
            or_(*values),
        )
        .limit(1)
        .scalar_subquery()
    )
    return first.is_not(None)


def token_clause(
    table: Any, system: str | None, code: str | None, *, written: bool = False
) -> ColumnElement[bool]:
    """The rows of token index ``table`` matching ``system|code`` as a token search reads it:
    a system of None is any system and ``""`` none; a code of None is any code. ``written``:
    the values as literals in the SQL (``_quoted``), else as parameters."""
    value: Any = _quoted if written else (lambda text: text)
    clauses = []
    if code is not None:
        clauses.append(table.c.code == value(code))
    if system == "":
        clauses.append(table.c.system.is_(None))
    elif system is not None:
        clauses.append(table.c.system == value(system))
    return and_(*clauses) if clauses else true()


def _quoted(value: str) -> ColumnElement[str]:
    """``value`` as an SQL string literal (single quotes doubled: standard SQL, and the
    scopes' parser refuses backslashes)."""
    return literal_column("'" + value.replace("'", "''") + "'", String())


def _related(
    node: Related, now: Any, row: Any, practitioner: ColumnElement[str] | None
) -> ColumnElement[bool]:
    rel = CareRelationshipRow.__table__.c
    with_whom: list[ColumnElement[bool]] = []
    if node.organisation is not None:
        with_whom.append(rel.organisation == node.organisation)
    if node.practitioner is not None:
        with_whom.append(
            rel.practitioner == (node.practitioner if practitioner is None else practitioner)
        )
    if not with_whom:
        return false()
    return exists_for_person(
        CareRelationshipRow.__table__,
        rel.patient_id,
        row,
        or_(rel.ends_at.is_(None), rel.ends_at > now),
        or_(*with_whom),
        # A registration counts only when a GP practice recorded it.
        or_(rel.kind != _REGISTERED, in_set(rel.source_organisation, node.registering)),
    )


class Position(ColumnElement[int]):
    """Where ``needle`` first occurs in ``haystack`` (1-based; 0 when absent, NULL for a NULL
    operand), compared exactly, case included: ``instr`` on SQLite, ``strpos`` on
    PostgreSQL. (LIKE would read the ``_`` of a category code as a wildcard, and SQLite's
    LIKE ignores case.)"""

    inherit_cache = True
    type = Integer()
    _traverse_internals = [
        ("haystack", InternalTraversal.dp_clauseelement),
        ("needle", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, haystack: Any, needle: Any) -> None:
        self.haystack = haystack
        self.needle = needle


@compiles(Position)
def _position_default(element: Position, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(func.instr(element.haystack, element.needle), **kw)


@compiles(Position, "postgresql")
def _position_postgresql(element: Position, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(func.strpos(element.haystack, element.needle), **kw)


def _label_covers(d: Any, row: Any) -> ColumnElement[bool]:
    """The directive row ``d`` names no label, or ``row`` carries it: a category among the
    stored categories (`` a b ``), or a confidentiality code at least as high in the stored
    ``meta.security`` (``system|code``, codes compared whole, as ``NotLabelled`` does). The
    same test as ``consent.directives.label_covers``."""
    zero = literal_column("0", Integer())
    security = row.security + _BLANK
    confidentiality = [
        and_(
            d.label == literal_column(f"'{code}'", String()),
            or_(
                *(
                    Position(security, literal_column(f"'|{c} '", String())) > zero
                    for c in sorted(at_least)
                )
            ),
        )
        for code, at_least in sorted(CONFIDENTIALITY_AT_LEAST.items())
    ]
    return or_(
        d.label.is_(None),
        Position(row.sensitivity, _BLANK + d.label + _BLANK) > zero,
        *confidentiality,
    )


def _index_holds_row(row: Any) -> ColumnElement[bool]:
    """The search index holds ``row``'s values: the row is the current version of a resource
    that is not deleted (the index keeps the current version's values only, none for a
    deleted resource; ``row`` is of ``resource`` or of ``resource_history``)."""
    if not hasattr(row, "resource_pk"):
        return row.deleted.is_(False)
    current = aliased(ResourceRow)
    return exists(
        select(_ONE)
        .where(
            current.pk == row.resource_pk,
            current.version_id == row.version_id,
            current.deleted.is_(False),
        )
        .correlate(row)
    )


def _row_pk(row: Any) -> Any:
    return row.resource_pk if hasattr(row, "resource_pk") else row.pk


def _code_covers(d: Any, row: Any, *, deny: bool) -> ColumnElement[bool]:
    """The directive row ``d`` (a deny, or a permit) names no code, or ``row``'s token index
    holds it (under any parameter); where the index does not hold ``row``'s values (a past
    version in ``resource_history``, or a deleted resource), a deny applies and a permit
    does not. The same test as ``consent.directives.Directive.covers_code``. One lookup by
    the resource's key, asked only of the person's own directive rows that name a code.
    Written flat, and apart for denies and permits: SQLite's parser has a fixed depth, which
    the predicate nested inside a reverse chain comes near."""
    t = search_token.c
    held = exists(
        select(_ONE)
        .select_from(search_token)
        .where(t.resource_pk == _row_pk(row), t.system == d.code_system, t.code == d.code)
        .correlate(d, row)
    )
    indexed = _index_holds_row(row)
    if deny:
        return or_(d.code.is_(None), not_(indexed), held)
    return or_(d.code.is_(None), and_(indexed, held))


# The care-date parameter of a row's type, as SQL (NULL for a type that records none).
def _care_param(row: Any) -> Any:
    return case(
        *(
            (_quoted(resource_type), _quoted(param))
            for resource_type, param in sorted(CARE_DATE_PARAMS.items())
        ),
        value=row.resource_type,
        else_=null(),
    )


def _period_covers(d: Any, row: Any, *, deny: bool) -> ColumnElement[bool]:
    """The directive row ``d`` (a deny, or a permit) names no period of data, or ``row``'s
    care date (its type's care-date rows in the date index) is what it is about: for a
    deny, a care date meeting the period, or none known (none recorded, a past version, a
    deleted resource); for a permit, care dates known and all within it. A row of a type
    that records no care date is not covered. The same test as
    ``consent.directives.Directive.covers_period``.

    One aggregate over the resource's care dates: whether any meets the period (for a deny)
    or lies outside it (for a permit); NULL where there are none. The row stores an open end
    as the earliest or latest instant (``directive_values``), so each test is two
    comparisons. (Small and flat: the predicate is planned with every statement that is not
    prepared, and SQLite's parser has a fixed depth.)"""
    dates = search_date.c
    if deny:
        tested = and_(dates.low <= d.data_to, dates.high >= d.data_from)  # meets it
    else:
        tested = or_(dates.low < d.data_from, dates.high > d.data_to)  # lies outside it
    one, zero = literal_column("1", Integer()), literal_column("0", Integer())
    found = func.coalesce(
        select(func.max(case((tested, one), else_=zero)))
        .where(dates.resource_pk == _row_pk(row), dates.param == _care_param(row))
        .correlate(d, row)
        .scalar_subquery(),
        literal_column("-1", Integer()),
    )
    dated = in_set(row.resource_type, sorted(CARE_DATE_PARAMS))
    indexed = _index_holds_row(row)
    if deny:
        # Unknown (not indexed, or no care date: -1), or some date meets it (1).
        return or_(d.data_from.is_(None), and_(dated, or_(not_(indexed), found != zero)))
    # Known, and no date outside it (0).
    return or_(d.data_from.is_(None), and_(dated, indexed, found == zero))


def _directives_allow(node: DirectivesAllow, now: Any, row: Any) -> ColumnElement[bool]:
    d = aliased(ConsentDirectiveRow)
    table = ConsentDirectiveRow.__table__
    # Most people record no directive: say so with two index lookups before anything else.
    has_any = exists_for_person(table, table.c.patient_id, row)

    def applicable(extra: ColumnElement[bool], *, narrowed: str | None) -> Any:
        # A directive narrowed to a label, a code or a period of data applies only where the
        # resource carries, holds or meets it; ``narrowed``: the decision of the directives
        # asked for ("deny" or "permit"). (Not asked for sealed items: a provision naming
        # items names none of these.)
        covered = (
            (
                _label_covers(d, row),
                _code_covers(d, row, deny=narrowed == "deny"),
                _period_covers(d, row, deny=narrowed == "deny"),
            )
            if narrowed
            else ()
        )
        return select(d.level).where(
            in_person(d.patient_id, row.patient_id, row),
            or_(d.starts_at.is_(None), d.starts_at <= now),
            or_(d.ends_at.is_(None), d.ends_at > now),
            or_(d.recipient_organisation.is_(None), d.recipient_organisation == node.organisation)
            if node.organisation is not None
            else d.recipient_organisation.is_(None),
            or_(d.recipient_role.is_(None), d.recipient_role == node.role)
            if node.role is not None
            else d.recipient_role.is_(None),
            or_(d.source_organisation.is_(None), d.source_organisation == row.source_org),
            or_(d.item.is_(None), d.item == row.resource_type + _SLASH + row.resource_id),
            or_(d.purpose.is_(None), _one_of(d.purpose, node.purposes))
            if node.purposes
            else d.purpose.is_(None),
            or_(d.resource_class.is_(None), d.resource_class == row.resource_type),
            *covered,
            extra,
        )

    not_sealed = not_(
        exists(applicable(and_(d.decision == _DENY, d.item.is_not(None)), narrowed=None))
    )
    best_permit = func.coalesce(
        applicable(d.decision == _PERMIT, narrowed="permit")
        .with_only_columns(func.max(d.level))
        .scalar_subquery(),
        _NONE,
    )
    if node.lift_objections:
        if node.require_permit:
            return and_(has_any, not_sealed, best_permit > _NONE)
        return or_(not_(has_any), not_sealed)
    best_deny = func.coalesce(
        applicable(d.decision == _DENY, narrowed="deny")
        .with_only_columns(func.max(d.level))
        .scalar_subquery(),
        _NONE,
    )
    # The most specific directive wins; at equal specificity deny wins.
    if node.require_permit:
        return and_(has_any, not_sealed, best_permit > best_deny)
    return or_(not_(has_any), and_(not_sealed, or_(best_deny == _NONE, best_deny < best_permit)))


# Made once: an alias is costly to make, and this one is used on every search about a person.
_SEALED = aliased(ConsentDirectiveRow)


def withheld_candidates(source_org: Any, resource_type: Any) -> list[ColumnElement[bool]]:
    """Which rows the withheld notice is about (see ``withheld_clause``), as conditions on
    these columns."""
    return [source_org.is_not(None), resource_type != "Consent"]


def scope_of(predicate: Predicate) -> ColumnElement[bool] | None:
    """SQL for what the caller's scopes leave in view (``consent.visibility.scope_part``),
    over the ``resource`` table; None where the scopes narrow nothing."""
    part = scope_part(predicate)
    return None if part is None else compile_visibility_shared(part)


def withheld_scope(
    patients: ColumnElement[bool],
    types: ColumnElement[bool] | None = None,
    in_scope: ColumnElement[bool] | None = None,
) -> list[ColumnElement[bool]]:
    """The current resources the withheld notice is about: of the patients ``patients``
    selects, of the types ``types`` selects, that the caller's scopes ask for (``in_scope``:
    ``scope_of`` the caller's predicate), recorded by a source (see ``withheld_clause``)."""
    scope = [
        patients,
        ResourceRow.deleted.is_(False),
        *withheld_candidates(ResourceRow.source_org, ResourceRow.resource_type),
    ]
    return scope + [c for c in (types, in_scope) if c is not None]


def withheld_clause(
    *,
    patients: ColumnElement[bool],
    visible: ColumnElement[bool],
    types: ColumnElement[bool] | None = None,
    in_scope: ColumnElement[bool] | None = None,
) -> ColumnElement[bool]:
    """SQL: some current resource of the patients ``patients`` selects (of the types
    ``types`` selects, within the caller's scopes ``in_scope``) is hidden from the caller,
    leaving out sealed items (whose very existence is not to be hinted at). Only what a
    source recorded counts: not carejoin's own identity records, and not the person's
    choices (a Consent sealing an item names it); and so ``NOT visible`` never meets a row
    without a source or a patient. What the caller's scopes did not ask for is not withheld
    from them: they did not ask (``in_scope``)."""
    sealed = _SEALED
    conditions = [
        *withheld_scope(patients, types, in_scope),
        not_(visible),
        not_(
            exists(
                select(sealed.pk).where(
                    sealed.decision == "deny",
                    sealed.item == ResourceRow.resource_type + "/" + ResourceRow.resource_id,
                )
            )
        ),
    ]
    return exists(select(ResourceRow.pk).where(*conditions))


def something_withheld(
    session: Any,
    *,
    patient_ids: list[str],
    visible: ColumnElement[bool],
    types: list[str] | None = None,
    in_scope: ColumnElement[bool] | None = None,
) -> bool:
    """Whether any current resource of these patients is hidden from the caller (see
    ``withheld_clause``). Answers yes or no, never how many or what: the search result says
    only that something is withheld."""
    if not patient_ids:
        return False
    clause = withheld_clause(
        patients=in_set(ResourceRow.patient_id, patient_ids),
        visible=visible,
        types=ResourceRow.resource_type.in_(types) if types else None,
        in_scope=in_scope,
    )
    return bool(session.scalar(select(clause)))

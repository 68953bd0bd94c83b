"""One page of a search in one PostgreSQL statement, with its audit.

``query.run_search`` asks for a page in up to three queries (the total, the page's keys in
order, their rows), and the router then asks who each row's person is, inserts the
AuditEvents and, for a search about one person, whether the caller may see that patient and
whether anything of theirs is withheld: seven round trips through the ORM. On PostgreSQL a
search without includes runs instead as one statement built from the same clauses
(``page_select``): the page in a MATERIALIZED CTE (keys, sort values and rows together),
the total, the withheld notice, and the AuditEvents inserted by a data-modifying CTE for the
rows released (not the one read ahead to know whether there is a next page). One statement
is one transaction in autocommit, so the audit records commit with the data they describe
and a failed insert releases nothing.

The statement's SQL is compiled once per shape (``store.raw.prepare``), so a search costs
building its clauses and one lookup, not a compilation. A statement SQLAlchemy would expand
at execution time (an IN list) cannot be run that way: such searches take the ORM path.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    and_,
    exists,
    func,
    literal_column,
    select,
)
from sqlalchemy.orm import aliased
from sqlalchemy.sql import column as sql_column
from sqlalchemy.sql import table

from fhir_gateway.audit.inline import audit_insert
from fhir_gateway.search.params import SearchRequest
from fhir_gateway.search.query import (
    SearchPage,
    VisibleOn,
    _keyset_after,
    base_query,
    decode_cursor,
    encode_cursor,
    sort_expression,
)
from fhir_gateway.store import repository
from fhir_gateway.store.models import ResourceRow
from fhir_gateway.store.raw import compile_once, prepare, renumber, slot
from fhir_gateway.store.visibility import in_set, withheld_clause


def fits(request: SearchRequest) -> bool:
    """Whether ``page_select`` can answer ``request`` (else the ORM path does)."""
    return (
        not request.includes
        and not request.revincludes
        and request.summary != "count"
        and request.count > 0
    )


@dataclass(frozen=True, slots=True)
class Withholding:
    """For a search about one person: the notice that something of theirs is withheld is
    given only if the caller may see ``patient_id`` (else it would say the person exists)."""

    patient_id: str
    patient_ids: list[str]  # the person's source patients
    visible: ColumnElement[bool]  # the caller's predicate for rows of that person
    in_scope: ColumnElement[bool] | None = None  # what the caller's scopes ask for (scope_of)


# The patient searched about, found by its key (made once: an alias is costly to make).
_LOOKUP = aliased(ResourceRow)


@dataclass(frozen=True, slots=True)
class PageSelect:
    """The parts of a page's statement: the page (its rows, sort values ``s0``... and place
    ``rn``), the total (None: not asked for), whether something is withheld (None: not to
    be said)."""

    page: Any
    total: Any | None
    withheld: Any | None
    backwards: bool
    sort_count: int


def page_select(
    request: SearchRequest,
    *,
    base_url: str,
    visible_on: VisibleOn,
    visible: ColumnElement[bool],
    withholding: Withholding | None,
) -> PageSelect:
    """The parts of the statement for one page of ``request`` (see ``compose``)."""
    _, clauses = base_query(request, base_url=base_url, visible_on=visible_on)
    clauses.append(visible)
    row = ResourceRow
    keys = request.sort
    sort_columns = [sort_expression(k, row, request.resource_type) for k in keys]
    backwards = False
    if request.cursor:
        direction, values, pk = decode_cursor(request.cursor, keys)
        backwards = direction == "prev"
        after = _keyset_after(keys, sort_columns, values, pk, row, backwards=backwards)
        page_clauses = [*clauses, after]
    else:
        page_clauses = list(clauses)
    order = []
    for key, column in zip(keys, sort_columns, strict=True):
        descending = key.descending != backwards
        order.append(column.desc().nulls_last() if descending else column.asc().nulls_last())
    order.append(row.pk.desc() if backwards else row.pk.asc())
    page = (
        select(
            *repository.CURRENT_COLUMNS,
            *(c.label(f"s{i}") for i, c in enumerate(sort_columns)),
            func.row_number().over(order_by=order).label("rn"),
        )
        .where(*page_clauses)
        .order_by(*order)
        .limit(slot("limit", Integer()))
    )
    total = None
    if request.total != "none":
        total = select(func.count()).select_from(row).where(*clauses)
    withheld = None
    if withholding is not None:
        lookup = _LOOKUP
        anchor_ok = exists(
            select(row.pk).where(
                row.pk
                == select(lookup.pk)
                .where(
                    lookup.resource_type == literal_column("'Patient'"),
                    lookup.resource_id == withholding.patient_id,
                )
                .scalar_subquery(),
                row.deleted.is_(False),
                withholding.visible,
            )
        )
        withheld = select(
            and_(
                anchor_ok,
                withheld_clause(
                    patients=in_set(row.patient_id, withholding.patient_ids),
                    visible=withholding.visible,
                    in_scope=withholding.in_scope,
                    types=row.resource_type == request.resource_type,
                ),
            )
        )
    return PageSelect(page, total, withheld, backwards, len(sort_columns))


# The AuditEvents of the rows released: compiled once, over the statement's ``released``.
_RELEASED = table("released", sql_column("patient_id", String()))
_AUDIT = compile_once(audit_insert(_RELEASED))


def compose(parts: PageSelect, given: dict[str, Any]) -> tuple[bytes, list[Any]] | None:
    """One statement of the parts, with the audit: ``WITH page AS MATERIALIZED (...),
    released AS (the first ``count`` rows' patients), audited AS (INSERT ...) SELECT total,
    withheld, page.* ...`` (one row of NULLs when nothing matches), and its parameters.
    ``given``: ``limit``, ``count`` and the audit's slots. None when a part cannot be run
    raw."""
    page = prepare(parts.page, given)
    total = prepare(parts.total, given) if parts.total is not None else None
    withheld = prepare(parts.withheld, given) if parts.withheld is not None else None
    if (
        page is None
        or (parts.total is not None and total is None)
        or (parts.withheld is not None and withheld is None)
    ):
        return None
    audit_sql, audit_values = _AUDIT.sql, _AUDIT.values(given)
    pieces: list[tuple[bytes, list[Any]]] = [
        page,
        (b"", [given["count"]]),
        (audit_sql, audit_values),
    ]
    if total is not None:
        pieces.append(total)
    if withheld is not None:
        pieces.append(withheld)
    key = (page[0], total[0] if total else None, withheld[0] if withheld else None)
    sql = _COMPOSED.get(key)
    if sql is None:
        texts = renumber([p[0] for p in pieces], [len(p[1]) for p in pieces])
        count_at = sum(len(p[1]) for p in pieces[:1]) + 1
        sql = (
            b"WITH page AS MATERIALIZED (" + texts[0] + b"), "
            b"released AS (SELECT patient_id FROM page WHERE rn <= $"
            + str(count_at).encode()
            + b"), audited AS ("
            + texts[2]
            + b") SELECT "
            + (b"(" + texts[3] + b")" if total is not None else b"NULL")
            + b" AS total, "
            + (b"(" + texts[-1] + b")" if withheld is not None else b"false")
            + b" AS withheld, page.* FROM (SELECT 1) AS one LEFT OUTER JOIN page ON true "
            b"ORDER BY page.rn"
        )
        if len(_COMPOSED) > 1024:
            _COMPOSED.clear()
        _COMPOSED[key] = sql
    return sql, [v for p in pieces for v in p[1]]


_COMPOSED: dict[tuple[bytes, bytes | None, bytes | None], bytes] = {}


def page_from_rows(
    request: SearchRequest, select_: PageSelect, rows: Sequence[Any]
) -> tuple[SearchPage, bool]:
    """The page (as ``query.run_search`` gives it) from the statement's rows, and whether
    something is withheld."""
    found = [r for r in rows if r.pk is not None]
    more = len(found) > request.count
    found = found[: request.count]
    if select_.backwards:
        found.reverse()
    resources = [repository.stored_from_row(r, utc=True) for r in found]
    next_cursor = previous_cursor = None
    if found:
        first, last = found[0], found[-1]
        has_next = more if not select_.backwards else True
        has_prev = (request.cursor is not None) if not select_.backwards else more
        n = select_.sort_count
        if has_next:
            next_cursor = encode_cursor("next", [getattr(last, f"s{i}") for i in range(n)], last.pk)
        if has_prev:
            previous_cursor = encode_cursor(
                "prev", [getattr(first, f"s{i}") for i in range(n)], first.pk
            )
    total = rows[0].total if rows else None
    page = SearchPage(
        resources=resources,
        total=None if total is None else int(total),
        next_cursor=next_cursor,
        previous_cursor=previous_cursor,
    )
    return page, bool(rows and rows[0].withheld)

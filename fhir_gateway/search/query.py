"""FHIR search compiled to SQL over the write-time index tables.

Each criterion becomes a semi-join (``pk IN (SELECT resource_pk FROM search_x WHERE ...)``)
or an anti-join for ``:not`` and ``:missing``; several criteria are ANDed, several values of
one criterion ORed. Paging is by keyset (the sort values plus the resource's primary key, in
an opaque cursor), so a resource that does not change during the traversal is returned
exactly once however the rest of the data changes (3.1.1.6 "Paging": the server decides how).
"""

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    exists,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session, aliased

from fhir_gateway.search.dates import InvalidDate, parse_range
from fhir_gateway.search.model import ParamType
from fhir_gateway.search.params import (
    Criterion,
    SearchError,
    SearchRequest,
    SortKey,
    parse_number,
    split_prefix,
    split_token,
)
from fhir_gateway.search.text import normalize
from fhir_gateway.store.models import (
    ResourceRow,
    search_date,
    search_quantity,
    search_reference,
    search_string,
    search_token,
)
from fhir_gateway.store.repository import StoredResource, get_by_pks
from fhir_gateway.store.visibility import param_rows, token_clause

_TABLE_FOR = {
    ParamType.TOKEN: search_token,
    ParamType.URI: search_token,
    ParamType.STRING: search_string,
    ParamType.DATE: search_date,
    ParamType.REFERENCE: search_reference,
    ParamType.QUANTITY: search_quantity,
    ParamType.NUMBER: search_quantity,
}


@dataclass(frozen=True, slots=True)
class SearchPage:
    resources: list[StoredResource]
    total: int | None
    next_cursor: str | None
    previous_cursor: str | None


VisibleOn = Callable[[Any], ColumnElement[bool]]


def where_clauses(
    request_type: str,
    criteria: list[Criterion],
    row: Any,
    *,
    base_url: str,
    visible_on: VisibleOn | None = None,
) -> list[ColumnElement[bool]]:
    """The WHERE clauses selecting rows of ``row`` (a ResourceRow or alias) that match.

    ``visible_on(alias)`` is the caller's consent predicate for another row of the resource
    table: a chained parameter (or a reverse chain, ``_has``) matches only through resources
    the caller may see, so neither can probe what is hidden.
    """
    return [_criterion(c, row, base_url=base_url, visible_on=visible_on) for c in criteria]


def _criterion(
    c: Criterion, row: Any, *, base_url: str, visible_on: VisibleOn | None = None
) -> ColumnElement[bool]:
    if c.has is not None:
        return _reverse_chain(c, row, base_url=base_url, visible_on=visible_on)
    code = c.param.code
    if code == "_id":
        return _id_criterion(c, row)
    if code == "_lastUpdated":
        return or_(*(_date_value(row.last_updated, row.last_updated, v) for v in c.values))
    table = _TABLE_FOR.get(c.param.type)
    if table is None:
        raise SearchError(
            f"Searching by {c.param.type} parameter '{code}' is not supported", unsupported=True
        )
    scope = and_(table.c.resource_type == c.resource_type, param_rows(table, c.resource_type, code))
    if c.modifier == "missing":
        has_any = exists().where(table.c.resource_pk == row.pk, scope)
        return not_(has_any) if c.values[0] == "true" else has_any
    if c.chain is not None:
        return _chain(c, row, base_url=base_url, visible_on=visible_on)
    match = or_(*(_value(c, table, v, base_url=base_url) for v in c.values))
    if c.modifier == "not":
        # :not matches resources with no value matching (including those with no value at all).
        return not_(exists().where(table.c.resource_pk == row.pk, scope, match))
    return row.pk.in_(select(table.c.resource_pk).where(scope, match))


def _id_criterion(c: Criterion, row: Any) -> ColumnElement[bool]:
    if c.modifier == "not":
        return row.resource_id.not_in(c.values)
    if c.modifier == "missing":
        return false() if c.values[0] == "true" else true()
    return row.resource_id.in_(c.values)


def _value(c: Criterion, table: Any, value: str, *, base_url: str) -> ColumnElement[bool]:
    kind = c.param.type
    if kind is ParamType.TOKEN:
        return token_clause(table, *split_token(value))
    if kind is ParamType.URI:
        return table.c.code == value
    if kind is ParamType.STRING:
        if c.modifier == "exact":
            return table.c.exact == value[:255]
        needle = _like_escape(normalize(value))
        if c.modifier == "contains":
            return table.c.value.like(f"%{needle}%", escape="\\")
        return table.c.value.like(f"{needle}%", escape="\\")
    if kind is ParamType.DATE:
        return _date_value(table.c.low, table.c.high, value)
    if kind in (ParamType.NUMBER, ParamType.QUANTITY):
        return _number_value(table, value, quantity=kind is ParamType.QUANTITY)
    if kind is ParamType.REFERENCE:
        return _reference_value(c, table, value, base_url=base_url)
    raise SearchError(f"Searching by {kind} parameters is not supported", unsupported=True)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _date_value(low: Any, high: Any, value: str) -> ColumnElement[bool]:
    """Compare the resource's range [low, high] with the search range (3.1.1.5.3 "date")."""
    prefix, text = split_prefix(value)
    try:
        q_low, q_high = parse_range(text)
    except InvalidDate as exc:
        raise SearchError(str(exc)) from exc
    if prefix == "eq":
        return and_(low >= q_low, high <= q_high)
    if prefix == "ne":
        return or_(low < q_low, high > q_high)
    if prefix == "gt":
        return high > q_high
    if prefix == "lt":
        return low < q_low
    if prefix == "ge":
        return high >= q_low
    if prefix == "le":
        return low <= q_high
    if prefix == "sa":
        return low > q_high
    if prefix == "eb":
        return high < q_low
    # ap: within 10% of the distance between now and the value (at least a day), as the
    # spec recommends.
    gap = abs(datetime.now(UTC) - q_low) / 10
    slack = max(gap, timedelta(days=1))
    return and_(low <= q_high + slack, high >= q_low - slack)


def _number_value(table: Any, value: str, *, quantity: bool) -> ColumnElement[bool]:
    prefix, text = split_prefix(value)
    system: str | None = None
    unit: str | None = None
    if quantity:
        parts = text.split("|")
        text = parts[0]
        if len(parts) == 3:
            system, unit = parts[1] or None, parts[2] or None
        elif len(parts) != 1:
            raise SearchError(f"'{value}' is not a quantity (number|system|code)")
    number = parse_number(text)
    # The implicit range of the value's precision: 100 means [99.5, 100.5) (3.1.1.5.2).
    exponent = number.as_tuple().exponent
    half = Decimal(5).scaleb((exponent if isinstance(exponent, int) else 0) - 1)
    column = table.c.value
    if prefix == "eq":
        clause = and_(column >= number - half, column < number + half)
    elif prefix == "ne":
        clause = or_(column < number - half, column >= number + half)
    elif prefix in ("gt", "sa"):
        clause = column > number
    elif prefix in ("lt", "eb"):
        clause = column < number
    elif prefix == "ge":
        clause = column >= number
    elif prefix == "le":
        clause = column <= number
    else:  # ap: within 10%
        slack = abs(number) / 10
        clause = and_(column >= number - slack, column <= number + slack)
    if system is not None:
        clause = and_(clause, table.c.system == system)
    if unit is not None:
        clause = and_(clause, or_(table.c.code == unit, table.c.unit == unit))
    return clause


def _reference_value(c: Criterion, table: Any, value: str, *, base_url: str) -> ColumnElement[bool]:
    target_type: str | None = c.modifier if c.modifier not in (None, "missing") else None
    local = value
    prefix = base_url.rstrip("/") + "/"
    if value.startswith(prefix):
        local = value[len(prefix) :]
    elif "://" in value or value.startswith("urn:"):
        return table.c.url == value
    parts = local.split("/")
    if len(parts) >= 2:
        target_type, target_id = parts[0], parts[1]
    else:
        target_id = parts[0]
    clauses = [table.c.target_id == target_id]
    if target_type is not None:
        clauses.append(table.c.target_type == target_type)
    return and_(*clauses)


def _chain(
    c: Criterion, row: Any, *, base_url: str, visible_on: VisibleOn | None
) -> ColumnElement[bool]:
    assert c.chain is not None
    assert c.chain_type is not None
    target = aliased(ResourceRow)
    targets = select(target.resource_id).where(
        target.resource_type == c.chain_type,
        target.deleted.is_(False),
        _criterion(c.chain, target, base_url=base_url, visible_on=visible_on),
    )
    if visible_on is not None:
        targets = targets.where(visible_on(target))
    return row.pk.in_(
        select(search_reference.c.resource_pk).where(
            search_reference.c.resource_type == c.resource_type,
            param_rows(search_reference, c.resource_type, c.param.code),
            search_reference.c.target_type == c.chain_type,
            search_reference.c.target_id.in_(targets),
        )
    )


def _reverse_chain(
    c: Criterion, row: Any, *, base_url: str, visible_on: VisibleOn | None
) -> ColumnElement[bool]:
    """``_has``: ``row`` is referred to, by ``c.param``, from a resource of ``c.has_type`` that
    matches ``c.has`` and that the caller may see (else a hidden Observation would single out
    the person it is about).

    Written as EXISTS over the references *to* ``row`` (the reference index's lookup is by
    target), so that each candidate is tested by its own few referring resources: a
    common code (every patient's blood pressure) would otherwise have every resource of
    that code tested against the caller's predicate before the first page."""
    assert c.has is not None
    assert c.has_type is not None
    reference = search_reference.alias()
    source = aliased(ResourceRow)
    clauses = [
        reference.c.target_id == row.resource_id,
        reference.c.target_type == c.resource_type,
        reference.c.resource_type == c.has_type,
        param_rows(reference, c.has_type, c.param.code),
        source.pk == reference.c.resource_pk,
        source.deleted.is_(False),
        _criterion(c.has, source, base_url=base_url, visible_on=visible_on),
    ]
    if visible_on is not None:
        clauses.append(visible_on(source))
    # OFFSET 0 keeps PostgreSQL from turning the EXISTS into a join over every referring
    # resource of the code (which it plans when it underestimates how many there are).
    return select(literal_column("1")).where(*clauses).offset(0).exists()


def sort_expression(key: SortKey, row: Any, resource_type: str) -> Any:
    """The value a ``resource_type`` resource sorts by; for a repeating element, its lowest
    (ascending) or highest (descending) value (3.1.1.4.8 "Sorting")."""
    code = key.param.code
    if code == "_id":
        return row.resource_id
    if code == "_lastUpdated":
        return row.last_updated
    table = _TABLE_FOR.get(key.param.type)
    if table is None:
        raise SearchError(f"Cannot sort by '{code}'", unsupported=True)
    kind = key.param.type
    if kind is ParamType.DATE:
        column = table.c.high if key.descending else table.c.low
    elif kind is ParamType.REFERENCE:
        column = table.c.target_id
    elif kind in (ParamType.TOKEN, ParamType.URI):
        column = table.c.code
    else:  # string, quantity, number
        column = table.c.value
    aggregate = func.max(column) if key.descending else func.min(column)
    return (
        select(aggregate)
        .where(table.c.resource_pk == row.pk, param_rows(table, resource_type, code))
        .scalar_subquery()
    )


def base_query(
    request: SearchRequest, *, base_url: str, visible_on: VisibleOn | None = None
) -> tuple[Select[Any], list[ColumnElement[bool]]]:
    row = ResourceRow
    clauses: list[ColumnElement[bool]] = [
        row.resource_type == request.resource_type,
        row.deleted.is_(False),
        *where_clauses(
            request.resource_type, request.criteria, row, base_url=base_url, visible_on=visible_on
        ),
    ]
    return select(row.pk), clauses


def run_search(
    session: Session,
    request: SearchRequest,
    *,
    base_url: str,
    visible_on: VisibleOn | None = None,
    visible_rows: ColumnElement[bool] | None = None,
) -> SearchPage:
    """One page of matching resources, with the total when asked for and the cursors.

    ``visible_on`` (the caller's consent predicate for a row) restricts the matches before
    they are counted, sorted or paged, so neither ``Bundle.total`` nor the paging reveals
    what the caller may not see; chained parameters and reverse chains go only through
    visible resources.
    """
    _, clauses = base_query(request, base_url=base_url, visible_on=visible_on)
    if visible_rows is not None:
        clauses.append(visible_rows)  # the same predicate, specialised for one person
    elif visible_on is not None:
        clauses.append(visible_on(ResourceRow))
    row = ResourceRow
    keys = request.sort
    sort_columns = [sort_expression(k, row, request.resource_type) for k in keys]
    backwards = False
    after: ColumnElement[bool] | None = None
    if request.cursor:
        direction, values, pk = decode_cursor(request.cursor, keys)
        backwards = direction == "prev"
        after = _keyset_after(keys, sort_columns, values, pk, row, backwards=backwards)
    total: int | None = None
    if request.total != "none" or request.summary == "count":
        total = session.execute(select(func.count()).select_from(row).where(*clauses)).scalar_one()
    if request.summary == "count" or request.count == 0:
        return SearchPage(resources=[], total=total, next_cursor=None, previous_cursor=None)
    order = []
    for key, column in zip(keys, sort_columns, strict=True):
        descending = key.descending != backwards
        order.append(column.desc().nulls_last() if descending else column.asc().nulls_last())
    order.append(row.pk.desc() if backwards else row.pk.asc())
    stmt = select(row.pk, *sort_columns).where(*clauses)
    if after is not None:
        stmt = stmt.where(after)
    stmt = stmt.order_by(*order).limit(request.count + 1)
    rows = list(session.execute(stmt).all())
    more = len(rows) > request.count
    rows = rows[: request.count]
    if backwards:
        rows.reverse()
    stored = get_by_pks(session, [r[0] for r in rows])
    resources = [stored[r[0]] for r in rows if r[0] in stored]
    next_cursor = previous_cursor = None
    if rows:
        first, last = rows[0], rows[-1]
        has_next = more if not backwards else True
        has_prev = (request.cursor is not None) if not backwards else more
        if has_next:
            next_cursor = encode_cursor("next", list(last[1:]), last[0])
        if has_prev:
            previous_cursor = encode_cursor("prev", list(first[1:]), first[0])
    return SearchPage(
        resources=resources, total=total, next_cursor=next_cursor, previous_cursor=previous_cursor
    )


def _keyset_after(
    keys: list[SortKey],
    columns: list[Any],
    values: list[Any],
    pk: int,
    row: Any,
    *,
    backwards: bool,
) -> ColumnElement[bool]:
    """Rows strictly after (or, going back, before) the cursor in (sort keys..., pk) order.

    NULL sort values come last in both directions.
    """
    alternatives: list[ColumnElement[bool]] = []
    equal_so_far: list[ColumnElement[bool]] = []
    for key, column, value in zip(keys, columns, values, strict=True):
        descending = key.descending  # the search's own order; ``backwards`` looks before it
        if value is None:
            # Among NULLs nothing is strictly after on this key; NULLs follow every value, so
            # going backwards from a NULL, every non-NULL value comes before.
            if backwards:
                alternatives.append(and_(*equal_so_far, column.is_not(None)))
            equal_so_far.append(column.is_(None))
            continue
        if backwards:
            beyond = column < value if not descending else column > value
        else:
            beyond = or_(column > value if not descending else column < value, column.is_(None))
        alternatives.append(and_(*equal_so_far, beyond))
        equal_so_far.append(column == value)
    alternatives.append(and_(*equal_so_far, row.pk < pk if backwards else row.pk > pk))
    return or_(*alternatives)


def encode_cursor(direction: str, values: list[Any], pk: int) -> str:
    payload = {"d": direction, "k": [_encode_value(v) for v in values], "pk": pk}
    return (
        base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode())
        .decode()
        .rstrip("=")
    )


def decode_cursor(cursor: str, keys: list[SortKey]) -> tuple[str, list[Any], int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        direction = payload["d"]
        values = [_decode_value(v) for v in payload["k"]]
        pk = int(payload["pk"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SearchError("The paging cursor is not valid; start the search again") from exc
    if direction not in ("next", "prev") or len(values) != len(keys):
        raise SearchError(
            "The paging cursor does not belong to this search; start the search again"
        )
    return direction, values, pk


def _encode_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return ["t", moment.isoformat()]
    if isinstance(value, Decimal | int | float):
        return ["n", str(value)]
    return ["s", str(value)]


def _decode_value(value: Any) -> Any:
    if value is None:
        return None
    kind, text = value
    if kind == "t":
        return datetime.fromisoformat(text)
    if kind == "n":
        return Decimal(text)
    if kind == "s":
        return str(text)
    raise ValueError(kind)


def include_targets(
    session: Session, pks: list[int], *, source_type: str, param: str, target_type: str | None
) -> list[tuple[str, str]]:
    """(type, id) of resources referenced from ``pks`` through ``param`` (``_include``)."""
    if not pks:
        return []
    table = search_reference
    stmt = select(table.c.target_type, table.c.target_id).where(
        table.c.resource_pk.in_(pks),
        table.c.target_id.is_not(None),
        table.c.target_type.is_not(None),
    )
    if source_type != "*":
        stmt = stmt.where(table.c.resource_type == source_type)
    if param != "*":
        stmt = stmt.where(param_rows(table, source_type, param))
    if target_type is not None:
        stmt = stmt.where(table.c.target_type == target_type)
    return [(r[0], r[1]) for r in session.execute(stmt.distinct())]


def revinclude_sources(
    session: Session,
    targets: list[tuple[str, str]],
    *,
    source_type: str,
    param: str,
    target_type: str | None,
) -> list[int]:
    """Primary keys of resources of ``source_type`` referring to ``targets`` (``_revinclude``)."""
    if not targets:
        return []
    table = search_reference
    found: set[int] = set()
    by_type: dict[str, list[str]] = {}
    for rtype, rid in targets:
        if target_type is None or rtype == target_type:
            by_type.setdefault(rtype, []).append(rid)
    for rtype, ids in by_type.items():
        stmt = select(table.c.resource_pk).where(
            table.c.target_type == rtype, table.c.target_id.in_(ids)
        )
        if source_type != "*":
            stmt = stmt.where(table.c.resource_type == source_type)
        if param != "*":
            stmt = stmt.where(param_rows(table, source_type, param))
        found.update(session.scalars(stmt.distinct()))
    return sorted(found)

"""Every query of the store: current resources, history, the search index and the outbox.

Takes a ``Session``; flushes, never commits (the caller's unit of work commits). Writes are
batched: a transaction bundle of 100 entries becomes a handful of multi-row statements, which
is what makes ingest fast on both backends.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    delete,
    func,
    insert,
    literal_column,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from consent.audit import Action, Outcome, record_for
from consent.context import CallerKind
from fhir_gateway.access import derive, writer
from fhir_gateway.access.people import person_references
from fhir_gateway.audit.repository import add_events
from fhir_gateway.outcomes import Forbidden, NotFound
from fhir_gateway.search.model import IndexEntries
from fhir_gateway.store.models import (
    HistoryRow,
    OutboxRow,
    ResourceRow,
    search_date,
    search_quantity,
    search_reference,
    search_string,
    search_token,
)

Reader = Connection | Session
"""What a single-statement read runs on: a Session in a unit of work, or a bare Connection
(the read path uses an autocommit connection on PostgreSQL: one round trip, no BEGIN/COMMIT)."""


# Not frozen: the read paths build hundreds a request (300 for one person's $everything), and
# a frozen dataclass sets each field through object.__setattr__ (2.3-3.2 µs a resource against
# 0.8-1.1 unfrozen). Nothing changes one once built: a changed resource is a new one.
@dataclass(slots=True)
class StoredResource:
    """A resource version as the store holds it; ``body`` is the JSON text to return."""

    pk: int
    resource_type: str
    resource_id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    body: str | None
    patient_id: str | None = None  # the owning patient (who an access to it is audited for)
    source_org: str | None = None  # the recording organisation (who may write it)
    sensitivity: str | None = None
    security: str | None = None


@dataclass(slots=True)
class PendingWrite:
    """One resource version to write; ``existing`` is the current row, if there is one."""

    resource_type: str
    resource_id: str
    version_id: int
    last_updated: datetime
    method: str  # POST | PUT | DELETE
    body: str | None
    patient_id: str | None
    source: str | None
    security: str | None
    index: IndexEntries | None
    existing_pk: int | None = None
    source_org: str | None = None  # the recording organisation's ODS code
    sensitivity: str | None = None  # sensitive categories, " a b " (see consent.visibility)


CURRENT_COLUMNS = (
    ResourceRow.pk,
    ResourceRow.resource_type,
    ResourceRow.resource_id,
    ResourceRow.version_id,
    ResourceRow.last_updated,
    ResourceRow.deleted,
    ResourceRow.body,
    ResourceRow.patient_id,
    ResourceRow.source_org,
    ResourceRow.sensitivity,
    ResourceRow.security,
)

VERSION_COLUMNS = (
    HistoryRow.resource_pk.label("pk"),
    HistoryRow.resource_type,
    HistoryRow.resource_id,
    HistoryRow.version_id,
    HistoryRow.last_updated,
    # A literal, not a bound parameter, so the read path's precompiled SQL needs no extra value.
    (HistoryRow.method == literal_column("'DELETE'")).label("deleted"),
    HistoryRow.body,
)


def stored_from_row(row: Any, *, utc: bool = False) -> StoredResource:
    """The stored resource of a row. ``utc``: a row psycopg read without the ORM, whose
    timestamptz comes in the session's time zone (the API speaks UTC). Built in one go: the
    read paths make hundreds a request, and ``dataclasses.replace`` costs more than the row."""
    return StoredResource(
        pk=row.pk,
        resource_type=row.resource_type,
        resource_id=row.resource_id,
        version_id=row.version_id,
        last_updated=row.last_updated.astimezone(UTC) if utc else row.last_updated,
        deleted=row.deleted,
        body=row.body,
        patient_id=getattr(row, "patient_id", None),
        source_org=getattr(row, "source_org", None),
        sensitivity=getattr(row, "sensitivity", None),
        security=getattr(row, "security", None),
    )


def get_current(
    session: Reader,
    resource_type: str,
    resource_id: str,
    *,
    for_update: bool = False,
    visible: ColumnElement[bool] | None = None,
) -> StoredResource | None:
    """The current row, if any (and, given ``visible``, only if the caller may see it)."""
    stmt = select(*CURRENT_COLUMNS)
    if visible is None:
        stmt = stmt.where(
            ResourceRow.resource_type == resource_type, ResourceRow.resource_id == resource_id
        )
    else:
        # The row by its key first, then consent's predicate on that one row: beside a
        # predicate with an OR of subqueries PostgreSQL would otherwise scan every row of
        # the type (the Person lookup of $everything read them all, through the type index).
        key = aliased(ResourceRow)
        stmt = stmt.where(
            ResourceRow.pk
            == select(key.pk)
            .where(key.resource_type == resource_type, key.resource_id == resource_id)
            .scalar_subquery(),
            visible,
        )
    if for_update:
        stmt = stmt.with_for_update()
    row = session.execute(stmt).first()
    return None if row is None else stored_from_row(row)


def get_current_many(
    session: Session,
    keys: Iterable[tuple[str, str]],
    *,
    for_update: bool = False,
    visible: ColumnElement[bool] | None = None,
) -> dict[tuple[str, str], StoredResource]:
    wanted = list(set(keys))
    found: dict[tuple[str, str], StoredResource] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        stmt = select(*CURRENT_COLUMNS).where(
            tuple_(ResourceRow.resource_type, ResourceRow.resource_id).in_(chunk)
        )
        if visible is not None:
            stmt = stmt.where(visible)
        if for_update:
            stmt = stmt.with_for_update()
        for row in session.execute(stmt):
            found[(row.resource_type, row.resource_id)] = stored_from_row(row)
    return found


def get_by_pks(
    session: Session, pks: Sequence[int], *, visible: ColumnElement[bool] | None = None
) -> dict[int, StoredResource]:
    if not pks:
        return {}
    stmt = select(*CURRENT_COLUMNS).where(ResourceRow.pk.in_(list(pks)))
    if visible is not None:
        stmt = stmt.where(visible)
    rows = session.execute(stmt)
    return {row.pk: stored_from_row(row) for row in rows}


def get_version(
    session: Reader,
    resource_type: str,
    resource_id: str,
    version_id: int,
    *,
    visible_on: Callable[[Any], ColumnElement[bool]] | None = None,
) -> StoredResource | None:
    """A version from history; given ``visible_on`` (the caller's predicate for a row), only
    if the caller may see both the resource as it is now and that version as it was."""
    stmt = select(*VERSION_COLUMNS, ResourceRow.patient_id).where(
        HistoryRow.resource_type == resource_type,
        HistoryRow.resource_id == resource_id,
        HistoryRow.version_id == version_id,
    )
    stmt = stmt.join(ResourceRow, ResourceRow.pk == HistoryRow.resource_pk)
    if visible_on is not None:
        stmt = stmt.where(visible_on(ResourceRow), visible_on(HistoryRow))
    row = session.execute(stmt).first()
    return None if row is None else stored_from_row(row)


def write_batch(session: Session, writes: Sequence[PendingWrite]) -> list[StoredResource]:
    """Write resource versions: current rows, history, index rows and outbox events.

    New resources are inserted (their primary keys returned in order); existing ones are
    updated in place and their index rows replaced. Deletes keep the row, flagged, with no
    index rows, so searches no longer find it and a read answers 410.
    """
    if not writes:
        return []
    _check_writer(session, writes)
    old = [w for w in writes if w.existing_pk is not None]
    new = [w for w in writes if w.existing_pk is None]
    if new:
        _insert_resource_rows(session, new)
    updates = [w for w in old if w.method != "DELETE"]
    deletes = [w for w in old if w.method == "DELETE"]
    if updates:
        session.execute(
            update(ResourceRow),
            [{"pk": w.existing_pk, **_resource_values(w)} for w in updates],
        )
    if deletes:
        # A deleted resource keeps its labels (patient, source, security, sensitivity), so
        # its history is governed by the same consent rules as it was when current.
        session.execute(
            update(ResourceRow),
            [
                {
                    "pk": w.existing_pk,
                    "version_id": w.version_id,
                    "last_updated": w.last_updated,
                    "deleted": True,
                    "body": None,
                }
                for w in deletes
            ],
        )
    if old:
        _delete_index_rows(session, [w.existing_pk for w in old if w.existing_pk is not None])
    bulk_insert(
        session,
        HistoryRow.__table__,  # type: ignore[arg-type]
        (
            "resource_pk",
            "resource_type",
            "resource_id",
            "version_id",
            "last_updated",
            "method",
            "body",
            "patient_id",
            "source_org",
            "sensitivity",
            "security",
        ),
        [
            (
                w.existing_pk,
                w.resource_type,
                w.resource_id,
                w.version_id,
                w.last_updated,
                w.method,
                w.body,
                w.patient_id,
                w.source_org,
                w.sensitivity,
                w.security,
            )
            for w in writes
        ],
    )
    _insert_index_rows(session, writes)
    derive.replace_derived(session, writes, now=max(w.last_updated for w in writes))
    _audit_writes(session, writes)
    bulk_insert(
        session,
        OutboxRow.__table__,  # type: ignore[arg-type]
        ("created_at", "resource_type", "resource_id", "version_id", "action", "patient_id"),
        [
            (
                w.last_updated,
                w.resource_type,
                w.resource_id,
                w.version_id,
                _action(w),
                None if w.method == "DELETE" else w.patient_id,
            )
            for w in writes
        ],
    )
    return [
        StoredResource(
            pk=w.existing_pk or 0,
            resource_type=w.resource_type,
            resource_id=w.resource_id,
            version_id=w.version_id,
            last_updated=w.last_updated,
            deleted=w.method == "DELETE",
            body=w.body,
        )
        for w in writes
    ]


def require_writable(
    existing: StoredResource | None, resource_type: str, resource_id: str, *, by_id: bool
) -> None:
    """Before anything else about a write to ``Type/id`` is checked or answered (If-Match,
    an unchanged resend): a caller bound to organisations writes only their records, and
    anything else answers exactly as a resource that does not exist (404). Staff do not
    create with their own ids (``by_id``: a PUT to an unknown id), so an unknown id and
    another organisation's id answer alike."""
    scope = writer.current()
    if scope is None or scope.organisations is None:
        return
    unknown = NotFound(f"{resource_type}/{resource_id} is not known")
    if existing is None:
        if by_id and scope.context is not None and scope.context.kind is CallerKind.USER:
            raise unknown
        return
    if existing.source_org not in scope.organisations:
        raise unknown


def _check_writer(session: Session, writes: Sequence[PendingWrite]) -> None:
    """Source records are never overwritten by another source (see ``access.writer``)."""
    scope = writer.current()
    if scope is None or scope.organisations is None:
        return
    allowed = scope.organisations
    existing = [w.existing_pk for w in writes if w.existing_pk is not None]
    owners = (
        dict(
            session.execute(
                select(ResourceRow.pk, ResourceRow.source_org).where(ResourceRow.pk.in_(existing))
            ).all()
        )
        if existing
        else {}
    )
    for w in writes:
        if w.existing_pk is not None and owners.get(w.existing_pk) not in allowed:
            # Answered as for a resource the caller does not know, whoever recorded it.
            raise NotFound(f"{w.resource_type}/{w.resource_id} is not known")
        if w.method != "DELETE" and w.source_org not in allowed:
            raise Forbidden(
                f"{w.resource_type}/{w.resource_id}: meta.source must be this caller's own "
                "organisation; a source's records are written only by that source"
            )


def _audit_writes(session: Session, writes: Sequence[PendingWrite]) -> None:
    """One AuditEvent per person and kind of write, in the write's transaction, for writes
    made on behalf of a signed-in caller (internal writers record their own provenance)."""
    scope = writer.current()
    if scope is None or scope.context is None:
        return
    now = max(w.last_updated for w in writes)
    persons = person_references(session, (w.patient_id for w in writes))
    kinds: dict[tuple[Action, str | None], None] = {}
    for w in writes:
        action = (
            Action.DELETE
            if w.method == "DELETE"
            else Action.CREATE
            if w.version_id == 1
            else Action.UPDATE
        )
        kinds[(action, persons.get(w.patient_id or ""))] = None
    add_events(
        session,
        [
            record_for(
                scope.context,
                recorded_at=now,
                action=action,
                interaction={
                    Action.CREATE: "create",
                    Action.UPDATE: "update",
                    Action.DELETE: "delete",
                }[action],
                outcome=Outcome.SUCCESS,
                query=scope.query,
                person=person,
            )
            for action, person in kinds
        ],
    )


def _action(write: PendingWrite) -> str:
    if write.method == "DELETE":
        return "delete"
    return "create" if write.version_id == 1 else "update"


_RESOURCE_COLUMNS = (
    "resource_type",
    "resource_id",
    "version_id",
    "last_updated",
    "deleted",
    "patient_id",
    "source",
    "security",
    "source_org",
    "sensitivity",
    "body",
)


def _insert_resource_rows(session: Session, new: Sequence[PendingWrite]) -> None:
    """Insert the current rows of new resources and give each write its primary key."""
    rows = [_resource_row(w) for w in new]
    pks = insert_with_keys(session, ResourceRow.__table__, _RESOURCE_COLUMNS, rows)  # type: ignore[arg-type]
    for write, pk in zip(new, pks, strict=True):
        write.existing_pk = pk


def insert_with_keys(
    session: Session, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> list[int]:
    """Insert rows into a table with a generated ``pk`` and return their keys, in order.

    On PostgreSQL, many rows take their keys from the table's sequence in one statement and
    go in by COPY (an ``INSERT ... RETURNING`` of a thousand rows cost more than the rest of a
    bulk load's write); a row that breaks a unique constraint still raises ``IntegrityError``.
    """
    if not rows:
        return []
    connection = session.connection()
    if connection.dialect.name == "postgresql" and len(rows) >= COPY_THRESHOLD:
        pks = list(
            session.scalars(
                select(func.nextval(func.pg_get_serial_sequence(table.name, "pk"))).select_from(
                    func.generate_series(1, len(rows))
                )
            )
        )
        bulk_insert(
            session,
            table,
            ("pk", *columns),
            [(pk, *row) for pk, row in zip(pks, rows, strict=True)],
        )
        return pks
    return list(
        session.scalars(
            insert(table).returning(table.c.pk, sort_by_parameter_order=True),
            [dict(zip(columns, row, strict=True)) for row in rows],
        )
    )


def _resource_row(write: PendingWrite) -> tuple[Any, ...]:
    """A new or updated resource row's values, in ``_RESOURCE_COLUMNS`` order."""
    return (
        write.resource_type,
        write.resource_id,
        write.version_id,
        write.last_updated,
        write.method == "DELETE",
        write.patient_id,
        write.source,
        write.security,
        write.source_org,
        write.sensitivity,
        write.body,
    )


def _resource_values(write: PendingWrite) -> dict[str, Any]:
    return dict(zip(_RESOURCE_COLUMNS, _resource_row(write), strict=True))


def _delete_index_rows(session: Session, pks: list[int]) -> None:
    if not pks:
        return
    for table in (search_token, search_string, search_date, search_reference, search_quantity):
        session.execute(delete(table).where(table.c.resource_pk.in_(pks)))


_INDEX_COLUMNS: dict[str, tuple[str, ...]] = {
    "search_token": ("resource_pk", "resource_type", "param", "system", "code"),
    "search_string": ("resource_pk", "resource_type", "param", "value", "exact"),
    "search_date": ("resource_pk", "resource_type", "param", "low", "high"),
    "search_reference": (
        "resource_pk",
        "resource_type",
        "param",
        "target_type",
        "target_id",
        "url",
    ),
    "search_quantity": (
        "resource_pk",
        "resource_type",
        "param",
        "value",
        "system",
        "code",
        "unit",
    ),
}


def _insert_index_rows(session: Session, writes: Sequence[PendingWrite]) -> None:
    tokens: list[tuple[Any, ...]] = []
    strings: list[tuple[Any, ...]] = []
    dates: list[tuple[Any, ...]] = []
    references: list[tuple[Any, ...]] = []
    quantities: list[tuple[Any, ...]] = []
    for w in writes:
        if w.index is None:
            continue
        pk, rt = w.existing_pk, w.resource_type
        tokens.extend((pk, rt, e.param, e.system, e.code) for e in w.index.tokens)
        strings.extend((pk, rt, e.param, e.value[:255], e.exact[:255]) for e in w.index.strings)
        dates.extend((pk, rt, e.param, e.low, e.high) for e in w.index.dates)
        references.extend(
            (pk, rt, e.param, e.target_type, e.target_id, e.url) for e in w.index.references
        )
        quantities.extend(
            (pk, rt, e.param, e.value, e.system, e.code, e.unit) for e in w.index.quantities
        )
    for table, rows in (
        (search_token, tokens),
        (search_string, strings),
        (search_date, dates),
        (search_reference, references),
        (search_quantity, quantities),
    ):
        bulk_insert(session, table, _INDEX_COLUMNS[table.name], rows)


# Below this many rows a multi-row INSERT costs less than setting up a COPY.
COPY_THRESHOLD = 32


def bulk_insert(
    session: Session, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert rows in the session's transaction: COPY on PostgreSQL for many rows, otherwise
    an executemany INSERT.

    A bundle of 100 resources carries a few thousand index rows; COPY sends them as one
    stream instead of one INSERT execution per row.
    """
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql" and len(rows) >= COPY_THRESHOLD:
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        names = ", ".join(columns)
        statement = f"COPY {table.name} ({names}) FROM STDIN"
        try:
            with cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.IntegrityError as exc:  # as SQLAlchemy raises it for an INSERT
            raise IntegrityError(statement, None, exc) from exc
        return
    session.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])


def list_history(
    session: Session,
    *,
    resource_type: str | None,
    resource_id: str | None,
    since: datetime | None,
    count: int,
    before_pk: int | None,
    visible_on: Callable[[Any], ColumnElement[bool]] | None = None,
) -> tuple[list[tuple[StoredResource, str]], int | None]:
    """History rows (version, method) newest first, keyset-paged on the history row's key;
    given ``visible_on``, only versions the caller may see, of resources they may see now."""
    stmt = select(
        HistoryRow.pk.label("history_pk"),
        *VERSION_COLUMNS,
        HistoryRow.method,
        ResourceRow.patient_id,
    ).join(ResourceRow, ResourceRow.pk == HistoryRow.resource_pk)
    if visible_on is not None:
        stmt = stmt.where(visible_on(ResourceRow), visible_on(HistoryRow))
    if resource_type is not None:
        stmt = stmt.where(HistoryRow.resource_type == resource_type)
    if resource_id is not None:
        stmt = stmt.where(HistoryRow.resource_id == resource_id)
    if since is not None:
        stmt = stmt.where(HistoryRow.last_updated >= since)
    if before_pk is not None:
        stmt = stmt.where(HistoryRow.pk < before_pk)
    rows = session.execute(stmt.order_by(HistoryRow.pk.desc()).limit(count + 1)).all()
    more = len(rows) > count
    rows = rows[:count]
    next_pk = rows[-1].history_pk if more and rows else None
    return [(stored_from_row(r), r.method) for r in rows], next_pk

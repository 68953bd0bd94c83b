"""The registry of source systems in the database: reading, registering, and the per-process
snapshot the writer consults.

``put_systems`` creates or replaces source systems (the admin API and ``carejoin sources
load``); an ODS code or id already taken by another system is a conflict (409). Each process
re-reads the registry at most every ``ttl`` seconds (``RegistryStore``), so a change made
through one replica reaches the others within that time; the replica that made it applies it
from its next request.
"""

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fhir_gateway.feeds.models import SourceSystemClientRow, SourceSystemRow
from fhir_gateway.feeds.sources import (
    Registry,
    SourceSystem,
    SourceSystemError,
    parse_source_system,
)
from fhir_gateway.outcomes import Conflict, Invalid, Issue, Unprocessable


@dataclass(frozen=True, slots=True)
class Registered:
    """A source system as stored, with when it was registered and last changed, and by whom."""

    system: SourceSystem
    created_at: datetime
    updated_at: datetime
    updated_by: str

    def to_json(self) -> dict[str, Any]:
        return {
            **self.system.to_json(),
            "created": self.created_at.isoformat(),
            "updated": self.updated_at.isoformat(),
            "updatedBy": self.updated_by,
        }


def list_systems(session: Session) -> list[Registered]:
    rows = session.scalars(select(SourceSystemRow).order_by(SourceSystemRow.id)).all()
    clients: dict[str, list[str]] = {}
    for client_id, system_id in session.execute(
        select(SourceSystemClientRow.client_id, SourceSystemClientRow.source_system_id)
    ):
        clients.setdefault(system_id, []).append(client_id)
    return [_registered(row, clients.get(row.id, ())) for row in rows]


def get_system(session: Session, system_id: str) -> Registered | None:
    row = session.get(SourceSystemRow, system_id)
    if row is None:
        return None
    clients = session.scalars(
        select(SourceSystemClientRow.client_id).where(
            SourceSystemClientRow.source_system_id == system_id
        )
    ).all()
    return _registered(row, clients)


def _registered(row: SourceSystemRow, clients: Iterable[str]) -> Registered:
    return Registered(
        SourceSystem(
            id=row.id,
            ods=row.ods_code,
            kind=row.kind,
            name=row.name,
            clients=tuple(sorted(clients)),
            active=row.active,
        ),
        created_at=row.created_at,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def parse_document(document: object) -> list[SourceSystem]:
    """Source systems from a JSON document: an object of systems by id, or a list of systems
    each with its ``id``. 400 for a document of another shape, 422 naming the system and the
    field for a system that cannot be registered, 409 for two with one ODS code."""
    items: list[tuple[str, object]]
    if isinstance(document, dict):
        items = list(document.items())
    elif isinstance(document, list):
        items = []
        for number, entry in enumerate(document):
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                raise Invalid(f"Source system {number} must be an object with an 'id'")
            items.append((entry["id"], entry))
    else:
        raise Invalid("Give source systems as an object by id, or a list of objects with ids")
    systems = [parse_one(system_id, data) for system_id, data in items]
    _distinct(systems)
    return systems


def parse_one(system_id: str, data: object) -> SourceSystem:
    if not isinstance(data, dict):
        raise Invalid(f"Source system '{system_id}' must be a JSON object")
    try:
        return parse_source_system(system_id, data)
    except SourceSystemError as exc:
        message = f"Source system '{system_id}': {exc}"
        issue = Issue(code="value", diagnostics=message, expression=(exc.field,))
        raise Unprocessable(message, issues=(issue,)) from exc


def _distinct(systems: Sequence[SourceSystem]) -> None:
    ids: set[str] = set()
    ods: dict[str, str] = {}
    for system in systems:
        if system.id in ids:
            raise Invalid(f"Source system '{system.id}' is given twice")
        ids.add(system.id)
        if system.ods in ods:
            raise Conflict(
                f"Source systems '{ods[system.ods]}' and '{system.id}' both name ODS code "
                f"{system.ods}; an organisation has one source system (list each sending "
                "application as one of its clients)"
            )
        ods[system.ods] = system.id


def put_systems(
    session: Session, systems: Sequence[SourceSystem], *, by: str, now: datetime
) -> list[tuple[Registered, bool]]:
    """Create or replace each system (its client list replaced whole); True where created.

    409 when a system's ODS code belongs to another registered system. Systems not named are
    left as they are."""
    _distinct(systems)
    named = {s.id for s in systems}
    taken = dict(
        session.execute(
            select(SourceSystemRow.ods_code, SourceSystemRow.id).where(
                SourceSystemRow.ods_code.in_([s.ods for s in systems])
            )
        ).all()
    )
    for system in systems:
        owner = taken.get(system.ods)
        if owner is not None and owner != system.id and owner not in named:
            raise Conflict(
                f"ODS code {system.ods} is registered already, as source system '{owner}'"
            )
    rows = {s.id: session.get(SourceSystemRow, s.id, with_for_update=True) for s in systems}
    # Systems that swap ODS codes among themselves: free their codes first (a placeholder no
    # ODS code can be, unique within this change).
    for number, system in enumerate(systems):
        row = rows[system.id]
        if row is not None and row.ods_code != system.ods:
            row.ods_code = f"~{number}"
    try:
        return _write(session, systems, rows, by=by, now=now)
    except IntegrityError as exc:  # another request registered the same id or code meanwhile
        raise Conflict(
            "Another change to the same source system or ODS code was made at the same time; "
            "read the registry and try again"
        ) from exc


def _write(
    session: Session,
    systems: Sequence[SourceSystem],
    rows: Mapping[str, SourceSystemRow | None],
    *,
    by: str,
    now: datetime,
) -> list[tuple[Registered, bool]]:
    session.flush()
    results: list[tuple[Registered, bool]] = []
    for system in systems:
        row = rows[system.id]
        created = row is None
        if row is None:
            row = SourceSystemRow(id=system.id, created_at=now)
            session.add(row)
        row.ods_code = system.ods
        row.kind = system.kind
        row.name = system.name
        row.active = system.active
        row.updated_at = now
        row.updated_by = by[:140]
        session.flush()
        session.execute(
            delete(SourceSystemClientRow).where(SourceSystemClientRow.source_system_id == system.id)
        )
        for client in system.clients:
            session.add(SourceSystemClientRow(client_id=client, source_system_id=system.id))
        session.flush()
        results.append((Registered(system, row.created_at, now, row.updated_by), created))
    return results


def registry(session: Session, *, always_enforced: bool) -> Registry:
    return Registry.of((r.system for r in list_systems(session)), always_enforced=always_enforced)


@dataclass(frozen=True, slots=True)
class _Cached:
    registry: Registry
    fetched: float


class RegistryStore:
    """The registry as this process last read it (at most ``ttl`` seconds old).

    ``always_enforced``: the registry is enforced even while it is empty (production, where
    the service trusts the partnership's identity provider)."""

    def __init__(self, *, always_enforced: bool, ttl: float = 5.0) -> None:
        self.always_enforced = always_enforced
        self._ttl = ttl
        self._cached: _Cached | None = None
        self._lock = threading.Lock()

    def fresh(self) -> Registry | None:
        cached = self._cached
        if cached is not None and time.monotonic() - cached.fetched < self._ttl:
            return cached.registry
        return None

    def current(self, unit_of_work: Callable[[], AbstractContextManager[Session]]) -> Registry:
        found = self.fresh()
        if found is not None:
            return found
        with self._lock:
            found = self.fresh()
            if found is not None:
                return found
            with unit_of_work() as session:
                found = registry(session, always_enforced=self.always_enforced)
            self._cached = _Cached(found, time.monotonic())
            return found

    def forget(self) -> None:
        self._cached = None


def names(registry: Registry) -> Mapping[str, SourceSystem]:
    """Every registered source system by ODS code (for showing who sent what)."""
    return {s.ods: s for s in registry.systems}

"""The registry of source systems, as plain data (pure: no database, no HTTP).

A source system is one organisation's feed into the shared record: its ODS code, its kind
(gp, hospital, social-care, other), a name, and the OAuth client ids (the ``client_id`` or
``sub`` of SMART Backend Services tokens) that may send as it. Everything a source sends is
attributed to it: ``meta.source`` is ``urn:carejoin:source:<ODS code>`` (``source_uri``), from
which the store labels the recording organisation. One organisation has at most one source
system; an organisation with several sending applications (a PAS and an EPR) registers them
as client ids of its one source system. A client id may send for several source systems (an
integration engine relaying for the partnership); what it sends must then name which one.

``Registry`` is a snapshot of the table that the gateway keeps per process
(``feeds.registry.RegistryStore``) and the writer consults (``access.writer``).
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir_gateway.feeds import source_uri

KINDS = ("gp", "hospital", "social-care", "other")
ODS_CODE = re.compile(r"^[A-Z0-9]{3,10}$")
SYSTEM_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
CLIENT_ID = re.compile(r"^[A-Za-z0-9._:@/-]{1,140}$")
FIELDS = frozenset({"id", "ods", "kind", "name", "clients", "active"})


class SourceSystemError(ValueError):
    """A source system that cannot be registered; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class SourceSystem:
    id: str
    ods: str
    kind: str
    name: str
    clients: tuple[str, ...] = ()
    active: bool = True

    @property
    def uri(self) -> str:
        """The ``meta.source`` of everything it sends."""
        return source_uri(self.ods)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ods": self.ods,
            "kind": self.kind,
            "name": self.name,
            "clients": list(self.clients),
            "active": self.active,
            "source": self.uri,
        }


def parse_source_system(system_id: str, data: Mapping[str, Any]) -> SourceSystem:
    """The source system ``data`` describes (``id`` may be left out: ``system_id`` names it).

    Raises ``SourceSystemError`` naming the field: an unknown field, a missing or malformed
    one, an ODS code that is not 3 to 10 capital letters and digits, an unknown kind."""
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise SourceSystemError(unknown[0], f"unknown field '{unknown[0]}'")
    if not SYSTEM_ID.match(system_id):
        raise SourceSystemError(
            "id",
            f"'{system_id}' is not a source system id (lower-case letters, digits and "
            "hyphens, at most 64)",
        )
    given_id = data.get("id", system_id)
    if given_id != system_id:
        raise SourceSystemError("id", f"the body names '{given_id}', the path '{system_id}'")
    ods = data.get("ods")
    if not isinstance(ods, str) or not ODS_CODE.match(ods):
        raise SourceSystemError(
            "ods", f"'ods' must be an ODS code (3 to 10 capital letters and digits), not {ods!r}"
        )
    kind = data.get("kind")
    if kind not in KINDS:
        raise SourceSystemError("kind", f"'kind' must be one of {', '.join(KINDS)}, not {kind!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 200:
        raise SourceSystemError("name", "'name' must be a non-empty string of at most 200")
    clients = data.get("clients", [])
    if not isinstance(clients, list) or not all(isinstance(c, str) for c in clients):
        raise SourceSystemError("clients", "'clients' must be a list of client ids")
    for client in clients:
        if not CLIENT_ID.match(client):
            raise SourceSystemError("clients", f"'{client}' is not a client id")
    active = data.get("active", True)
    if not isinstance(active, bool):
        raise SourceSystemError("active", "'active' must be true or false")
    return SourceSystem(
        id=system_id,
        ods=ods,
        kind=str(kind),
        name=name.strip(),
        clients=tuple(sorted(set(clients))),
        active=active,
    )


@dataclass(frozen=True)
class Registry:
    """Every registered source system, and whether the registry is enforced.

    ``enforced``: system clients write only as the active source systems they are registered
    for. It holds when any source system is registered, and always in production (where an
    empty registry means no system may write); with an empty registry in development and
    tests, system clients write as before (their own organisation and what the agreement's
    clause names)."""

    systems: tuple[SourceSystem, ...] = ()
    enforced: bool = False
    _by_client: Mapping[str, tuple[SourceSystem, ...]] = field(init=False, repr=False)
    _by_ods: Mapping[str, SourceSystem] = field(init=False, repr=False)
    _by_id: Mapping[str, SourceSystem] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_client: dict[str, list[SourceSystem]] = {}
        for system in self.systems:
            if system.active:
                for client in system.clients:
                    by_client.setdefault(client, []).append(system)
        object.__setattr__(self, "_by_client", {k: tuple(v) for k, v in by_client.items()})
        object.__setattr__(self, "_by_ods", {s.ods: s for s in self.systems})
        object.__setattr__(self, "_by_id", {s.id: s for s in self.systems})

    @classmethod
    def of(cls, systems: Iterable[SourceSystem], *, always_enforced: bool) -> "Registry":
        listed = tuple(systems)
        return cls(listed, enforced=always_enforced or bool(listed))

    def for_client(self, client_id: str | None) -> tuple[SourceSystem, ...]:
        """The active source systems ``client_id`` may send as."""
        return self._by_client.get(client_id or "", ())

    def by_ods(self, ods: str) -> SourceSystem | None:
        """The source system of an organisation (active or not)."""
        return self._by_ods.get(ods)

    def named(self, name: str) -> SourceSystem | None:
        """The source system with this id, else the one with this ODS code."""
        return self._by_id.get(name) or self._by_ods.get(name)


EMPTY = Registry()

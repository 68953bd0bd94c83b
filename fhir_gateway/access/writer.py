"""Who may write what: source records are never overwritten by another source.

A caller acting for an organisation writes only that organisation's records: what it creates
is attributed to it (``meta.source`` is set to ``urn:carejoin:source:<ODS>`` when absent, and
refused when it names another organisation), and it may update or delete only what that
organisation recorded. A system client may also write for the organisations a clause of the
agreement names for it (an integration engine loading on behalf of sources). Conditional
writes match only resources the caller may write, so a search can never pick another
organisation's record to overwrite.

When the registry of source systems is enforced (``feeds.sources.Registry``: any source
system registered, or production), a system client writes only as the active source systems
it is registered for, whatever its token or the agreement says: what it sends is attributed
to that system (``meta.source`` its URI, so the recording organisation is the registry's),
and a client sending for several must name one in ``meta.source``. A client registered for
none may still read, but a write request from it is refused whole (403) before anything is
read or written. The registry reaches ``scope_for`` through ``use_registry`` (the gateway's
middleware sets it for each request, with whether the request is a write).

The scope is bound for the request (a context variable that the thread pool inherits) by the
routers' ``bind_writer`` dependency and enforced by ``repository.write_batch``, which every
write goes through; internal writers (identity, coordination, the demo loader) bind none and
are trusted, and a command-line feed that names its source binds ``registered_scope``.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from consent.agreements import WILDCARD, Agreement
from consent.context import AccessContext, CallerKind
from fhir_gateway.feeds import source_uri
from fhir_gateway.feeds.sources import Registry
from fhir_gateway.outcomes import Forbidden


@dataclass(frozen=True, slots=True)
class WriterScope:
    """``organisations``: whose records the caller may write (None: anyone's). ``context``
    and ``query`` let the store audit each write, in the write's own transaction."""

    organisations: frozenset[str] | None
    attribute_to: str | None  # the meta.source given to what it creates without one
    context: AccessContext | None = None
    query: str = ""


@dataclass(frozen=True, slots=True)
class Sending:
    """The registry of source systems for this request, and whether the request writes."""

    registry: Registry
    writes: bool


_writer: ContextVar[WriterScope | None] = ContextVar("carejoin_writer", default=None)
_sending: ContextVar[Sending | None] = ContextVar("carejoin_sending", default=None)


def use_registry(registry: Registry | None, *, writes: bool) -> None:
    """Make ``registry`` the one ``scope_for`` applies in this context (None: none known)."""
    _sending.set(None if registry is None else Sending(registry, writes))


def scope_for(context: AccessContext, agreement: Agreement, *, query: str = "") -> WriterScope:
    own = frozenset({context.organisation}) if context.organisation else frozenset()
    attribute = source_uri(context.organisation) if context.organisation else None
    sending = _sending.get()
    if context.kind is CallerKind.SYSTEM and sending is not None and sending.registry.enforced:
        return _registered(context, sending, query)
    if context.kind is CallerKind.SYSTEM:
        clause = agreement.system_clients.get(context.client_id or "")
        if clause is not None and context.purpose.value in clause.purposes:
            if WILDCARD in clause.from_organisations:
                return WriterScope(None, attribute, context, query)
            return WriterScope(own | clause.from_organisations, attribute, context, query)
    return WriterScope(own, attribute, context, query)


def _registered(context: AccessContext, sending: Sending, query: str) -> WriterScope:
    """A system client under the registry: it writes as its registered source systems."""
    systems = sending.registry.for_client(context.client_id)
    if not systems:
        if sending.writes:
            raise Forbidden(
                f"System client '{context.client_id}' is not registered to send as any active "
                "source system, so it may not write; nothing was written (a privacy officer "
                "registers source systems: /admin/source-systems)"
            )
        return WriterScope(frozenset(), None, context, query)
    organisations = frozenset(s.ods for s in systems)
    if len(systems) == 1:
        attribute: str | None = systems[0].uri
    elif context.organisation in organisations:
        attribute = source_uri(str(context.organisation))
    else:
        attribute = None  # it sends for several: meta.source must say for which
    return WriterScope(organisations, attribute, context, query)


def registered_scope(ods: str) -> WriterScope:
    """The scope of a command-line feed that names its source system (``carejoin mllp
    --source``, ``import-cld --source``, ``import --source``): it writes that organisation's
    records only, attributed to it."""
    return WriterScope(frozenset({ods}), source_uri(ods))


def bind(scope: WriterScope | None) -> None:
    _writer.set(scope)


@contextmanager
def bound(scope: WriterScope | None) -> Iterator[None]:
    """``scope`` bound for the block (a command-line feed's writes), then what was before."""
    token = _writer.set(scope)
    try:
        yield
    finally:
        _writer.reset(token)


def current() -> WriterScope | None:
    return _writer.get()

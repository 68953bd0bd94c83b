"""Who may write what: source records are never overwritten by another source.

A caller acting for an organisation writes only that organisation's records: what it creates
is attributed to it (``meta.source`` is set to ``urn:carejoin:source:<ODS>`` when absent, and
refused when it names another organisation), and it may update or delete only what that
organisation recorded. A system client may also write for the organisations a clause of the
agreement names for it (an integration engine loading on behalf of sources). Conditional
writes match only resources the caller may write, so a search can never pick another
organisation's record to overwrite.

The scope is bound for the request (a context variable that the thread pool inherits) by the
routers' ``bind_writer`` dependency and enforced by ``repository.write_batch``, which every
write goes through; internal writers (identity, the command line, the demo loader) bind none
and are trusted.
"""

from contextvars import ContextVar
from dataclasses import dataclass

from consent.agreements import WILDCARD, Agreement
from consent.context import AccessContext, CallerKind
from fhir_gateway.feeds import source_uri


@dataclass(frozen=True, slots=True)
class WriterScope:
    """``organisations``: whose records the caller may write (None: anyone's). ``context``
    and ``query`` let the store audit each write, in the write's own transaction."""

    organisations: frozenset[str] | None
    attribute_to: str | None  # the meta.source given to what it creates without one
    context: AccessContext | None = None
    query: str = ""


_writer: ContextVar[WriterScope | None] = ContextVar("carejoin_writer", default=None)


def scope_for(context: AccessContext, agreement: Agreement, *, query: str = "") -> WriterScope:
    own = frozenset({context.organisation}) if context.organisation else frozenset()
    attribute = source_uri(context.organisation) if context.organisation else None
    if context.kind is CallerKind.SYSTEM:
        clause = agreement.system_clients.get(context.client_id or "")
        if clause is not None and context.purpose.value in clause.purposes:
            if WILDCARD in clause.from_organisations:
                return WriterScope(None, attribute, context, query)
            return WriterScope(own | clause.from_organisations, attribute, context, query)
    return WriterScope(own, attribute, context, query)


def bind(scope: WriterScope | None) -> None:
    _writer.set(scope)


def current() -> WriterScope | None:
    return _writer.get()

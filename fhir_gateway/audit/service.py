"""The audit trail's use cases: recording a denied or failed request, and reading the trail.

Permitted requests write their AuditEvents through ``repository.add_events`` in the
transaction that releases the data. A request that ends in an error writes its AuditEvent
here, in a transaction of its own (``record_failure``), since the request's own transaction
has been rolled back by then.

The trail is read through FHIR (``GET /fhir/AuditEvent``). A privacy officer sees every
event and searches them; a person sees the successful accesses to their own record, and only
who (organisation and role), when and why. Reading the trail is itself audited, in the same
transaction as the read.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from consent.audit import (
    PRIVACY_OFFICER_ROLES,
    Action,
    AuditRecord,
    Outcome,
    action_for,
    is_privacy_officer,
    record_for,
)
from consent.context import AccessContext, CallerKind
from fhir_gateway.audit import repository
from fhir_gateway.audit.repository import EventFilter, FilterColumn, TimeBound
from fhir_gateway.db import UnitOfWork
from fhir_gateway.identity import service as identity
from fhir_gateway.outcomes import Forbidden, Invalid, NotFound
from fhir_gateway.search.dates import InvalidDate, parse_range

# --- Denied and failed requests -------------------------------------------------------------

AUDITED_PREFIXES = ("/fhir/", "/identity/", "/feeds/", "/record/", "/consent/", "/admin/")
# The capability statement and SMART discovery are public: anyone may fetch them, and a
# failure there touches no one's record.
PUBLIC_PATHS = ("/fhir/metadata",)
PUBLIC_PREFIXES = ("/fhir/.well-known/",)

# Refusals (not signed in, not permitted, nothing there, deleted) are "minor failures" in
# AuditEvent.outcome; anything else that went wrong is a serious failure.
DENIED_STATUSES = frozenset({401, 403, 404, 410})

_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")  # FHIR R4 2.24.0.1 "id"
_INTERACTION_LIMIT = 32  # audit_event.interaction


def is_audited_path(path: str) -> bool:
    """Whether an error answered at ``path`` is audited: every protected API, not the
    public metadata."""
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return False
    return path == "/fhir" or path.startswith(AUDITED_PREFIXES)


def outcome_for_status(status: int) -> Outcome:
    return Outcome.DENIED if status in DENIED_STATUSES else Outcome.FAILED


@dataclass(frozen=True, slots=True)
class RequestTarget:
    """What a request was after, as far as its method and path tell."""

    interaction: str
    resource: str | None = None  # Type/id
    patient_id: str | None = None  # the source Patient whose record the path names


def _fhir_target(method: str, parts: list[str]) -> RequestTarget:
    resource = None
    if len(parts) >= 2 and _TYPE.match(parts[0]) and _ID.match(parts[1]):
        resource = f"{parts[0]}/{parts[1]}"
    patient_id = parts[1] if resource is not None and parts[0] == "Patient" else None
    operation = next((p for p in parts if p.startswith("$")), None)
    if operation is not None:
        interaction = operation
    elif not parts:
        interaction = {"GET": "search-system", "POST": "transaction"}.get(method, "operation")
    elif parts == ["_history"]:
        interaction = "history-system"
    elif len(parts) == 1:
        interaction = {
            "GET": "search-type",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }.get(method, "operation")
    elif parts[1] == "_search":
        interaction, resource = "search-type", None
    elif parts[1] == "_history":
        interaction, resource = "history-type", None
    elif len(parts) == 2:
        interaction = {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "read")
    elif len(parts) == 3 and parts[2] == "_history":
        interaction = "history-instance"
    elif len(parts) == 4 and parts[2] == "_history":
        interaction = "vread"
    else:
        interaction = "read" if method == "GET" else "operation"
    return RequestTarget(interaction[:_INTERACTION_LIMIT], resource, patient_id)


def describe_request(method: str, path: str) -> RequestTarget:
    """Guess the FHIR interaction (or operation), the resource and the patient from the
    method and path alone: the request failed, perhaps before it was understood, so nothing
    else can be relied on. Unrecognised shapes fall back to read (GET) or operation."""
    method = method.upper()
    if path == "/fhir" or path.startswith("/fhir/"):
        return _fhir_target(method, [p for p in path.removeprefix("/fhir").split("/") if p])
    parts = [p for p in path.split("/") if p]
    if len(parts) == 2 and parts[0] == "record" and _ID.match(parts[1]):
        # The joined-up record of the person a source patient belongs to.
        return RequestTarget("read", f"Patient/{parts[1]}", parts[1])
    return RequestTarget("read" if method in ("GET", "HEAD") else "operation")


def _person_reference(session: Session, patient_id: str) -> str:
    """How ``audit_event.person`` names the record of a source patient: its Person once
    identity has filed it, else the Patient itself."""
    person_id = identity.person_of(session, patient_id)
    return f"Person/{person_id}" if person_id else f"Patient/{patient_id}"


def record_failure(
    unit_of_work: UnitOfWork,
    *,
    context: AccessContext | None,
    method: str,
    path: str,
    query_string: str,
    status: int,
    message: str,
    now: datetime,
) -> None:
    """Write the AuditEvent of a request answered with an error, in a transaction of its own.

    ``context`` is the caller if the token was verified before the error (None otherwise);
    the outcome is "denied" for 401, 403, 404 and 410 and "failed" for anything else; the
    detail is the message the caller was given. Raises whatever the database raises: the
    caller (the error handler) logs it and still answers with the original error.
    """
    target = describe_request(method, path)
    query = f"{path}?{query_string}" if query_string else path
    with unit_of_work() as session:
        person = _person_reference(session, target.patient_id) if target.patient_id else None
        record = record_for(
            context,
            recorded_at=now,
            action=action_for(target.interaction),
            interaction=target.interaction,
            outcome=outcome_for_status(status),
            query=query,
            person=person,
            resource=target.resource,
            detail=message,
        )
        repository.add_events(session, [record])


# --- Reading the trail ------------------------------------------------------------------------

DEFAULT_COUNT = 50
MAX_COUNT = 1000

# Search parameter -> audit_event column. ``agent``, ``agent-role``, ``outcome`` and ``date``
# are AuditEvent's own R4 parameters; ``organization`` (the organisation the agent acted for)
# and ``purpose`` (the purpose of use) are this server's, as R4 defines neither.
TOKEN_PARAMS: dict[str, FilterColumn] = {
    "agent": "agent",
    "agent-role": "role",
    "organization": "organisation",
    "purpose": "purpose",
    "outcome": "outcome",
}
# A person may narrow their view by what they are shown (organisation, role, why, when), but
# not by who the user was nor by outcome, which their view does not include.
PERSON_PARAMS = frozenset({"patient", "date", "organization", "agent-role", "purpose"})
CONTROL_PARAMS = frozenset({"_count", "_cursor", "_format"})
OUTCOMES = frozenset(o.value for o in Outcome)
_COMPARISONS = ("ge", "gt", "le", "lt")


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is reading the trail. ``record`` is None for a privacy officer; for a person it
    names their record (their Person, or their Patient before identity has filed it) and
    ``references`` every way an event may name it."""

    record: str | None
    references: frozenset[str] = frozenset()

    @property
    def is_person(self) -> bool:
        return self.record is not None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    event_id: str
    record: AuditRecord


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of a search, newest first; ``next_cursor`` continues it (None: the last)."""

    viewer: Viewer
    entries: tuple[AuditEntry, ...]
    next_cursor: int | None


def _record_references(session: Session, reference: str) -> frozenset[str]:
    """Every reference under which events about the record ``reference`` names are kept:
    the Person and each source Patient linked to it (events name the Person once identity
    has filed a patient, the Patient before)."""
    kind, _slash, ident = reference.partition("/")
    if kind == "Person":
        return frozenset(
            {reference, *(f"Patient/{p}" for p in identity.patients_of(session, ident))}
        )
    person_id, patient_ids = identity.joined_patients(session, ident)
    references = {f"Patient/{p}" for p in patient_ids}
    if person_id is not None:
        references.add(f"Person/{person_id}")
    return frozenset(references)


def viewer_for(
    session: Session,
    context: AccessContext,
    privacy_roles: frozenset[str] = PRIVACY_OFFICER_ROLES,
) -> Viewer:
    """A privacy officer, or a person reading about their own record; anyone else is refused
    (403). Scopes are checked by the caller."""
    if is_privacy_officer(context, privacy_roles):
        return Viewer(record=None)
    if context.kind is CallerKind.PATIENT and context.patient:
        return Viewer(
            record=_person_reference(session, context.patient),
            references=_record_references(session, f"Patient/{context.patient}"),
        )
    raise Forbidden(
        "Only a privacy officer, or a person for their own record, may read the audit trail"
    )


def _patient_reference(value: str) -> str:
    kind, slash, ident = value.partition("/")
    if not slash:
        kind, ident = "Patient", value  # a bare id names a Patient, as FHIR references do
    if kind not in ("Patient", "Person") or not _ID.match(ident):
        raise Invalid(f"patient must name a Patient or a Person, not '{value}'")
    return f"{kind}/{ident}"


def _date_bounds(value: str) -> list[TimeBound]:
    prefix = value[:2]
    if prefix.isalpha():
        if prefix not in (*_COMPARISONS, "eq"):
            raise Invalid(f"date supports the prefixes eq, ge, gt, le and lt, not '{prefix}'")
        value = value[2:]
    else:
        prefix = "eq"
    try:
        low, high = parse_range(value)
    except InvalidDate as exc:
        raise Invalid(str(exc)) from exc
    # Each prefix compares the instant recorded with the range the value denotes at its
    # precision (FHIR R4 3.1.1.5.3): gt means after the whole range, lt before all of it.
    if prefix == "eq":
        return [TimeBound("ge", low), TimeBound("le", high)]
    if prefix == "ge":
        return [TimeBound("ge", low)]
    if prefix == "gt":
        return [TimeBound("gt", high)]
    if prefix == "le":
        return [TimeBound("le", high)]
    return [TimeBound("lt", low)]


def _whole_number(name: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise Invalid(f"{name} must be a whole number of at least 1")
    return int(value)


@dataclass(frozen=True, slots=True)
class _Search:
    filters: tuple[EventFilter, ...]
    bounds: tuple[TimeBound, ...]
    count: int
    cursor: int | None


def _parse(session: Session, viewer: Viewer, params: Sequence[tuple[str, str]]) -> _Search:
    filters: list[EventFilter] = []
    bounds: list[TimeBound] = []
    count, cursor = DEFAULT_COUNT, None
    for name, value in params:
        if name not in CONTROL_PARAMS and not value.strip():
            raise Invalid(f"The search parameter '{name}' has no value")
        if viewer.is_person and name not in PERSON_PARAMS | CONTROL_PARAMS:
            if name in TOKEN_PARAMS:
                raise Forbidden(f"A person's view of the audit cannot be searched by '{name}'")
            raise Invalid(f"AuditEvent does not support the search parameter '{name}'")
        if name == "_count":
            count = min(_whole_number(name, value), MAX_COUNT)
        elif name == "_cursor":
            cursor = _whole_number(name, value)
        elif name == "_format":
            continue  # the Accept header decides; JSON is the only format served
        elif name == "patient":
            wanted = [_patient_reference(v.strip()) for v in value.split(",")]
            if viewer.is_person:
                if any(ref not in viewer.references for ref in wanted):
                    raise Forbidden("A person may read the audit of their own record only")
                continue  # their view is already their whole record
            references: set[str] = set()
            for ref in wanted:
                references |= _record_references(session, ref)
            filters.append(EventFilter("person", tuple(sorted(references))))
        elif name == "date":
            bounds.extend(_date_bounds(value.strip()))
        elif name in TOKEN_PARAMS:
            # token values may carry a system (system|code); the code alone is stored.
            values = tuple(v.strip().rpartition("|")[2] for v in value.split(","))
            if name == "outcome" and not set(values) <= OUTCOMES:
                raise Invalid("outcome is one of 0 (success), 4 (denied) or 8 (failed)")
            filters.append(EventFilter(TOKEN_PARAMS[name], values))
        else:
            # Refused rather than ignored: a privacy officer must never take a result for a
            # narrower search than the one that ran.
            raise Invalid(f"AuditEvent does not support the search parameter '{name}'")
    if viewer.is_person:
        filters.append(EventFilter("person", tuple(sorted(viewer.references))))
        filters.append(EventFilter("outcome", (Outcome.SUCCESS.value,)))
    return _Search(tuple(filters), tuple(bounds), count, cursor)


def _audit_read(
    session: Session,
    context: AccessContext,
    viewer: Viewer,
    *,
    interaction: str,
    query: str,
    now: datetime,
    resource: str | None = None,
) -> None:
    # Reading the trail is an access like any other, committed with the read. A privacy
    # officer's reading touches no one's record in particular; a person's is about their own.
    repository.add_events(
        session,
        [
            record_for(
                context,
                recorded_at=now,
                action=Action.READ,
                interaction=interaction,
                outcome=Outcome.SUCCESS,
                query=query,
                person=viewer.record,
                resource=resource,
            )
        ],
    )


# The person's own requests (reading their record or this trail) are left out of their view.
_OWN_ACCESSES = (CallerKind.PATIENT.value,)


def search_events(
    session: Session,
    *,
    context: AccessContext,
    privacy_roles: frozenset[str] = PRIVACY_OFFICER_ROLES,
    params: Sequence[tuple[str, str]],
    query: str,
    now: datetime,
) -> AuditPage:
    """``GET /fhir/AuditEvent``: a page of events the caller may see, newest first.

    A privacy officer may filter by ``patient`` (a Patient or Person: the whole record it
    belongs to), ``agent``, ``agent-role``, ``organization``, ``purpose``, ``outcome`` and
    ``date``; a person by ``patient`` (their own only), ``date``, ``organization``,
    ``agent-role`` and ``purpose``, and sees successful accesses by others to their record.
    Unknown parameters are refused (400), never ignored. ``_count`` defaults to 50 and is at
    most 1000; ``_cursor`` is the ``pk`` below which the next page starts. The search itself
    is audited in the session's transaction.
    """
    viewer = viewer_for(session, context, privacy_roles)
    search = _parse(session, viewer, params)
    rows = repository.search_events(
        session,
        filters=search.filters,
        bounds=search.bounds,
        exclude_caller_kinds=_OWN_ACCESSES if viewer.is_person else (),
        before_pk=search.cursor,
        limit=search.count + 1,
    )
    more = len(rows) > search.count
    rows = rows[: search.count]
    _audit_read(session, context, viewer, interaction="search-type", query=query, now=now)
    return AuditPage(
        viewer=viewer,
        entries=tuple(AuditEntry(r.event_id, repository.record_of(r)) for r in rows),
        next_cursor=rows[-1].pk if more and rows else None,
    )


def read_event(
    session: Session,
    *,
    context: AccessContext,
    privacy_roles: frozenset[str] = PRIVACY_OFFICER_ROLES,
    event_id: str,
    query: str,
    now: datetime,
) -> tuple[Viewer, AuditEntry]:
    """``GET /fhir/AuditEvent/{id}``: one event, if the caller may see it (404 otherwise, so
    a person learns nothing of events outside their view). Audited like a search."""
    viewer = viewer_for(session, context, privacy_roles)
    row = repository.get_event(session, event_id)
    visible = row is not None and (
        not viewer.is_person
        or (
            row.person in viewer.references
            and row.outcome == Outcome.SUCCESS.value
            and row.caller_kind not in _OWN_ACCESSES
        )
    )
    if row is None or not visible:
        raise NotFound(f"AuditEvent/{event_id} is not known")
    _audit_read(
        session,
        context,
        viewer,
        interaction="read",
        query=query,
        now=now,
        resource=f"AuditEvent/{event_id}",
    )
    return viewer, AuditEntry(row.event_id, repository.record_of(row))

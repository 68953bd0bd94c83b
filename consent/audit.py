"""What an access is recorded as: the audit record, decided here, stored by the gateway.

Pure: an ``AuditRecord`` is plain data built from the access context and what was asked;
the gateway writes it in the same transaction as the data it releases (or, for a denied or
failed request, in a transaction of its own). The FHIR ``AuditEvent`` a privacy officer reads
is rendered from the record (IHE Basic Audit Log Patterns: who, role, organisation, purpose
of use, the patient, what was asked, the outcome), one record per person touched.
"""

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from consent.context import AccessContext, CallerKind


class Action(StrEnum):
    """AuditEvent.action: C create, R read/view/print, U update, D delete, E execute."""

    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


class Outcome(StrEnum):
    """AuditEvent.outcome: 0 success, 4 minor failure (refused), 8 serious failure."""

    SUCCESS = "0"
    DENIED = "4"
    FAILED = "8"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited access, for one person (``person``) or for no person in particular.

    ``interaction`` is the FHIR restful interaction or operation (``read``, ``search-type``,
    ``$everything``, ``create``...); ``query`` what was asked (path and query string);
    ``person`` the Person (or, before identity has filed it, the source Patient) whose record
    was touched, as a relative reference.
    """

    recorded_at: datetime
    action: Action
    interaction: str
    outcome: Outcome
    caller_kind: str
    agent: str  # Practitioner/..., Patient/... or the system client id
    organisation: str | None
    role: str | None
    purpose: str
    break_glass: bool
    query: str
    person: str | None = None
    resource: str | None = None  # Type/id of a single resource, where there is one
    detail: str | None = None  # why it was refused or failed; the break-glass reason


def record_for(
    context: AccessContext | None,
    *,
    recorded_at: datetime,
    action: Action,
    interaction: str,
    outcome: Outcome,
    query: str,
    person: str | None = None,
    resource: str | None = None,
    detail: str | None = None,
) -> AuditRecord:
    """The record of an access by ``context`` (None: the caller could not be identified)."""
    if context is None:
        return AuditRecord(
            recorded_at=recorded_at,
            action=action,
            interaction=interaction,
            outcome=outcome,
            caller_kind="unknown",
            agent="unknown",
            organisation=None,
            role=None,
            purpose="",
            break_glass=False,
            query=query,
            person=person,
            resource=resource,
            detail=detail,
        )
    return AuditRecord(
        recorded_at=recorded_at,
        action=action,
        interaction=interaction,
        outcome=outcome,
        caller_kind=context.kind.value,
        agent=context.user or context.client_id or context.subject,
        organisation=context.organisation,
        role=context.role,
        purpose=context.purpose.value,
        break_glass=context.purpose.value == "BTG",
        query=query,
        person=person,
        resource=resource,
        detail=detail,
    )


# --- Who may read the audit ---------------------------------------------------------------

PRIVACY_OFFICER_ROLES = frozenset({"CJ0003"})
"""The roles whose holders read the whole audit trail (privacy officers, Caldicott guardians).

The sharing agreement names these roles (``privacy_officer_roles``); this is the default where
it names none.
"""


def is_privacy_officer(
    context: AccessContext, roles: frozenset[str] = PRIVACY_OFFICER_ROLES
) -> bool:
    """Whether the caller is a member of staff acting in a privacy officer role, ``roles``
    being those the agreement names (the scopes are checked separately: the role alone does
    not open the audit trail)."""
    return context.kind is CallerKind.USER and context.role in roles


# --- Rendering as FHIR (IHE Basic Audit Log Patterns) ---------------------------------------

AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
URI = "urn:ietf:rfc:3986"
CAREJOIN_PURPOSE = "https://fhir.carejoin.example/CodeSystem/purpose-of-use"
CAREJOIN_ROLE = "https://fhir.carejoin.example/CodeSystem/role"
CAREJOIN_OPERATION = "https://fhir.carejoin.example/CodeSystem/operation"
CAREJOIN_INTERACTION = "https://fhir.carejoin.example/CodeSystem/interaction"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
CLIENT_ID = "https://fhir.carejoin.example/Id/client-id"
TOKEN_SUBJECT = "https://fhir.carejoin.example/Id/token-subject"
OBSERVER = "carejoin"

# The codes of http://hl7.org/fhir/restful-interaction (R4).
RESTFUL_INTERACTIONS = frozenset(
    {
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history",
        "history-instance",
        "history-type",
        "history-system",
        "create",
        "search",
        "search-type",
        "search-system",
        "search-compartment",
        "capabilities",
        "transaction",
        "batch",
        "operation",
    }
)
QUERIES = frozenset(
    {
        "search",
        "search-type",
        "search-system",
        "search-compartment",
        "history",
        "history-instance",
        "history-type",
        "history-system",
    }
)
_ACTIONS = {
    "create": Action.CREATE,
    "update": Action.UPDATE,
    "patch": Action.UPDATE,
    "delete": Action.DELETE,
    "transaction": Action.EXECUTE,
    "batch": Action.EXECUTE,
    "operation": Action.EXECUTE,
}
_WRITES = frozenset({"create", "update", "patch", "delete", "transaction", "batch"})
# HL7 v3 ActReason has every purpose of use we accept except our own case-finding.
_ACT_REASONS = {
    "TREAT": "treatment",
    "BTG": "break the glass",
    "PATRQT": "patient requested",
}


def action_for(interaction: str) -> Action:
    """The AuditEvent.action of a restful interaction or operation.

    Reads, vreads, searches and history are R; create C; update and patch U; delete D;
    transactions, batches and operations (``$everything``, ``$match``...) E, because one
    operation may read and write.
    """
    if interaction.startswith("$"):
        return Action.EXECUTE
    return _ACTIONS.get(interaction, Action.READ)


def _coding(system: str, code: str, display: str | None = None) -> dict[str, object]:
    coding: dict[str, object] = {"system": system, "code": code}
    if display is not None:
        coding["display"] = display
    return coding


def _concept(system: str, code: str, display: str | None = None) -> dict[str, object]:
    return {"coding": [_coding(system, code, display)]}


def instant(moment: datetime) -> str:
    """A FHIR instant in UTC with microseconds: the same text for the same moment, always."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Signing in and out are not restful interactions: they are recorded as DICOM's "User
# Authentication" event (as IHE ATNA records them), subtype Login or Logout.
AUTHENTICATION = {"login": ("110122", "Login"), "logout": ("110123", "Logout")}


def _type(interaction: str) -> dict[str, object]:
    if interaction in AUTHENTICATION:
        return _coding(DICOM, "110114", "User Authentication")
    return _coding(AUDIT_EVENT_TYPE, "rest", "Restful Operation")


def _subtype(interaction: str) -> list[dict[str, object]]:
    if interaction.startswith("$"):
        # BALP codes an operation as the restful interaction "operation"; the operation's
        # name goes beside it so a privacy officer can tell $everything from $match.
        return [
            _coding(RESTFUL_INTERACTION, "operation"),
            _coding(CAREJOIN_OPERATION, interaction),
        ]
    if interaction in AUTHENTICATION:
        code, display = AUTHENTICATION[interaction]
        return [_coding(DICOM, code, display)]
    if interaction in RESTFUL_INTERACTIONS:
        return [_coding(RESTFUL_INTERACTION, interaction)]
    return [_coding(CAREJOIN_INTERACTION, interaction)]


def _purpose(purpose: str) -> dict[str, object] | None:
    if purpose in _ACT_REASONS:
        return _concept(ACT_REASON, purpose, _ACT_REASONS[purpose])
    if purpose:
        return _concept(CAREJOIN_PURPOSE, purpose)
    return None  # the caller could not be identified, so there is no declared purpose


_FHIR_ACTORS = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Device")


def _who(record: AuditRecord) -> dict[str, object]:
    head, slash, tail = record.agent.partition("/")
    if slash and tail and head in _FHIR_ACTORS:
        return {"reference": record.agent}
    if record.caller_kind == "unknown":
        return {"display": "unidentified caller"}
    system = CLIENT_ID if record.caller_kind == "system" else TOKEN_SUBJECT
    return {"identifier": {"system": system, "value": record.agent}, "display": record.agent}


def _user_agent_type(record: AuditRecord) -> dict[str, object]:
    # BALP's user agent types: PAT when the user is the patient, AGNT for a push (create,
    # update), IRCP (information recipient) for a query or retrieve.
    if record.caller_kind == "patient":
        return _concept(ROLE_CLASS, "PAT", "patient")
    if record.interaction in _WRITES:
        return _concept(ROLE_CLASS, "AGNT", "agent")
    return _concept(PARTICIPATION_TYPE, "IRCP", "information recipient")


def _organisation_agent(ods_code: str) -> dict[str, object]:
    # BALP records the organisation a user acts for as an agent of its own (type PROV,
    # requestor false) rather than in agent.location, which is a Location.
    return {
        "type": _concept(ROLE_CLASS, "PROV", "healthcare provider"),
        "who": {"type": "Organization", "identifier": {"system": ODS, "value": ods_code}},
        "requestor": False,
    }


def _source(base_url: str | None) -> dict[str, object]:
    observer: dict[str, object] = {"display": OBSERVER}
    if base_url:
        observer["identifier"] = {"system": URI, "value": base_url}
    return {
        "observer": observer,
        "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
    }


def _entities(record: AuditRecord) -> list[dict[str, object]]:
    entities: list[dict[str, object]] = []
    if record.person is not None:
        entities.append(
            {
                "what": {"reference": record.person},
                "type": _coding(ENTITY_TYPE, "1", "Person"),
                "role": _coding(OBJECT_ROLE, "1", "Patient"),
            }
        )
    if record.resource is not None:
        entities.append(
            {
                "what": {"reference": record.resource},
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
            }
        )
    if record.interaction in QUERIES or record.interaction.startswith("$") or not entities:
        # BALP: a query is recorded as it was asked, base64 encoded in entity.query. Anything
        # with no single resource (an operation, a failure before a resource was found) is
        # recorded the same way, so every event says what was asked.
        entities.append(
            {
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "24", "Query"),
                "query": base64.b64encode(record.query.encode()).decode("ascii"),
            }
        )
    return entities


def to_audit_event(
    record: AuditRecord, *, event_id: str, base_url: str | None = None
) -> dict[str, object]:
    """The FHIR R4 ``AuditEvent`` of a record, in the shape of IHE BALP's RESTful patterns.

    ``type`` is the restful-operation event type and ``subtype`` the interaction (or
    "operation" and the operation's name; signing in and out are DICOM's User
    Authentication, subtype Login or Logout); ``agent`` holds the requestor (a reference for a
    Practitioner or Patient, an identifier for a system client or a bare token subject, with
    the selected role) and, when there is one, the organisation acted for as a second agent;
    ``source.observer`` is this server; ``entity`` holds the person whose record was touched
    (role Patient), the single resource read or written, and the query as asked (base64).
    ``outcomeDesc`` carries the detail (why it was refused or failed; a break-glass reason).
    The output validates against the FHIR AuditEvent model; nothing here is read from outside
    the record.
    """
    user: dict[str, object] = {
        "type": _user_agent_type(record),
        "who": _who(record),
        "requestor": True,
    }
    if record.role:
        user["role"] = [_concept(CAREJOIN_ROLE, record.role)]
    agents = [user]
    if record.organisation:
        agents.append(_organisation_agent(record.organisation))
    event: dict[str, object] = {
        "resourceType": "AuditEvent",
        "id": event_id,
        "type": _type(record.interaction),
        "subtype": _subtype(record.interaction),
        "action": record.action.value,
        "recorded": instant(record.recorded_at),
        "outcome": record.outcome.value,
    }
    if record.detail:
        event["outcomeDesc"] = record.detail
    purpose = _purpose(record.purpose)
    if purpose is not None:
        event["purposeOfEvent"] = [purpose]
    event["agent"] = agents
    event["source"] = _source(base_url)
    event["entity"] = _entities(record)
    return event


def patient_view(record: AuditRecord, *, event_id: str | None = None) -> dict[str, object]:
    """What the person may see of an access to their own record, as a minimal AuditEvent.

    Only the organisation, the role, when, and why (the purpose of use): no user identity, no
    query, no resource, no detail (a break-glass reason may name other people). The
    organisation is the one agent, identified by its ODS code, with the role on it; the
    other elements AuditEvent requires (type, source) say only that this server recorded a
    restful access.
    """
    agent: dict[str, object] = {"requestor": True}
    if record.organisation:
        agent["who"] = {
            "type": "Organization",
            "identifier": {"system": ODS, "value": record.organisation},
        }
    else:
        agent["who"] = {"display": "unknown organisation"}
    if record.role:
        agent["role"] = [_concept(CAREJOIN_ROLE, record.role)]
    event: dict[str, object] = {"resourceType": "AuditEvent"}
    if event_id is not None:
        event["id"] = event_id
    event["type"] = _coding(AUDIT_EVENT_TYPE, "rest", "Restful Operation")
    event["recorded"] = instant(record.recorded_at)
    purpose = _purpose(record.purpose)
    if purpose is not None:
        event["purposeOfEvent"] = [purpose]
    event["agent"] = [agent]
    event["source"] = {"observer": {"display": OBSERVER}}
    return event


# --- Sealing: the hash chain ------------------------------------------------------------

GENESIS_HASH = "0" * 64
"""The ``previous_hash`` of the first block."""

SEALED_COLUMNS = (
    "pk",
    "event_id",
    "recorded_at",
    "action",
    "interaction",
    "outcome",
    "caller_kind",
    "agent",
    "organisation",
    "role",
    "purpose",
    "break_glass",
    "query",
    "person",
    "resource",
    "detail",
)
"""Every column of an ``audit_event`` row, in the order a sealed row lists them."""

SealedRow = tuple[
    int,  # pk
    str,  # event_id
    datetime,  # recorded_at
    str,  # action
    str,  # interaction
    str,  # outcome
    str,  # caller_kind
    str,  # agent
    str | None,  # organisation
    str | None,  # role
    str,  # purpose
    bool,  # break_glass
    str,  # query
    str | None,  # person
    str | None,  # resource
    str | None,  # detail
]


def canonical_row(row: SealedRow) -> bytes:
    """One event as the hash sees it: a compact JSON array of every column in
    ``SEALED_COLUMNS`` order, UTF-8, no spaces, non-ASCII kept as it is; ``recorded_at`` as
    ``instant`` text (UTC, microseconds, ``Z``), ``break_glass`` as true/false, absent
    values as null.

    The form is fixed: changing it would break every seal already made.
    """
    recorded_at = row[2]
    values: list[object] = [*row[:2], instant(recorded_at), *row[3:]]
    return json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def chain_hash(previous_hash: str, rows: Sequence[SealedRow]) -> str:
    """The hash of a block: SHA-256 (lower-case hex) of the previous block's hash, then a
    newline and the ``canonical_row`` of each event, in ascending ``pk`` order.

    ``rows`` must already be in ``pk`` order (the caller reads them so); a different order
    gives a different hash, which is what makes reordering detectable. The first block
    chains to ``GENESIS_HASH``.
    """
    digest = hashlib.sha256(previous_hash.encode("ascii"))
    for row in rows:
        digest.update(b"\n")
        digest.update(canonical_row(row))
    return digest.hexdigest()

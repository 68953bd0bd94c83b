"""The audit record rendered as FHIR (IHE BALP), the person's view of it, and the hash chain
(pure). All people and organisations here are synthetic."""

import base64
import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from consent.audit import (
    GENESIS_HASH,
    PRIVACY_OFFICER_ROLES,
    SEALED_COLUMNS,
    Action,
    AuditRecord,
    Outcome,
    SealedRow,
    action_for,
    canonical_row,
    chain_hash,
    is_privacy_officer,
    patient_view,
    record_for,
    to_audit_event,
)
from consent.context import AccessContext, CallerKind, Purpose, parse_scopes
from fhir_gateway.validation import validate_resource

AT = datetime(2026, 3, 4, 10, 15, 30, 123456, tzinfo=UTC)
EVENT_ID = "0123456789abcdef0123456789abcdef"
BASE = "https://carejoin.test/fhir"


def record(**overrides: Any) -> AuditRecord:
    values: dict[str, Any] = {
        "recorded_at": AT,
        "action": Action.READ,
        "interaction": "read",
        "outcome": Outcome.SUCCESS,
        "caller_kind": "user",
        "agent": "Practitioner/gp-Z90001-0",
        "organisation": "Z90001",
        "role": "R8000",
        "purpose": "TREAT",
        "break_glass": False,
        "query": "/fhir/Condition/c-1",
        "person": "Person/p-1",
        "resource": "Condition/c-1",
        "detail": None,
    }
    values.update(overrides)
    return AuditRecord(**values)


CASES = {
    "gp-read": record(),
    "system-search": record(
        interaction="search-type",
        caller_kind="system",
        agent="integration",
        organisation=None,
        role=None,
        query="/fhir/Observation?patient=Patient/gp-1&code=http://loinc.org|29463-7",
        resource=None,
    ),
    "break-glass": record(
        purpose="BTG", break_glass=True, detail="Unconscious in ED; no consent possible"
    ),
    "case-finding": record(purpose="CASEFIND", interaction="search-type", resource=None),
    "everything": record(interaction="$everything", action=Action.EXECUTE, resource="Patient/gp-1"),
    "create": record(interaction="create", action=Action.CREATE),
    "unidentified-401": record(
        outcome=Outcome.DENIED,
        caller_kind="unknown",
        agent="unknown",
        organisation=None,
        role=None,
        purpose="",
        person=None,
        resource=None,
        detail="The request carries no bearer token",
    ),
    "patient-own": record(
        caller_kind="patient",
        agent="patient-gp-1",
        organisation=None,
        role=None,
        purpose="PATRQT",
        interaction="search-type",
        resource=None,
    ),
    "failed-500": record(outcome=Outcome.FAILED, detail="An internal error occurred (request x)"),
    "custom-interaction": record(interaction="identity-review", resource=None),
    "sign-in": record(
        interaction="login",
        action=Action.EXECUTE,
        query="/auth/callback",
        person=None,
        resource=None,
        detail="Signed in through carejoin-web (authorization code, PKCE)",
    ),
    "sign-out": record(
        interaction="logout",
        action=Action.EXECUTE,
        query="/auth/logout",
        person=None,
        resource=None,
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_audit_event_is_valid_fhir(case: AuditRecord) -> None:
    event = to_audit_event(case, event_id=EVENT_ID, base_url=BASE)
    AuditEvent.model_validate(event)
    validate_resource(event)  # FHIR R4 as this server checks it (R4B models plus R4 rules)


def _codes(concepts: Any) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concepts}


def test_a_clinicians_read_in_the_balp_shape() -> None:
    event: Any = to_audit_event(CASES["gp-read"], event_id=EVENT_ID, base_url=BASE)
    assert event["id"] == EVENT_ID
    assert event["type"]["code"] == "rest"
    assert _codes(event["subtype"]) == {("http://hl7.org/fhir/restful-interaction", "read")}
    assert (event["action"], event["outcome"]) == ("R", "0")
    assert event["recorded"] == "2026-03-04T10:15:30.123456Z"
    (purpose,) = event["purposeOfEvent"]
    assert _codes(purpose["coding"]) == {
        ("http://terminology.hl7.org/CodeSystem/v3-ActReason", "TREAT")
    }
    user, organisation = event["agent"]
    assert user["requestor"] is True
    assert user["who"] == {"reference": "Practitioner/gp-Z90001-0"}
    assert _codes(user["role"][0]["coding"]) == {
        ("https://fhir.carejoin.example/CodeSystem/role", "R8000")
    }
    assert _codes(user["type"]["coding"]) == {
        ("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP")
    }
    assert organisation["requestor"] is False
    assert organisation["who"]["identifier"] == {
        "system": "https://fhir.nhs.uk/Id/ods-organization-code",
        "value": "Z90001",
    }
    assert event["source"]["observer"]["identifier"]["value"] == BASE
    patient, resource = event["entity"]
    assert patient["what"] == {"reference": "Person/p-1"}
    assert (patient["type"]["code"], patient["role"]["code"]) == ("1", "1")
    assert resource["what"] == {"reference": "Condition/c-1"}
    assert "query" not in resource  # a single-resource read names the resource, not a query
    assert "outcomeDesc" not in event


def test_a_search_records_its_query_in_base64() -> None:
    case = CASES["system-search"]
    event: Any = to_audit_event(case, event_id=EVENT_ID)
    (query,) = [e for e in event["entity"] if e["role"]["code"] == "24"]
    assert base64.b64decode(query["query"]).decode() == case.query
    (agent,) = event["agent"]  # no organisation: no second agent
    assert agent["who"]["identifier"] == {
        "system": "https://fhir.carejoin.example/Id/client-id",
        "value": "integration",
    }
    assert "identifier" not in event["source"]["observer"]  # no base URL given


@pytest.mark.parametrize(
    ("case", "system", "code"),
    [
        ("break-glass", "http://terminology.hl7.org/CodeSystem/v3-ActReason", "BTG"),
        ("case-finding", "https://fhir.carejoin.example/CodeSystem/purpose-of-use", "CASEFIND"),
        ("patient-own", "http://terminology.hl7.org/CodeSystem/v3-ActReason", "PATRQT"),
    ],
)
def test_purposes_of_use(case: str, system: str, code: str) -> None:
    event: Any = to_audit_event(CASES[case], event_id=EVENT_ID)
    assert _codes(event["purposeOfEvent"][0]["coding"]) == {(system, code)}


def test_break_glass_reason_and_failure_detail_are_the_outcome_description() -> None:
    event: Any = to_audit_event(CASES["break-glass"], event_id=EVENT_ID)
    assert event["outcomeDesc"] == "Unconscious in ED; no consent possible"
    unknown: Any = to_audit_event(CASES["unidentified-401"], event_id=EVENT_ID)
    assert (unknown["outcome"], unknown["outcomeDesc"]) == (
        "4",
        "The request carries no bearer token",
    )
    assert "purposeOfEvent" not in unknown  # no caller, no declared purpose
    assert unknown["agent"][0]["who"] == {"display": "unidentified caller"}
    assert unknown["entity"][0]["role"]["code"] == "24"  # what was asked is still recorded


def test_an_operation_names_itself_beside_the_interaction() -> None:
    event: Any = to_audit_event(CASES["everything"], event_id=EVENT_ID)
    assert _codes(event["subtype"]) == {
        ("http://hl7.org/fhir/restful-interaction", "operation"),
        ("https://fhir.carejoin.example/CodeSystem/operation", "$everything"),
    }
    assert event["action"] == "E"


@pytest.mark.parametrize(("case", "code"), [("sign-in", "110122"), ("sign-out", "110123")])
def test_signing_in_and_out_are_dicom_user_authentication(case: str, code: str) -> None:
    event: Any = to_audit_event(CASES[case], event_id=EVENT_ID)
    dicom = "http://dicom.nema.org/resources/ontology/DCM"
    assert event["type"] == {"system": dicom, "code": "110114", "display": "User Authentication"}
    assert _codes(event["subtype"]) == {(dicom, code)}
    assert event["action"] == "E"
    assert event["agent"][0]["who"] == {"reference": "Practitioner/gp-Z90001-0"}


@pytest.mark.parametrize(
    ("case", "code"),
    [("patient-own", "PAT"), ("create", "AGNT"), ("gp-read", "IRCP")],
)
def test_user_agent_type_follows_balp(case: str, code: str) -> None:
    event: Any = to_audit_event(CASES[case], event_id=EVENT_ID)
    assert event["agent"][0]["type"]["coding"][0]["code"] == code


@pytest.mark.parametrize(
    ("interaction", "action"),
    [
        ("read", Action.READ),
        ("vread", Action.READ),
        ("search-type", Action.READ),
        ("history-instance", Action.READ),
        ("create", Action.CREATE),
        ("update", Action.UPDATE),
        ("patch", Action.UPDATE),
        ("delete", Action.DELETE),
        ("transaction", Action.EXECUTE),
        ("$everything", Action.EXECUTE),
        ("operation", Action.EXECUTE),
    ],
)
def test_action_for(interaction: str, action: Action) -> None:
    assert action_for(interaction) is action


# --- The person's view -------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_patient_view_is_valid_fhir(case: AuditRecord) -> None:
    view = patient_view(case, event_id=EVENT_ID)
    AuditEvent.model_validate(view)
    validate_resource(view)


def test_patient_view_shows_organisation_role_when_and_why_only() -> None:
    case = CASES["break-glass"]
    view: Any = patient_view(case, event_id=EVENT_ID)
    assert set(view) == {
        "resourceType",
        "id",
        "type",
        "recorded",
        "purposeOfEvent",
        "agent",
        "source",
    }
    (agent,) = view["agent"]
    assert agent["who"]["identifier"]["value"] == "Z90001"
    assert agent["role"][0]["coding"][0]["code"] == "R8000"
    assert view["recorded"] == "2026-03-04T10:15:30.123456Z"
    assert view["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"
    text = json.dumps(view)
    for secret in (case.agent, case.query, case.resource, case.detail, "gp-Z90001-0"):
        assert secret is not None
        assert secret not in text


def test_patient_view_without_organisation_or_id() -> None:
    view: Any = patient_view(CASES["system-search"])
    assert "id" not in view
    assert view["agent"][0]["who"] == {"display": "unknown organisation"}
    assert "role" not in view["agent"][0]
    AuditEvent.model_validate(view)


# --- Who reads the audit --------------------------------------------------------------------


def _context(kind: CallerKind, role: str | None) -> AccessContext:
    return AccessContext(
        kind=kind,
        subject="someone",
        scopes=parse_scopes("user/*.rs"),
        purpose=Purpose.TREAT,
        organisation="Z9H",
        role=role,
    )


@pytest.mark.parametrize(
    ("kind", "role", "expected"),
    [
        (CallerKind.USER, "CJ0003", True),
        (CallerKind.USER, "R8000", False),
        (CallerKind.USER, None, False),
        (CallerKind.SYSTEM, "CJ0003", False),  # a system is never a privacy officer
        (CallerKind.PATIENT, "CJ0003", False),
    ],
)
def test_is_privacy_officer(kind: CallerKind, role: str | None, expected: bool) -> None:
    assert "CJ0003" in PRIVACY_OFFICER_ROLES
    assert is_privacy_officer(_context(kind, role)) is expected


def test_record_for_an_unidentified_caller() -> None:
    made = record_for(
        None,
        recorded_at=AT,
        action=Action.READ,
        interaction="read",
        outcome=Outcome.DENIED,
        query="/fhir/Patient/x",
    )
    assert (made.caller_kind, made.agent, made.purpose) == ("unknown", "unknown", "")


# --- The hash chain -------------------------------------------------------------------------


def sealed(pk: int = 7, **overrides: Any) -> SealedRow:
    values = dataclasses.asdict(record(**overrides))
    values["action"] = values["action"].value
    values["outcome"] = values["outcome"].value
    values["pk"] = pk
    values["event_id"] = f"{pk:032x}"
    row: Any = tuple(values[name] for name in SEALED_COLUMNS)
    return row  # type: ignore[no-any-return]


def test_canonical_row_is_fixed() -> None:
    row = sealed(pk=7, detail="Zoë's café")
    assert (
        canonical_row(row)
        == (
            '[7,"00000000000000000000000000000007","2026-03-04T10:15:30.123456Z","R","read","0",'
            '"user","Practitioner/gp-Z90001-0","Z90001","R8000","TREAT",false,"/fhir/Condition/c-1",'
            '"Person/p-1","Condition/c-1","Zoë\'s café"]'
        ).encode()
    )


def test_chain_hash_of_a_block() -> None:
    rows = [sealed(pk=1), sealed(pk=2)]
    expected = hashlib.sha256(
        GENESIS_HASH.encode() + b"\n" + canonical_row(rows[0]) + b"\n" + canonical_row(rows[1])
    ).hexdigest()
    assert chain_hash(GENESIS_HASH, rows) == expected
    assert len(expected) == 64
    assert GENESIS_HASH == "0" * 64
    assert chain_hash(GENESIS_HASH, []) == hashlib.sha256(GENESIS_HASH.encode()).hexdigest()


def test_chain_hash_depends_on_the_previous_hash_and_the_order() -> None:
    rows = [sealed(pk=1), sealed(pk=2)]
    first = chain_hash(GENESIS_HASH, rows)
    assert chain_hash(first, rows) != first
    assert chain_hash(GENESIS_HASH, list(reversed(rows))) != first


def test_the_same_instant_in_another_zone_hashes_the_same() -> None:
    elsewhere = AT.astimezone(timezone(timedelta(hours=1)))
    assert chain_hash(GENESIS_HASH, [sealed(recorded_at=elsewhere)]) == chain_hash(
        GENESIS_HASH, [sealed()]
    )


@pytest.mark.parametrize("column", SEALED_COLUMNS)
def test_every_column_is_in_the_hash(column: str) -> None:
    original = sealed()
    changed: list[Any] = list(original)
    index = SEALED_COLUMNS.index(column)
    value = changed[index]
    if isinstance(value, bool):
        changed[index] = not value
    elif isinstance(value, int):
        changed[index] = value + 1
    elif isinstance(value, datetime):
        changed[index] = value + timedelta(microseconds=1)
    elif value is None:
        changed[index] = "x"
    else:
        changed[index] = value + "x"
    assert chain_hash(GENESIS_HASH, [tuple(changed)]) != chain_hash(GENESIS_HASH, [original])

"""The compiled consent predicate returns exactly what ``decide`` permits, on both databases.

Decision 5 of the design brief: consent is enforced in the query, and the plain per-resource
``decide`` is the reference the compiled predicate is checked against. Random worlds
(agreement, persons and source patients, labelled resources, relationships, directives,
break-glass grants, callers; see ``worlds.py``) are written into the test's transaction, one
savepoint per example; for every caller the set of resources the SQL returns must equal the
set ``decide`` permits: nothing leaked, nothing over-hidden. Hand-written worlds pin the
subtle cases, asserting what is visible as well as that both sides agree.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy.orm import Session

from consent.context import AccessContext, Purpose
from consent.directives import Directive
from consent.relationships import Relationship
from consent.visibility import Grant
from tests.fhir_gateway.access.worlds import (
    NOW,
    SENSITIVE,
    Resource,
    World,
    compare,
    disagreements,
    patient,
    system,
    user,
    worlds,
)

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(world=worlds())
def test_random_worlds_compiled_and_reference_agree(session: Session, world: World) -> None:
    assert disagreements(compare(session, world, per_person=True), world) == []


@PROPERTY
@given(world=worlds(generous=True))
def test_generous_agreements_compiled_and_reference_agree(session: Session, world: World) -> None:
    # Everything is shared with everyone under the agreement, so relationships, directives
    # and break-glass decide almost every answer.
    assert disagreements(compare(session, world, per_person=True), world) == []


@settings(PROPERTY, max_examples=40)
@given(world=worlds(narrowed=True))
def test_narrowed_scopes_compiled_and_reference_agree(session: Session, world: World) -> None:
    # Every caller's scopes narrow some type by token search parameters, and the records
    # are of those types: the queries' matching decides many answers.
    assert disagreements(compare(session, world, per_person=True), world) == []


@settings(PROPERTY, max_examples=60)
@given(world=worlds(generous=True, choices=True))
def test_choices_by_code_and_period_compiled_and_reference_agree(
    session: Session, world: World
) -> None:
    # Most directives are narrowed to a code or a period of data (deny and permit read a
    # period differently), against resources with zero to two care dates and token values.
    assert disagreements(compare(session, world, per_person=True), world) == []


# -- hand-written worlds for the subtle cases ------------------------------------------

GP, HOSPITAL, COUNCIL, STRANGER = "Z20001", "Z20002", "Z20003", "Z29999"
EVERYTHING = [
    "demographics",
    "problems",
    "medications",
    "observations",
    "encounters",
    "care-planning",
    "documents",
]
AGREEMENT: dict[str, Any] = {
    "version": "regressions",
    "organisations": [
        {"ods": GP, "kind": "gp", "name": "Synthetic Surgery"},
        {"ods": HOSPITAL, "kind": "hospital", "name": "Synthetic Hospital"},
        {"ods": COUNCIL, "kind": "social-care", "name": "Synthetic Council"},
    ],
    "contributions": {GP: EVERYTHING, HOSPITAL: EVERYTHING, COUNCIL: EVERYTHING},
    "access": [
        {
            "name": "health",
            "to": ["gp", "hospital"],
            "roles": ["DOC"],
            "purposes": ["TREAT"],
            "categories": EVERYTHING,
            "from": ["gp", "hospital", "social-care"],
            "sensitive": ["mental_health", "termination"],
        },
        {
            "name": "social care",
            "to": ["social-care"],
            "roles": ["SW"],
            "purposes": ["TREAT"],
            "categories": EVERYTHING,
            "from": ["gp", "hospital", "social-care"],
        },
    ],
    "social_care_health_consent": "explicit",
    "never_share": ["termination"],
    "break_glass_roles": ["DOC", "SW"],
    "system_clients": [{"client_id": "sys-a", "categories": ["*"], "from": ["*"]}],
}
# One person with a GP, a hospital and a council patient; one patient not yet filed.
PATIENTS: dict[str, str | None] = {
    "hv-gp": "hv-person",
    "hv-h": "hv-person",
    "hv-c": "hv-person",
    "hv-new": None,
}
GP_DOC = user(GP, "DOC", practitioner="Practitioner/u1")
HOSP_BTG = user(HOSPITAL, "DOC", Purpose.BTG, practitioner="Practitioner/u2")
SW = user(COUNCIL, "SW", practitioner="Practitioner/sw1")
SW_BTG = user(COUNCIL, "SW", Purpose.BTG, practitioner="Practitioner/sw1")

C1 = Resource("Condition", "hv-c1", HOSPITAL, "hv-h")
C2 = Resource("Condition", "hv-c2", HOSPITAL, "hv-h")
REGISTERED = Relationship("hv-gp", "registered", organisation=GP, source_organisation=GP)
MANAGED = Relationship(
    "hv-c", "care-manager", practitioner="Practitioner/sw1", source_organisation=COUNCIL
)


@dataclass
class Case:
    caller: AccessContext
    resources: list[Resource]
    visible: set[str]  # what the caller must see (and the SQL must return)
    relationships: list[Relationship] = field(default_factory=list)
    directives: list[Directive] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)


def _deny(level: int, patient_id: str = "hv-gp", **fields: Any) -> Directive:
    return Directive(patient_id, "deny", level, **fields)


def _permit(level: int, patient_id: str = "hv-gp", **fields: Any) -> Directive:
    return Directive(patient_id, "permit", level, **fields)


def _day(text: str, end: bool = False) -> datetime:
    day = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return day + timedelta(days=1) - timedelta(microseconds=1) if end else day


# A period of data, 2010 to 2015 (closed), and conditions within it, straddling its start,
# after it, and of unknown date; the person's demographics (a type without a care date).
PERIOD = {"data_from": _day("2010-01-01"), "data_to": _day("2015-12-31", end=True)}


def _dated(resource_id: str, first: str, last: str) -> Resource:
    """A hospital diagnosis of the person whose care date runs over these days."""
    return Resource(
        "Condition", resource_id, HOSPITAL, "hv-h", care_dates=((_day(first), _day(last, True)),)
    )


WITHIN = _dated("hv-in", "2012-03-01", "2012-03-01")
STRADDLING = _dated("hv-st", "2009-06-01", "2011-01-01")
AFTER = _dated("hv-af", "2016-01-01", "2016-01-01")
UNDATED = Resource("Condition", "hv-un", HOSPITAL, "hv-h")
DEMOGRAPHICS = Resource("Patient", "hv-h", HOSPITAL, "hv-h")
DATED = [WITHIN, STRADDLING, AFTER, UNDATED, DEMOGRAPHICS]
SNOMED = "http://snomed.info/sct"
CODED = Resource("Condition", "hv-cd", HOSPITAL, "hv-h", tokens=(("code", SNOMED, "x1"),))
CODED_IN_VALUE = Resource(
    "Observation",
    "hv-ov",
    HOSPITAL,
    "hv-h",
    tokens=(("code", SNOMED, "o1"), ("value-concept", SNOMED, "x1")),
)
CODE_WITHOUT_SYSTEM = Resource(
    "Condition", "hv-ns", HOSPITAL, "hv-h", tokens=(("code", None, "x1"),)
)
CODED_ELSEWHERE = Resource(
    "Condition", "hv-oc", HOSPITAL, "hv-h", tokens=(("code", "http://other", "x1"),)
)
CODES = [CODED, CODED_IN_VALUE, CODE_WITHOUT_SYSTEM, CODED_ELSEWHERE]

CASES = [
    pytest.param(
        Case(
            GP_DOC, DATED, {"Condition/hv-af", "Patient/hv-h"}, [REGISTERED], [_deny(1, **PERIOD)]
        ),
        id="a-period-objection-covers-what-meets-it-and-what-has-no-known-date",
    ),
    pytest.param(
        Case(GP_DOC, DATED, {"Condition/hv-in"}, [REGISTERED], [_deny(0), _permit(1, **PERIOD)]),
        id="a-period-permit-lets-through-only-what-lies-within-it",
    ),
    pytest.param(
        Case(
            GP_DOC,
            DATED,
            {"Condition/hv-st", "Condition/hv-in", "Patient/hv-h"},
            [REGISTERED],
            [_deny(1, data_from=_day("2016-01-01"))],
        ),
        id="a-period-open-at-its-end-and-undated-data",
    ),
    pytest.param(
        Case(
            GP_DOC,
            CODES,
            {"Condition/hv-ns", "Condition/hv-oc"},
            [REGISTERED],
            [_deny(1, code=(SNOMED, "x1"))],
        ),
        id="a-code-objection-covers-the-code-under-any-parameter-and-its-system-only",
    ),
    pytest.param(
        Case(
            GP_DOC,
            CODES,
            {"Condition/hv-cd", "Observation/hv-ov"},
            [REGISTERED],
            [_deny(0), _permit(1, code=(SNOMED, "x1"))],
        ),
        id="a-code-permit-lets-through-what-holds-the-code",
    ),
    pytest.param(
        Case(
            GP_DOC,
            [C1],
            set(),
            [REGISTERED],
            [_deny(1, recipient_organisation=GP), _permit(1, source_organisation=HOSPITAL)],
        ),
        id="equal-level-deny-beats-permit",
    ),
    pytest.param(
        Case(
            GP_DOC,
            [C1],
            {"Condition/hv-c1"},
            [REGISTERED],
            [_deny(0), _permit(2, source_organisation=HOSPITAL, recipient_organisation=GP)],
        ),
        id="higher-level-permit-beats-blanket-objection",
    ),
    pytest.param(
        Case(
            GP_DOC,
            [C1, C2],
            {"Condition/hv-c2"},
            [REGISTERED],
            [
                _deny(3, item="Condition/hv-c1"),
                _permit(3, item="Condition/hv-c1", recipient_organisation=GP),
                _permit(2, source_organisation=HOSPITAL, recipient_organisation=GP),
            ],
        ),
        id="sealed-item-hidden-despite-permits",
    ),
    pytest.param(
        Case(
            HOSP_BTG,
            [C1, C2, Resource("Condition", "hv-g1", GP, "hv-gp")],
            {"Condition/hv-c1", "Condition/hv-c2"},
            grants=[Grant("Practitioner/u2", "hv-gp", NOW)],
        ),
        id="break-glass-grant-expired-now",
    ),
    pytest.param(
        Case(
            HOSP_BTG,
            [Resource("Condition", "hv-g1", GP, "hv-gp")],
            {"Condition/hv-g1"},
            directives=[_deny(0)],
            grants=[Grant("Practitioner/u2", "hv-c", NOW + timedelta(microseconds=1))],
        ),
        id="break-glass-grant-on-another-patient-lifts-objection",
    ),
    pytest.param(
        Case(
            HOSP_BTG,
            [
                Resource("Condition", "hv-g1", GP, "hv-gp"),
                Resource("Condition", "hv-g2", GP, "hv-gp"),
            ],
            {"Condition/hv-g2"},
            directives=[_deny(3, item="Condition/hv-g1")],
            grants=[Grant("Practitioner/u2", "hv-gp", NOW + timedelta(hours=1))],
        ),
        id="break-glass-does-not-lift-a-sealed-item",
    ),
    pytest.param(
        Case(
            GP_DOC,
            [C1],
            set(),
            [Relationship("hv-h", "registered", organisation=GP, source_organisation=HOSPITAL)],
        ),
        id="registration-recorded-by-a-hospital",
    ),
    pytest.param(
        Case(
            GP_DOC,
            [C1],
            {"Condition/hv-c1"},
            [Relationship("hv-h", "registered", organisation=GP, source_organisation=GP)],
        ),
        id="registration-recorded-by-a-practice-on-the-hospital-patient",
    ),
    pytest.param(
        Case(
            GP_DOC,
            [
                Resource("Encounter", "hv-e1", COUNCIL, "hv-c"),
                Resource("Condition", "hv-n1", HOSPITAL, "hv-new"),
            ],
            {"Encounter/hv-e1"},
            [REGISTERED],
        ),
        id="relationship-through-another-patient-of-the-person-not-an-unfiled-one",
    ),
    pytest.param(
        Case(GP_DOC, [C1], set(), [REGISTERED], [_deny(0, starts_at=NOW)]),
        id="objection-starting-exactly-now",
    ),
    pytest.param(
        Case(GP_DOC, [C1], {"Condition/hv-c1"}, [REGISTERED], [_deny(0, ends_at=NOW)]),
        id="objection-ending-exactly-now",
    ),
    pytest.param(
        Case(
            GP_DOC, [C1], set(), [Relationship("hv-h", "encounter", organisation=GP, ends_at=NOW)]
        ),
        id="relationship-ending-exactly-now",
    ),
    pytest.param(
        Case(GP_DOC, [C1], set(), [REGISTERED], [_deny(0, patient_id="hv-c")]),
        id="objection-recorded-against-another-patient-of-the-person",
    ),
    pytest.param(
        Case(
            GP_DOC,
            [C1, Resource("Condition", "hv-n1", HOSPITAL, "hv-new")],
            {"Condition/hv-c1"},
            [REGISTERED, Relationship("hv-new", "encounter", organisation=GP)],
            [_deny(0, patient_id="hv-new")],
        ),
        id="objection-of-an-unfiled-patient-governs-only-their-records",
    ),
    pytest.param(
        Case(
            GP_DOC,
            [
                Resource("Condition", "hv-t1", HOSPITAL, "hv-h", frozenset({"termination"})),
                Resource("Condition", "hv-m1", HOSPITAL, "hv-h", frozenset({"mental_health"})),
                Resource("Condition", "hv-x1", HOSPITAL, "hv-h", frozenset({"hiv"})),
            ],
            {"Condition/hv-m1"},
            [REGISTERED],
        ),
        id="never-share-category-the-rule-names-as-sensitive",
    ),
    pytest.param(
        Case(SW, [C1], set(), [MANAGED]),
        id="social-care-without-explicit-consent",
    ),
    pytest.param(
        Case(
            SW, [C1], {"Condition/hv-c1"}, [MANAGED], [_permit(1, recipient_organisation=COUNCIL)]
        ),
        id="social-care-with-explicit-consent",
    ),
    pytest.param(
        Case(
            SW_BTG,
            [C1, Resource("Encounter", "hv-e1", GP, "hv-gp")],
            {"Condition/hv-c1"},
            directives=[
                _permit(1, source_organisation=HOSPITAL),
                _deny(2, source_organisation=HOSPITAL, recipient_organisation=COUNCIL),
            ],
            grants=[Grant("Practitioner/sw1", "hv-h", NOW + timedelta(hours=1))],
        ),
        id="break-glass-lifts-objection-not-missing-explicit-consent",
    ),
    pytest.param(
        Case(
            patient("hv-gp"),
            [
                C1,
                Resource("Condition", "hv-np", HOSPITAL, "hv-h", security=(("urn:x", "NOPAT"),)),
                Resource("Condition", "hv-sg", HOSPITAL, "hv-c", frozenset({"safeguarding"})),
                Resource("Condition", "hv-n1", HOSPITAL, "hv-new"),
                Resource("Organization", "hv-o1", HOSPITAL, None),
            ],
            {"Condition/hv-c1", "Organization/hv-o1", "Consent/hv-consent-hv-gp"},
            directives=[_deny(0)],
        ),
        id="the-person-sees-their-record-but-not-withheld-items",
    ),
    pytest.param(
        Case(
            system("sys-a"),
            [C1, Resource("Condition", "hv-t1", HOSPITAL, "hv-h", frozenset({"termination"}))],
            {"Condition/hv-c1"},
        ),
        id="system-granted-everything-but-never-share",
    ),
    pytest.param(
        Case(
            user(STRANGER, "DOC"),
            [
                C1,
                Resource("Condition", "hv-s1", STRANGER, "hv-h"),
                Resource("Location", "hv-l1", None, None),
            ],
            {"Condition/hv-s1", "Location/hv-l1"},
            [Relationship("hv-h", "encounter", organisation=STRANGER)],
        ),
        id="not-a-party-sees-its-own-records-and-the-directory",
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_subtle_cases(session: Session, case: Case) -> None:
    world = World(
        agreement=AGREEMENT,
        patients=PATIENTS,
        resources=case.resources,
        callers=[case.caller],
        relationships=case.relationships,
        directives=case.directives,
        grants=case.grants,
    )
    (answer,) = compare(session, world, per_person=True)
    assert answer.reference == case.visible
    assert disagreements([answer], world) == []


# -- labels outside the sensitive categories in force ----------------------------------


def test_a_label_no_longer_in_force_is_not_shared(session: Session) -> None:
    # A resource labelled 'hiv' when written; the value sets in force no longer name 'hiv'
    # (a category withdrawn or renamed). The rule does not name it either, so it is not
    # shared: every label must be one the rule names, not merely none of the categories in
    # force that it does not name.
    in_force = SENSITIVE - {"hiv"}
    agreement = dict(AGREEMENT, never_share=[])
    world = World(
        agreement=agreement,
        patients=PATIENTS,
        resources=[Resource("Condition", "hv-x1", HOSPITAL, "hv-h", frozenset({"hiv"}))],
        callers=[GP_DOC],
        relationships=[REGISTERED],
        sensitive=in_force,
    )
    (answer,) = compare(session, world)
    assert answer.reference == set()  # decide: the rule does not name 'hiv'
    assert answer.compiled == answer.reference, answer.report()


def test_a_registration_naming_a_practitioner_counts_only_from_a_practice(
    session: Session,
) -> None:
    # No derivation writes such a row today (registrations name organisations), but the
    # table allows it, and the reference and the SQL must still agree on it.
    world = World(
        agreement=AGREEMENT,
        patients=PATIENTS,
        resources=[C1],
        callers=[GP_DOC],
        relationships=[
            Relationship(
                "hv-h", "registered", practitioner="Practitioner/u1", source_organisation=HOSPITAL
            )
        ],
    )
    (answer,) = compare(session, world)
    assert answer.reference == set()
    assert answer.compiled == answer.reference, answer.report()


def test_security_codes_are_matched_case_sensitively(session: Session) -> None:
    # Codes are case-sensitive (FHIR); only v3 'NOPAT' withholds an item from the person,
    # on SQLite too (whose LIKE ignores case: the compiler compares exactly there).
    world = World(
        agreement=AGREEMENT,
        patients=PATIENTS,
        resources=[
            Resource("Condition", "hv-np", HOSPITAL, "hv-h", security=(("urn:x", "NOPAT"),)),
            Resource("Condition", "hv-lc", HOSPITAL, "hv-h", security=(("urn:x", "nopat"),)),
        ],
        callers=[patient("hv-gp")],
    )
    (answer,) = compare(session, world)
    assert answer.reference == {"Condition/hv-lc"}
    assert answer.compiled == answer.reference, answer.report()

"""The policy, one resource at a time (``decide``), and the shape of the predicate tree (pure).

The compiled tree is checked against ``decide`` on both databases in
``tests/fhir_gateway/access/test_visibility_sql.py``; here ``decide`` itself is checked
against the policy in ``consent/visibility.py``'s module docstring.
"""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consent.agreements import DIRECTORY_TYPES, Agreement, parse_agreement, types_of
from consent.context import AccessContext, CallerKind, Purpose
from consent.directives import Directive
from consent.relationships import Relationship
from consent.visibility import (
    AllOf,
    AnyOf,
    BrokeGlass,
    Const,
    DirectivesAllow,
    Grant,
    NoPatient,
    NotLabelled,
    OwnPerson,
    PersonFacts,
    Related,
    ResourceFacts,
    SensitivityNone,
    SourceIn,
    TypeIn,
    all_of,
    any_of,
    decide,
    labels_text,
    needs_explicit_consent,
    registering_practices,
    specialise,
    visibility,
)

SENSITIVE = frozenset(
    {
        "hiv",
        "sexual_health",
        "termination",
        "fertility",
        "gender_identity",
        "safeguarding",
        "mental_health",
        "substance_misuse",
    }
)
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
GP, GP2, HOSPITAL, COUNCIL, STRANGER = "Z10001", "Z10002", "Z10H", "Z10C", "Z99999"


def _document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "version": "visibility-1",
        "organisations": [
            {"ods": GP, "kind": "gp", "name": "Synthetic Surgery"},
            {"ods": GP2, "kind": "gp", "name": "Second Synthetic Surgery"},
            {"ods": HOSPITAL, "kind": "hospital", "name": "Synthetic Hospital"},
            {"ods": COUNCIL, "kind": "social-care", "name": "Synthetic Council"},
        ],
        "contributions": {
            GP: ["demographics", "problems", "medications", "encounters", "documents"],
            GP2: ["demographics", "problems"],
            HOSPITAL: ["demographics", "problems", "medications", "encounters", "observations"],
            COUNCIL: ["demographics", "encounters", "care-planning"],
        },
        "access": [
            {
                "name": "health direct care",
                "to": ["gp", "hospital"],
                "roles": ["DOC", "NURSE"],
                "purposes": ["TREAT"],
                "categories": [
                    "demographics",
                    "problems",
                    "medications",
                    "encounters",
                    "observations",
                    "care-planning",
                ],
                "from": ["gp", "hospital", "social-care"],
                "sensitive": ["mental_health", "termination"],
            },
            {
                "name": "social care direct care",
                "to": [COUNCIL],
                "roles": ["SW"],
                "purposes": ["TREAT"],
                "categories": ["demographics", "problems", "encounters", "care-planning"],
                "from": ["gp", HOSPITAL, "social-care"],
            },
            {
                "name": "case-finding",
                "to": ["gp"],
                "roles": ["DOC"],
                "purposes": ["CASEFIND"],
                "categories": ["demographics", "problems"],
                "from": ["gp", "hospital"],
            },
            {
                "name": "emergency department, break-glass only",
                "to": ["hospital"],
                "roles": ["ED", "DOC"],
                "purposes": ["BTG"],
                "categories": ["medications"],
                "from": ["gp"],
            },
        ],
        "social_care_health_consent": "explicit",
        "never_share": ["termination"],
        "break_glass_roles": ["DOC", "ED", "SW"],
        "system_clients": [
            {"client_id": "pas", "categories": ["demographics"], "from": [HOSPITAL]},
            {"client_id": "integration", "categories": ["*"], "from": ["*"]},
            {"client_id": "research", "purposes": ["CASEFIND"], "categories": ["*"], "from": ["*"]},
        ],
    }
    document.update(changes)
    return document


AGREEMENT = parse_agreement(_document(), sensitive_categories=SENSITIVE)
IMPLIED = parse_agreement(
    _document(social_care_health_consent="implied"), sensitive_categories=SENSITIVE
)


def _user(
    organisation: str,
    role: str,
    purpose: Purpose = Purpose.TREAT,
    user: str | None = "Practitioner/u1",
) -> AccessContext:
    return AccessContext(
        kind=CallerKind.USER,
        subject="u1",
        scopes=(),
        purpose=purpose,
        user=user,
        organisation=organisation,
        role=role,
    )


def _patient(patient: str) -> AccessContext:
    return AccessContext(
        kind=CallerKind.PATIENT, subject="p", scopes=(), purpose=Purpose.PATRQT, patient=patient
    )


def _system(client: str, organisation: str | None = None) -> AccessContext:
    return AccessContext(
        kind=CallerKind.SYSTEM,
        subject=client,
        scopes=(),
        client_id=client,
        organisation=organisation,
    )


GP_DOC = _user(GP, "DOC")
GP_NURSE = _user(GP, "NURSE")
GP_ADMIN = _user(GP, "ADMIN")
GP2_DOC = _user(GP2, "DOC")
GP_CASEFIND = _user(GP, "DOC", Purpose.CASEFIND)
HOSP_DOC = _user(HOSPITAL, "DOC")
HOSP_BTG = _user(HOSPITAL, "DOC", Purpose.BTG)
HOSP_NURSE_BTG = _user(HOSPITAL, "NURSE", Purpose.BTG)
HOSP_BTG_NO_USER = _user(HOSPITAL, "DOC", Purpose.BTG, user=None)
ED_BTG = _user(HOSPITAL, "ED", Purpose.BTG)
ED = _user(HOSPITAL, "ED")
SW = _user(COUNCIL, "SW", user="Practitioner/sw1")
SW_BTG = _user(COUNCIL, "SW", Purpose.BTG, user="Practitioner/sw1")
SW_NO_USER = _user(COUNCIL, "SW", user=None)
OUTSIDER = _user(STRANGER, "DOC")

# One person with three source patients: the GP's, the hospital's and the council's.
PERSON = frozenset({"p-gp", "p-h", "p-c"})
REGISTERED = Relationship("p-gp", "registered", organisation=GP, source_organisation=GP)
ADMITTED = Relationship("p-h", "encounter", organisation=HOSPITAL, source_organisation=HOSPITAL)
MANAGED = Relationship(
    "p-c", "care-manager", practitioner="Practitioner/sw1", source_organisation=COUNCIL
)
GRANT = Grant("Practitioner/u1", "p-gp", NOW + timedelta(hours=4))


def _facts(
    resource_type: str = "Condition",
    resource_id: str = "c1",
    source: str | None = HOSPITAL,
    patient: str | None = "p-h",
    *,
    sensitivity: frozenset[str] = frozenset(),
    security: frozenset[str] = frozenset(),
    relationships: tuple[Relationship, ...] = (),
    directives: tuple[Directive, ...] = (),
    grants: tuple[Grant, ...] = (),
    person: frozenset[str] = PERSON,
) -> ResourceFacts:
    return ResourceFacts(
        resource_type=resource_type,
        resource_id=resource_id,
        source_organisation=source,
        sensitivity=sensitivity,
        security=security,
        patient_id=patient,
        person_patients=(person | {patient}) if patient else frozenset(),
        relationships=relationships,
        directives=directives,
        grants=grants,
    )


def _deny(level: int = 0, patient: str = "p-gp", **fields: Any) -> Directive:
    return Directive(patient, "deny", level, **fields)


def _permit(level: int = 0, patient: str = "p-gp", **fields: Any) -> Directive:
    return Directive(patient, "permit", level, **fields)


def _case(
    case_id: str, context: AccessContext, facts: ResourceFacts, expected: bool
) -> Any:  # a pytest ParameterSet
    return pytest.param(context, facts, expected, id=case_id)


ORGANISATION_AND_DIRECTORY = [
    _case(
        "own-organisation-always",
        HOSP_DOC,
        _facts(
            sensitivity=frozenset({"termination", "hiv"}),
            directives=(_deny(), _deny(3, item="Condition/c1")),
        ),
        True,
    ),
    _case("own-organisation-not-a-party", OUTSIDER, _facts(source=STRANGER), True),
    _case(
        "not-a-party-sees-nothing-else",
        OUTSIDER,
        _facts(relationships=(replace(ADMITTED, organisation=STRANGER),)),
        False,
    ),
    _case(
        "directory-to-every-member-of-staff",
        SW,
        _facts("Organization", "o1", patient=None),
        True,
    ),
    _case("directory-to-a-stranger", OUTSIDER, _facts("Practitioner", "pr1", patient=None), True),
    _case(
        "directory-type-in-a-record-is-not-directory",
        GP_DOC,
        _facts("Organization", "o1", relationships=(REGISTERED,)),
        False,
    ),
    _case(
        "no-patient-and-not-directory",
        GP_DOC,
        _facts(patient=None, relationships=(REGISTERED,)),
        False,
    ),
    _case("no-recording-organisation", GP_DOC, _facts(source=None), False),
]

RULES = [
    _case("rule-by-kind-with-relationship", GP_DOC, _facts(relationships=(REGISTERED,)), True),
    _case("second-role-of-the-rule", GP_NURSE, _facts(relationships=(REGISTERED,)), True),
    _case("role-not-in-any-rule", GP_ADMIN, _facts(relationships=(REGISTERED,)), False),
    _case("no-relationship", GP_DOC, _facts(), False),
    _case(
        "relationship-with-another-organisation",
        GP2_DOC,
        _facts(relationships=(REGISTERED,)),
        False,
    ),
    _case(
        "case-finding-rule",
        GP_CASEFIND,
        _facts(relationships=(REGISTERED,)),
        True,
    ),
    _case(
        "case-finding-category-outside-its-rule",
        GP_CASEFIND,
        _facts("MedicationRequest", "m1", relationships=(REGISTERED,)),
        False,
    ),
    _case(
        "case-finding-from-social-care-outside-its-rule",
        GP_CASEFIND,
        _facts("Encounter", "e1", source=COUNCIL, patient="p-c", relationships=(REGISTERED,)),
        False,
    ),
    _case(
        "category-contributed-but-in-no-rule",
        HOSP_DOC,
        _facts("DocumentReference", "d1", source=GP, patient="p-gp", relationships=(ADMITTED,)),
        False,
    ),
    _case(
        "category-in-the-rule-but-not-contributed",
        HOSP_DOC,
        _facts("Observation", "o1", source=GP2, patient="p-gp", relationships=(ADMITTED,)),
        False,
    ),
    _case(
        "type-in-no-category",
        GP_DOC,
        _facts("Consent", "k1", relationships=(REGISTERED,)),
        False,
    ),
    _case(
        "source-not-a-party",
        HOSP_DOC,
        _facts(source=STRANGER, relationships=(ADMITTED,)),
        False,
    ),
    _case(
        "purpose-the-rules-do-not-name",
        _user(GP, "DOC", Purpose.PATRQT),
        _facts(relationships=(REGISTERED,)),
        False,
    ),
    _case(
        "break-glass-only-rule-without-break-glass",
        ED,
        _facts("MedicationRequest", "m1", source=GP, patient="p-gp", relationships=(ADMITTED,)),
        False,
    ),
]

SENSITIVITY = [
    _case(
        "sensitive-category-the-rule-names",
        GP_DOC,
        _facts(sensitivity=frozenset({"mental_health"}), relationships=(REGISTERED,)),
        True,
    ),
    _case(
        "sensitive-category-the-rule-does-not-name",
        GP_DOC,
        _facts(sensitivity=frozenset({"hiv"}), relationships=(REGISTERED,)),
        False,
    ),
    _case(
        "one-of-two-categories-named",
        GP_DOC,
        _facts(sensitivity=frozenset({"hiv", "mental_health"}), relationships=(REGISTERED,)),
        False,
    ),
    _case(
        "never-share-though-the-rule-names-it",
        GP_DOC,
        _facts(sensitivity=frozenset({"termination"}), relationships=(REGISTERED,)),
        False,
    ),
    _case(
        "never-share-even-to-a-system-granted-everything",
        _system("integration"),
        _facts(sensitivity=frozenset({"termination"})),
        False,
    ),
]

RELATIONSHIPS = [
    _case(
        "registration-recorded-by-a-hospital-does-not-count",
        GP_DOC,
        _facts(
            relationships=(replace(REGISTERED, patient_id="p-h", source_organisation=HOSPITAL),)
        ),
        False,
    ),
    _case(
        "registration-recorded-by-another-practice-counts",
        GP_DOC,
        _facts(relationships=(replace(REGISTERED, source_organisation=GP2),)),
        True,
    ),
    _case(
        "relationship-through-another-patient-of-the-person",
        GP_DOC,
        _facts("Encounter", "e1", source=COUNCIL, patient="p-c", relationships=(REGISTERED,)),
        True,
    ),
    _case(
        "relationship-of-another-person",
        GP_DOC,
        _facts(relationships=(replace(REGISTERED, patient_id="q-gp"),)),
        False,
    ),
    _case(
        "encounter-ended-now",
        HOSP_DOC,
        _facts(source=GP, patient="p-gp", relationships=(replace(ADMITTED, ends_at=NOW),)),
        False,
    ),
    _case(
        "encounter-ending-later",
        HOSP_DOC,
        _facts(
            source=GP,
            patient="p-gp",
            relationships=(replace(ADMITTED, ends_at=NOW + timedelta(seconds=1)),),
        ),
        True,
    ),
    _case(
        "practitioner-in-the-care-team",
        HOSP_DOC,
        _facts(
            source=GP,
            patient="p-gp",
            relationships=(Relationship("p-c", "care-team", practitioner="Practitioner/u1"),),
        ),
        True,
    ),
    _case(
        "practitioner-relationship-without-a-user",
        SW_NO_USER,
        _facts(
            "Encounter",
            "e1",
            source=GP,
            patient="p-gp",
            directives=(_permit(),),
            relationships=(MANAGED,),
        ),
        False,
    ),
]

DIRECTIVES = [
    _case(
        "blanket-objection",
        GP_DOC,
        _facts(relationships=(REGISTERED,), directives=(_deny(),)),
        False,
    ),
    _case(
        "objection-to-another-recipient",
        GP_DOC,
        _facts(
            relationships=(REGISTERED,), directives=(_deny(1, recipient_organisation=HOSPITAL),)
        ),
        True,
    ),
    _case(
        "objection-to-the-role",
        GP_DOC,
        _facts(relationships=(REGISTERED,), directives=(_deny(1, recipient_role="DOC"),)),
        False,
    ),
    _case(
        "objection-to-another-role",
        GP_NURSE,
        _facts(relationships=(REGISTERED,), directives=(_deny(1, recipient_role="DOC"),)),
        True,
    ),
    _case(
        "objection-to-the-source",
        GP_DOC,
        _facts(relationships=(REGISTERED,), directives=(_deny(1, source_organisation=HOSPITAL),)),
        False,
    ),
    _case(
        "objection-to-another-source",
        GP_DOC,
        _facts(relationships=(REGISTERED,), directives=(_deny(1, source_organisation=COUNCIL),)),
        True,
    ),
    _case(
        "recipient-permit-beats-blanket-objection",
        GP_DOC,
        _facts(
            relationships=(REGISTERED,),
            directives=(_deny(), _permit(1, recipient_organisation=GP)),
        ),
        True,
    ),
    _case(
        "equal-level-deny-wins",
        GP_DOC,
        _facts(
            relationships=(REGISTERED,),
            directives=(
                _deny(1, recipient_organisation=GP),
                _permit(1, source_organisation=HOSPITAL),
            ),
        ),
        False,
    ),
    _case(
        "source-and-recipient-permit-beats-recipient-objection",
        GP_DOC,
        _facts(
            relationships=(REGISTERED,),
            directives=(
                _deny(1, recipient_organisation=GP),
                _permit(2, source_organisation=HOSPITAL, recipient_organisation=GP),
            ),
        ),
        True,
    ),
    _case(
        "item-permit-beats-source-and-recipient-objection",
        GP_DOC,
        _facts(
            relationships=(REGISTERED,),
            directives=(
                _deny(2, source_organisation=HOSPITAL, recipient_organisation=GP),
                _permit(3, item="Condition/c1"),
            ),
        ),
        True,
    ),
    _case(
        "sealed-item",
        GP_DOC,
        _facts(relationships=(REGISTERED,), directives=(_deny(3, item="Condition/c1"),)),
        False,
    ),
    _case(
        "sealed-item-with-permits-at-every-level",
        GP_DOC,
        _facts(
            relationships=(REGISTERED,),
            directives=(
                _deny(3, item="Condition/c1"),
                _permit(3, item="Condition/c1", recipient_organisation=GP),
                _permit(2, source_organisation=HOSPITAL, recipient_organisation=GP),
                _permit(),
            ),
        ),
        False,
    ),
    _case(
        "another-item-sealed",
        GP_DOC,
        _facts(relationships=(REGISTERED,), directives=(_deny(3, item="Condition/c2"),)),
        True,
    ),
    _case(
        "sealed-for-another-recipient",
        GP_DOC,
        _facts(
            relationships=(REGISTERED,),
            directives=(_deny(3, item="Condition/c1", recipient_organisation=COUNCIL),),
        ),
        True,
    ),
    _case(
        "objection-withdrawn-now",
        GP_DOC,
        _facts(relationships=(REGISTERED,), directives=(_deny(ends_at=NOW),)),
        True,
    ),
    _case(
        "objection-not-yet-in-force",
        GP_DOC,
        _facts(
            relationships=(REGISTERED,),
            directives=(_deny(starts_at=NOW + timedelta(seconds=1)),),
        ),
        True,
    ),
    _case(
        "objection-starting-now",
        GP_DOC,
        _facts(relationships=(REGISTERED,), directives=(_deny(starts_at=NOW),)),
        False,
    ),
    _case(
        "objection-recorded-against-another-patient-of-the-person",
        GP_DOC,
        _facts(relationships=(REGISTERED,), directives=(_deny(patient="p-c"),)),
        False,
    ),
    _case(
        "objection-of-another-person",
        GP_DOC,
        _facts(relationships=(REGISTERED,), directives=(_deny(patient="q-gp"),)),
        True,
    ),
]

EXPLICIT_CONSENT = [
    _case(
        "social-care-sees-health-data-only-with-consent",
        SW,
        _facts(relationships=(MANAGED,)),
        False,
    ),
    _case(
        "social-care-with-blanket-consent",
        SW,
        _facts(relationships=(MANAGED,), directives=(_permit(),)),
        True,
    ),
    _case(
        "social-care-with-consent-to-the-council",
        SW,
        _facts(relationships=(MANAGED,), directives=(_permit(1, recipient_organisation=COUNCIL),)),
        True,
    ),
    _case(
        "social-care-with-consent-to-another-recipient",
        SW,
        _facts(relationships=(MANAGED,), directives=(_permit(1, recipient_organisation=GP),)),
        False,
    ),
    _case(
        "social-care-consent-and-objection-at-equal-level",
        SW,
        _facts(
            relationships=(MANAGED,),
            directives=(
                _permit(1, recipient_organisation=COUNCIL),
                _deny(1, source_organisation=HOSPITAL),
            ),
        ),
        False,
    ),
    _case(
        "social-care-consent-outranked-by-objection",
        SW,
        _facts(
            relationships=(MANAGED,),
            directives=(_permit(), _deny(1, recipient_organisation=COUNCIL)),
        ),
        False,
    ),
    _case(
        "health-sees-social-care-data-without-consent",
        GP_DOC,
        _facts("Encounter", "e1", source=COUNCIL, patient="p-c", relationships=(REGISTERED,)),
        True,
    ),
]

BREAK_GLASS = [
    _case(
        "break-glass-without-relationship",
        HOSP_BTG,
        _facts(source=GP, patient="p-gp", grants=(GRANT,)),
        True,
    ),
    _case(
        "break-glass-lifts-objections",
        HOSP_BTG,
        _facts(
            source=GP,
            patient="p-gp",
            grants=(GRANT,),
            directives=(_deny(), _deny(2, source_organisation=GP, recipient_organisation=HOSPITAL)),
        ),
        True,
    ),
    _case(
        "break-glass-with-an-expired-grant",
        HOSP_BTG,
        _facts(source=GP, patient="p-gp", grants=(replace(GRANT, expires_at=NOW),)),
        False,
    ),
    _case(
        "break-glass-grant-to-another-user",
        HOSP_BTG,
        _facts(source=GP, patient="p-gp", grants=(replace(GRANT, practitioner="Practitioner/u2"),)),
        False,
    ),
    _case(
        "break-glass-grant-for-another-person",
        HOSP_BTG,
        _facts(source=GP, patient="p-gp", grants=(replace(GRANT, patient_id="q-gp"),)),
        False,
    ),
    _case(
        "break-glass-grant-on-another-patient-of-the-person",
        HOSP_BTG,
        _facts(source=GP, patient="p-gp", grants=(replace(GRANT, patient_id="p-c"),)),
        True,
    ),
    _case(
        "break-glass-role-not-allowed",
        HOSP_NURSE_BTG,
        _facts(source=GP, patient="p-gp", grants=(GRANT,)),
        False,
    ),
    _case(
        "break-glass-role-not-allowed-still-has-relationships",
        HOSP_NURSE_BTG,
        _facts(source=GP, patient="p-gp", relationships=(ADMITTED,)),
        True,
    ),
    _case(
        "break-glass-without-a-user",
        HOSP_BTG_NO_USER,
        _facts(source=GP, patient="p-gp", grants=(GRANT,)),
        False,
    ),
    _case(
        "grant-without-breaking-glass",
        HOSP_DOC,
        _facts(source=GP, patient="p-gp", grants=(GRANT,)),
        False,
    ),
    _case(
        "break-glass-does-not-lift-sealed-items",
        HOSP_BTG,
        _facts(
            source=GP,
            patient="p-gp",
            grants=(GRANT,),
            directives=(_deny(3, item="Condition/c1"),),
        ),
        False,
    ),
    _case(
        "break-glass-does-not-lift-never-share",
        HOSP_BTG,
        _facts(source=GP, patient="p-gp", grants=(GRANT,), sensitivity=frozenset({"termination"})),
        False,
    ),
    _case(
        "break-glass-does-not-widen-sensitive-categories",
        HOSP_BTG,
        _facts(source=GP, patient="p-gp", grants=(GRANT,), sensitivity=frozenset({"hiv"})),
        False,
    ),
    _case(
        "break-glass-does-not-stand-for-explicit-consent",
        SW_BTG,
        _facts(grants=(replace(GRANT, practitioner="Practitioner/sw1"),)),
        False,
    ),
    _case(
        "break-glass-with-explicit-consent",
        SW_BTG,
        _facts(
            grants=(replace(GRANT, practitioner="Practitioner/sw1"),),
            directives=(
                _deny(1, recipient_organisation=COUNCIL),
                _permit(2, source_organisation=HOSPITAL, recipient_organisation=COUNCIL),
            ),
        ),
        True,
    ),
    _case(
        "break-glass-consent-outranked-by-objection-is-lifted",
        SW_BTG,
        _facts(
            grants=(replace(GRANT, practitioner="Practitioner/sw1"),),
            directives=(_permit(), _deny(1, recipient_organisation=COUNCIL)),
        ),
        True,
    ),
    _case(
        "break-glass-only-rule",
        ED_BTG,
        _facts("MedicationRequest", "m1", source=GP, patient="p-gp", grants=(GRANT,)),
        True,
    ),
    _case(
        "break-glass-only-rule-other-category",
        ED_BTG,
        _facts(source=GP, patient="p-gp", grants=(GRANT,)),
        False,
    ),
    _case(
        "break-glass-caller-with-a-relationship-needs-no-grant",
        HOSP_BTG,
        _facts(source=GP, patient="p-gp", relationships=(ADMITTED,)),
        True,
    ),
]

PATIENTS = [
    _case("own-record", _patient("p-gp"), _facts(source=GP, patient="p-gp"), True),
    _case("own-record-from-another-source", _patient("p-gp"), _facts(), True),
    _case(
        "own-record-with-sensitive-data",
        _patient("p-gp"),
        _facts(sensitivity=frozenset({"hiv", "termination"})),
        True,
    ),
    _case(
        "own-record-objected-to-for-others",
        _patient("p-gp"),
        _facts(directives=(_deny(), _deny(3, item="Condition/c1"))),
        True,
    ),
    _case(
        "not-for-disclosure-to-the-patient",
        _patient("p-gp"),
        _facts(security=frozenset({"NOPAT", "R"})),
        False,
    ),
    _case(
        "other-security-labels",
        _patient("p-gp"),
        _facts(security=frozenset({"R", "PSY"})),
        True,
    ),
    _case(
        "safeguarding-details",
        _patient("p-gp"),
        _facts(sensitivity=frozenset({"safeguarding"})),
        False,
    ),
    _case("another-person", _patient("q-gp"), _facts(), False),
    _case("directory", _patient("p-gp"), _facts("Organization", "o1", patient=None), True),
    _case(
        "no-patient-and-not-directory",
        _patient("p-gp"),
        _facts("Condition", "c9", patient=None),
        False,
    ),
    _case(
        "a-patient-identity-has-not-filed",
        _patient("p-new"),
        _facts(patient="p-new", person=frozenset()),
        True,
    ),
]

SYSTEMS = [
    _case("clause-category-and-source", _system("pas"), _facts("Patient", "p-h"), True),
    _case("clause-other-category", _system("pas"), _facts(), False),
    _case("clause-other-source", _system("pas"), _facts("Patient", "p-gp", source=GP), False),
    _case(
        "clause-everything",
        _system("integration"),
        _facts("Consent", "k1", source=STRANGER, patient="p-gp"),
        True,
    ),
    _case(
        "clause-everything-without-patient",
        _system("integration"),
        _facts("Basic", "b1", source=None, patient=None),
        True,
    ),
    _case("clause-for-another-purpose", _system("research"), _facts(), False),
    _case("client-not-in-the-agreement", _system("unknown"), _facts(), False),
    _case(
        "client-not-in-the-agreement-own-organisation",
        _system("unknown", HOSPITAL),
        _facts(sensitivity=frozenset({"termination"})),
        True,
    ),
    _case(
        "client-not-in-the-agreement-directory",
        _system("unknown"),
        _facts("Location", "l1", patient=None),
        True,
    ),
    _case(
        "system-without-organisation", _system("pas"), _facts("Patient", "p-h", source=None), False
    ),
]


@pytest.mark.parametrize(
    ("context", "facts", "expected"),
    [
        *ORGANISATION_AND_DIRECTORY,
        *RULES,
        *SENSITIVITY,
        *RELATIONSHIPS,
        *DIRECTIVES,
        *EXPLICIT_CONSENT,
        *BREAK_GLASS,
        *PATIENTS,
        *SYSTEMS,
    ],
)
def test_decide(context: AccessContext, facts: ResourceFacts, expected: bool) -> None:
    assert decide(context, facts, AGREEMENT, sensitive_categories=SENSITIVE, now=NOW) is expected


@pytest.mark.parametrize(
    ("agreement", "expected"),
    [pytest.param(AGREEMENT, False, id="explicit"), pytest.param(IMPLIED, True, id="implied")],
)
def test_social_care_sees_health_data_on_implied_consent_if_agreed(
    agreement: Agreement, expected: bool
) -> None:
    facts = _facts(relationships=(MANAGED,))
    assert decide(SW, facts, agreement, sensitive_categories=SENSITIVE, now=NOW) is expected


@pytest.mark.parametrize(
    ("recipient", "source", "agreement", "needed"),
    [
        pytest.param(COUNCIL, HOSPITAL, AGREEMENT, True, id="council-hospital-data"),
        pytest.param(COUNCIL, GP, AGREEMENT, True, id="council-gp-data"),
        pytest.param(COUNCIL, COUNCIL, AGREEMENT, False, id="council-council-data"),
        pytest.param(GP, HOSPITAL, AGREEMENT, False, id="gp-hospital-data"),
        pytest.param(COUNCIL, STRANGER, AGREEMENT, False, id="council-unknown-source"),
        pytest.param(None, HOSPITAL, AGREEMENT, False, id="no-recipient"),
        pytest.param(COUNCIL, HOSPITAL, IMPLIED, False, id="implied"),
    ],
)
def test_needs_explicit_consent(
    recipient: str | None, source: str, agreement: Agreement, needed: bool
) -> None:
    assert needs_explicit_consent(agreement, recipient, source) is needed


# -- the tree's shape ------------------------------------------------------------------

DIRECTORY = AllOf((NoPatient(), TypeIn(DIRECTORY_TYPES)))


def _tree(context: AccessContext, agreement: Agreement = AGREEMENT) -> Any:
    return visibility(context, agreement, sensitive_categories=SENSITIVE)


def test_the_tree_for_the_person_themselves() -> None:
    assert _tree(_patient("p-gp")) == AnyOf(
        (
            DIRECTORY,
            AllOf(
                (
                    OwnPerson("p-gp"),
                    NotLabelled(frozenset({"NOPAT"})),
                    SensitivityNone(frozenset({"safeguarding"})),
                )
            ),
        )
    )


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        pytest.param(
            _system("unknown", HOSPITAL),
            AnyOf((SourceIn(frozenset({HOSPITAL})), DIRECTORY)),
            id="system-not-in-the-agreement",
        ),
        pytest.param(_system("research"), DIRECTORY, id="system-clause-for-another-purpose"),
        pytest.param(
            _system("pas"),
            AnyOf(
                (
                    DIRECTORY,
                    AllOf(
                        (
                            SourceIn(frozenset({HOSPITAL})),
                            TypeIn(types_of(frozenset({"demographics"}))),
                            SensitivityNone(frozenset({"termination"})),
                        )
                    ),
                )
            ),
            id="system-clause",
        ),
        pytest.param(
            _system("integration", GP),
            AnyOf(
                (
                    SourceIn(frozenset({GP})),
                    DIRECTORY,
                    SensitivityNone(frozenset({"termination"})),
                )
            ),
            id="system-clause-everything",
        ),
        pytest.param(
            OUTSIDER,
            AnyOf((SourceIn(frozenset({STRANGER})), DIRECTORY)),
            id="user-not-a-party",
        ),
        pytest.param(replace(GP_DOC, organisation=None), DIRECTORY, id="user-without-organisation"),
        pytest.param(
            GP_ADMIN,
            AnyOf((SourceIn(frozenset({GP})), DIRECTORY)),
            id="user-no-rule-applies",
        ),
    ],
)
def test_the_tree_for_callers_without_rules(context: AccessContext, expected: Any) -> None:
    assert _tree(context) == expected


def test_a_system_granted_everything_sees_everything_without_never_share() -> None:
    agreement = parse_agreement(_document(never_share=None), sensitive_categories=SENSITIVE)
    assert _tree(_system("integration"), agreement) == Const(True)


def _parts(tree: Any) -> list[tuple[Any, Any]]:
    """The (what is shared, gate) pairs after the caller's own organisation and the
    directory: one pair per need for explicit consent (no, then yes)."""
    assert isinstance(tree, AnyOf)
    parts = [p for p in tree.items if isinstance(p, AllOf) and p != DIRECTORY]
    assert all(len(p.items) == 2 for p in parts)
    return [(p.items[0], p.items[1]) for p in parts]


def _shared(shared: Any) -> list[tuple[Any, ...]]:
    """What one part shares: (sources, types, hidden categories) per label group."""
    groups: tuple[Any, ...] = shared.items if isinstance(shared, AnyOf) else (shared,)
    return [g.items for g in groups]


def _passes(labels: Any, sensitivity: set[str]) -> bool:
    """Whether a resource carrying ``sensitivity`` passes a group's label predicate."""
    if isinstance(labels, Const):
        return labels.value
    if isinstance(labels, SensitivityNone):
        return not sensitivity & labels.categories
    if type(labels).__name__ == "SensitivityWithin":
        return sensitivity <= labels.categories  # type: ignore[no-any-return]
    raise AssertionError(f"not a label predicate: {labels!r}")


# Direct care names mental health and termination; termination is never-share.
DIRECT_CARE_LABELS = [
    (set(), True),
    ({"mental_health"}, True),
    ({"termination"}, False),
    ({"hiv"}, False),
    ({"hiv", "mental_health"}, False),
]


def _shares_as_direct_care(labels: Any) -> bool:
    return all(_passes(labels, given) is shared for given, shared in DIRECT_CARE_LABELS)


# The purposes a directive may name that apply to a caller: their own (break-glass counts
# as direct care too, as for the agreement's rules).
TREAT = ("TREAT",)
BTG = ("BTG", "TREAT")


def test_the_tree_for_a_member_of_staff() -> None:
    tree = _tree(GP_DOC)
    assert isinstance(tree, AnyOf)
    assert tree.items[:2] == (SourceIn(frozenset({GP})), DIRECTORY)
    ((shared, gate),) = _parts(tree)
    # One label group per contributing source the rule reaches (its own practice too),
    # each source's contribution cut to the rule's categories.
    groups = _shared(shared)
    assert [g[0] for g in groups] == [
        SourceIn(frozenset({o})) for o in sorted([GP, GP2, COUNCIL, HOSPITAL])
    ]
    assert groups[1][:2] == (
        SourceIn(frozenset({GP2})),
        TypeIn(frozenset({"Patient", "RelatedPerson", "Condition"})),
    )
    assert all(_shares_as_direct_care(g[2]) for g in groups)
    # The person-level gate appears once.
    assert gate == AllOf(
        (
            Related(GP, "Practitioner/u1", frozenset({GP, GP2})),
            DirectivesAllow(GP, "DOC", require_permit=False, lift_objections=False, purposes=TREAT),
        )
    )


def test_sources_sharing_the_same_labels_are_grouped() -> None:
    agreement = parse_agreement(
        _document(contributions={GP: ["problems"], GP2: ["problems"], HOSPITAL: ["problems"]}),
        sensitive_categories=SENSITIVE,
    )
    ((shared, _),) = _parts(_tree(HOSP_DOC, agreement))
    ((sources, types, labels),) = _shared(shared)
    assert (sources, types) == (
        SourceIn(frozenset({GP, GP2, HOSPITAL})),
        TypeIn(frozenset({"Condition"})),
    )
    assert _shares_as_direct_care(labels)


def test_the_tree_for_social_care_requires_consent_for_health_data() -> None:
    (implied, implied_gate), (explicit, explicit_gate) = _parts(_tree(SW))
    assert [g[0] for g in _shared(implied)] == [SourceIn(frozenset({COUNCIL}))]
    # The practice and the hospital contribute the same of the rule's categories.
    assert [g[0] for g in _shared(explicit)] == [
        SourceIn(frozenset({GP, HOSPITAL})),
        SourceIn(frozenset({GP2})),
    ]
    assert implied_gate.items[1] == DirectivesAllow(
        COUNCIL, "SW", require_permit=False, lift_objections=False, purposes=TREAT
    )
    assert explicit_gate.items[1] == DirectivesAllow(
        COUNCIL, "SW", require_permit=True, lift_objections=False, purposes=TREAT
    )


def test_the_tree_for_break_glass() -> None:
    ((shared, gate),) = _parts(_tree(HOSP_BTG))
    # Both the direct-care rule (for TREAT) and the break-glass-only rule apply; the latter
    # names no sensitive category, so its label group is a separate one.
    gp_groups = [g for g in _shared(shared) if g[0] == SourceIn(frozenset({GP}))]
    assert len(gp_groups) == 2
    assert _shares_as_direct_care(gp_groups[0][2])
    assert gp_groups[1][1] == TypeIn(frozenset({"MedicationRequest", "MedicationStatement"}))
    assert _passes(gp_groups[1][2], set())
    assert not _passes(gp_groups[1][2], {"mental_health"})
    assert isinstance(gate, AnyOf)
    assert gate.items[1] == AllOf(
        (
            BrokeGlass("Practitioner/u1"),
            DirectivesAllow(
                HOSPITAL, "DOC", require_permit=False, lift_objections=True, purposes=BTG
            ),
        )
    )


def test_the_tree_without_break_glass_role_has_no_grant() -> None:
    assert "BrokeGlass" not in repr(_tree(HOSP_NURSE_BTG))
    assert "BrokeGlass" not in repr(_tree(HOSP_BTG_NO_USER))


def test_a_rule_with_nothing_contributed_adds_nothing() -> None:
    document = _document(
        contributions={GP: ["documents"]},
        access=[
            {
                "to": ["hospital"],
                "roles": ["DOC"],
                "purposes": ["TREAT"],
                "categories": ["problems"],
                "from": ["gp"],
            }
        ],
    )
    agreement = parse_agreement(document, sensitive_categories=SENSITIVE)
    assert _tree(HOSP_DOC, agreement) == AnyOf((SourceIn(frozenset({HOSPITAL})), DIRECTORY))


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        pytest.param((), Const(False), id="nothing"),
        pytest.param((Const(False), Const(False)), Const(False), id="all-false"),
        pytest.param((NoPatient(), Const(True)), Const(True), id="a-true"),
        pytest.param((Const(False), NoPatient()), NoPatient(), id="one-left"),
        pytest.param(
            (NoPatient(), Const(False), TypeIn(frozenset())),
            AnyOf((NoPatient(), TypeIn(frozenset()))),
            id="several-left",
        ),
    ],
)
def test_any_of_simplifies(items: tuple[Any, ...], expected: Any) -> None:
    assert any_of(*items) == expected


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        pytest.param((), Const(True), id="nothing"),
        pytest.param((Const(True), Const(True)), Const(True), id="all-true"),
        pytest.param((NoPatient(), Const(False)), Const(False), id="a-false"),
        pytest.param((Const(True), NoPatient()), NoPatient(), id="one-left"),
        pytest.param(
            (NoPatient(), Const(True), TypeIn(frozenset())),
            AllOf((NoPatient(), TypeIn(frozenset()))),
            id="several-left",
        ),
    ],
)
def test_all_of_simplifies(items: tuple[Any, ...], expected: Any) -> None:
    assert all_of(*items) == expected


def test_registering_practices_are_the_gp_parties() -> None:
    assert registering_practices(AGREEMENT) == {GP, GP2}


@pytest.mark.parametrize(
    ("categories", "text"),
    [
        pytest.param([], None, id="none"),
        pytest.param(["hiv"], " hiv ", id="one"),
        pytest.param(["mental_health", "hiv", "hiv"], " hiv mental_health ", id="sorted-unique"),
    ],
)
def test_labels_text(categories: list[str], text: str | None) -> None:
    assert labels_text(categories) == text


# -- specialise: one person's record, the person-level parts decided once ---------------


def _person(
    relationships: tuple[Relationship, ...] = (),
    grants: tuple[Grant, ...] = (),
    has_directives: bool = False,
) -> PersonFacts:
    return PersonFacts(relationships=relationships, grants=grants, has_directives=has_directives)


def _without_gates(context: AccessContext) -> tuple[Any, Any, list[Any]]:
    tree = _tree(context)
    return tree.items[0], tree.items[1], [shared for shared, _ in _parts(tree)]


@pytest.mark.parametrize(
    ("facts", "opened"),
    [
        pytest.param(_person(), False, id="no-relationship-no-grant"),
        pytest.param(_person((ADMITTED,)), True, id="relationship"),
        pytest.param(_person((replace(ADMITTED, ends_at=NOW),)), False, id="relationship-ended"),
        pytest.param(
            _person((replace(REGISTERED, organisation=HOSPITAL, source_organisation=HOSPITAL),)),
            False,
            id="registration-not-recorded-by-a-practice",
        ),
        pytest.param(
            _person((Relationship("p-c", "care-team", practitioner="Practitioner/u1"),)),
            True,
            id="user-in-the-care-team",
        ),
        pytest.param(_person(grants=(replace(GRANT, patient_id="p-h"),)), True, id="grant"),
        pytest.param(
            _person(grants=(replace(GRANT, expires_at=NOW),)), False, id="grant-expired-now"
        ),
        pytest.param(
            _person(grants=(replace(GRANT, practitioner="Practitioner/u2"),)),
            False,
            id="grant-to-another-user",
        ),
    ],
)
def test_specialise_without_directives_leaves_only_labels(facts: PersonFacts, opened: bool) -> None:
    own, directory, shared = _without_gates(HOSP_BTG)
    expected = AnyOf((own, directory, *shared)) if opened else AnyOf((own, directory))
    assert specialise(_tree(HOSP_BTG), facts, now=NOW) == expected


def test_specialise_keeps_the_directives_of_a_person_who_has_some() -> None:
    own, directory, (shared,) = _without_gates(HOSP_BTG)
    kept = DirectivesAllow(
        HOSPITAL, "DOC", require_permit=False, lift_objections=False, purposes=BTG
    )
    lifted = DirectivesAllow(
        HOSPITAL, "DOC", require_permit=False, lift_objections=True, purposes=BTG
    )
    related = _person((ADMITTED,), has_directives=True)
    assert specialise(_tree(HOSP_BTG), related, now=NOW) == AnyOf(
        (own, directory, AllOf((shared, kept)))
    )
    broke_glass = _person(grants=(GRANT,), has_directives=True)
    assert specialise(_tree(HOSP_BTG), broke_glass, now=NOW) == AnyOf(
        (own, directory, AllOf((shared, lifted)))
    )


def test_specialise_without_directives_refuses_what_needs_explicit_consent() -> None:
    own, directory, (implied, _) = _without_gates(SW)
    managed = _person((MANAGED,))
    assert specialise(_tree(SW), managed, now=NOW) == AnyOf((own, directory, implied))
    explicit = DirectivesAllow(
        COUNCIL, "SW", require_permit=True, lift_objections=False, purposes=TREAT
    )
    with_choices = specialise(_tree(SW), replace(managed, has_directives=True), now=NOW)
    assert isinstance(with_choices, AnyOf)
    last = with_choices.items[-1]
    assert isinstance(last, AllOf)
    assert last.items[-1] == explicit


@pytest.mark.parametrize(
    "context",
    [
        pytest.param(_patient("p-gp"), id="the-person"),
        pytest.param(_system("pas"), id="system"),
        pytest.param(GP_ADMIN, id="no-rule"),
    ],
)
def test_specialise_leaves_trees_without_person_level_parts_alone(context: AccessContext) -> None:
    facts = _person((REGISTERED, ADMITTED), (GRANT,), has_directives=True)
    assert specialise(_tree(context), facts, now=NOW) == _tree(context)

"""Small synthetic worlds for checking the compiled consent predicate against ``decide``.

A world is a sharing agreement, source patients filed (or not yet) under persons, stored
resources with their labels, and the relationship, directive and break-glass rows consent
reads, plus the callers to ask about it. ``worlds()`` generates them (hypothesis);
``compare(session, world)`` writes one into the test's transaction (a savepoint, rolled
back), asks the database what each caller may see through ``compile_visibility`` and asks
``decide`` the same about every resource, and returns both answers; with ``per_person`` it
also asks for each person's record through the predicate ``specialise``d for that person,
and through the two forms a request about one person runs (``person_visibility``: ``within``
over the person's rows, ``guarded`` over every row), and asks through the full predicate as
the request paths compile it once per caller (``compile_visibility_live``).

Identifiers start with ``hv-`` so that nothing another test committed can be mistaken for
part of a world.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from consent.agreements import Agreement, parse_agreement
from consent.audit import Action, Outcome, record_for
from consent.context import AccessContext, CallerKind, Purpose, Scope, TokenCriterion
from consent.directives import Directive, specificity
from consent.relationships import Relationship
from consent.visibility import (
    Grant,
    Predicate,
    ResourceFacts,
    decide,
    labels_text,
    specialise,
    visibility,
)
from fhir_gateway.access.derive import directive_values
from fhir_gateway.access.models import (
    BreakGlassGrantRow,
    CareRelationshipRow,
    ConsentDirectiveRow,
)
from fhir_gateway.access.people import person_facts
from fhir_gateway.access.request import person_visibility
from fhir_gateway.identity.models import IdentityRecord
from fhir_gateway.search.model import ParamType
from fhir_gateway.search.registry import SEARCH_PARAMS
from fhir_gateway.store.care_dates import CARE_DATE_PARAMS
from fhir_gateway.store.models import ResourceRow, search_date, search_token
from fhir_gateway.store.reads import ReadAccess
from fhir_gateway.store.visibility import compile_visibility, compile_visibility_live

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
# Every sensitive category in force (the labels' value sets); resources carry some of them.
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
LABELS = ("hiv", "mental_health", "termination", "safeguarding")
ORGANISATIONS = ("Z20001", "Z20002", "Z20003", "Z20004")
STRANGER = "Z29999"  # records from, and callers at, an organisation that is not a party
KINDS = ("gp", "hospital", "social-care")
CATEGORIES = (
    "demographics",
    "problems",
    "medications",
    "observations",
    "encounters",
    "care-planning",
    "documents",
)
ROLES = ("DOC", "NURSE", "SW")
USERS = ("Practitioner/u1", "Practitioner/u2")
CLIENTS = ("sys-a", "sys-b", "sys-c")
# Record types in a category, types in none (Consent, Basic), and directory types.
RECORD_TYPES = (
    "Condition",
    "MedicationRequest",
    "Observation",
    "Encounter",
    "CarePlan",
    "DocumentReference",
    "Consent",
    "Basic",
)
DIRECTORY = ("Organization", "Practitioner")
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
SECURITY = (
    (ACT_CODE, "NOPAT"),
    (CONFIDENTIALITY, "R"),
    (CONFIDENTIALITY, "V"),
    (ACT_CODE, "PSY"),
)
# What a directive may be narrowed to (``provision.securityLabel``): the categories resources
# carry, one they never do, and the confidentiality codes (``R`` covers R and V).
DIRECTIVE_LABELS = (*LABELS, "fertility", "R", "V")
# What a directive may be narrowed to (``provision.purpose``): every purpose callers declare.
DIRECTIVE_PURPOSES = ("TREAT", "BTG", "CASEFIND", "PATRQT")
# Token values resources carry and narrowed scopes ask for: the parameters (as indexed), and
# a few systems and codes. A scope may also name a parameter the type lacks, or one that is
# not a token parameter (both match nothing).
TOKEN_PARAMS = ("category", "status", "code")
SCOPE_PARAMS = (*TOKEN_PARAMS, *TOKEN_PARAMS, "nonsense", "subject")
SYSTEMS = ("http://example.org/s1", "http://example.org/s2")
NARROWABLE = ("Observation", "Condition", "Encounter", "Patient", "Organization")
CODES = ("a", "b")
# Care dates and periods of data are drawn from these instants, so that ranges meet, touch
# and miss each other's ends by a microsecond.
CARE_MOMENTS = (
    datetime(2010, 1, 1, tzinfo=UTC),
    datetime(2012, 6, 30, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2012, 7, 1, tzinfo=UTC),
    datetime(2015, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
)
MOMENTS = (
    NOW - timedelta(days=1),
    NOW - timedelta(microseconds=1),
    NOW,
    NOW + timedelta(microseconds=1),
    NOW + timedelta(hours=1),
)


@dataclass(frozen=True, slots=True)
class Resource:
    resource_type: str
    resource_id: str
    source: str | None
    patient: str | None
    sensitivity: frozenset[str] = frozenset()
    security: tuple[tuple[str, str], ...] = ()
    # Token index entries: (parameter, system, code).
    tokens: tuple[tuple[str, str | None, str | None], ...] = ()
    # Care-date index entries (closed ranges), for a type that records a care date.
    care_dates: tuple[tuple[datetime, datetime], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.resource_type}/{self.resource_id}"


@dataclass(slots=True)
class World:
    agreement: dict[str, Any]
    # Every source patient, and the person identity filed it under (None: not filed yet).
    patients: dict[str, str | None]
    resources: list[Resource]
    callers: list[AccessContext]
    relationships: list[Relationship] = field(default_factory=list)
    directives: list[Directive] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)
    sensitive: frozenset[str] = SENSITIVE

    def stored(self) -> list[Resource]:
        """The resources, and a Consent for each patient with directives (their source)."""
        keys = {r.key for r in self.resources}
        consents = {
            Resource("Consent", f"hv-consent-{d.patient_id}", None, d.patient_id)
            for d in self.directives
        }
        return [*self.resources, *sorted((c for c in consents if c.key not in keys), key=str)]

    def person_patients(self, patient: str | None) -> frozenset[str]:
        if patient is None:
            return frozenset()
        person = self.patients.get(patient)
        linked = {p for p, q in self.patients.items() if person is not None and q == person}
        return frozenset(linked | {patient})


# -- callers ---------------------------------------------------------------------------


def user(
    organisation: str,
    role: str,
    purpose: Purpose = Purpose.TREAT,
    practitioner: str | None = "Practitioner/u1",
) -> AccessContext:
    return AccessContext(
        kind=CallerKind.USER,
        subject=practitioner or "anonymous",
        scopes=(),
        purpose=purpose,
        user=practitioner,
        organisation=organisation,
        role=role,
    )


def patient(patient_id: str) -> AccessContext:
    return AccessContext(
        kind=CallerKind.PATIENT,
        subject=patient_id,
        scopes=(),
        purpose=Purpose.PATRQT,
        patient=patient_id,
    )


def system(client: str, organisation: str | None = None) -> AccessContext:
    return AccessContext(
        kind=CallerKind.SYSTEM,
        subject=client,
        scopes=(),
        client_id=client,
        organisation=organisation,
    )


def read_access(
    caller: AccessContext,
    predicate: Predicate,
    query: str,
    *,
    interaction: str = "read",
    now: datetime = NOW,
) -> ReadAccess:
    """What a reader is given for ``caller``'s read at ``now``: their predicate and the audit
    record of a successful ``interaction`` asking ``query``."""
    return ReadAccess(
        predicate=predicate,
        now=now,
        audit=record_for(
            caller,
            recorded_at=now,
            action=Action.READ,
            interaction=interaction,
            outcome=Outcome.SUCCESS,
            query=query,
        ),
    )


def describe(context: AccessContext) -> str:
    if context.kind is CallerKind.PATIENT:
        return f"patient {context.patient}"
    if context.kind is CallerKind.SYSTEM:
        return f"system {context.client_id} at {context.organisation}"
    return f"{context.user} at {context.organisation} as {context.role} for {context.purpose.value}"


# -- generation ------------------------------------------------------------------------


def _subset(values: Sequence[str], *, min_size: int = 0) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(values), unique=True, min_size=min_size, max_size=len(values))


def _often(everything: Sequence[str], *, min_size: int = 0) -> st.SearchStrategy[list[str]]:
    """All of ``everything`` half the time, else any subset: generous agreements share
    enough for relationships and directives to matter."""
    return st.one_of(st.just(list(everything)), _subset(everything, min_size=min_size))


@st.composite
def agreements(draw: st.DrawFn, *, generous: bool = False) -> dict[str, Any]:
    """A random agreement; a ``generous`` one lets every party contribute everything and
    starts with a rule sharing everything with everyone, so that what decides is the
    person's relationships, directives and break-glass."""
    count = draw(st.integers(2, len(ORGANISATIONS)))
    parties = ORGANISATIONS[:count]
    kinds = {ods: draw(st.sampled_from(KINDS)) for ods in parties}
    contributions = {
        ods: list(CATEGORIES) if generous else draw(_often(CATEGORIES))
        for ods in parties
        if generous or draw(st.integers(0, 5)) > 0
    }
    recipients = list(parties) + list(KINDS)

    def rule(i: int) -> dict[str, Any]:
        return {
            "name": f"rule {i}",
            "to": draw(st.one_of(st.just(list(KINDS)), _subset(recipients, min_size=1))),
            "roles": draw(st.one_of(st.just(["*"]), _subset(ROLES, min_size=1))),
            "purposes": draw(
                st.one_of(st.just(["TREAT"]), _subset(("TREAT", "BTG", "CASEFIND"), min_size=1))
            ),
            "categories": draw(_often(CATEGORIES, min_size=1)),
            "from": draw(st.one_of(st.just(list(KINDS)), _subset(recipients, min_size=1))),
            "sensitive": draw(_subset(LABELS)),
        }

    clients = []
    for client in CLIENTS[:2]:
        if draw(st.booleans()):
            clause: dict[str, Any] = {
                "client_id": client,
                "categories": draw(st.one_of(st.just(["*"]), _subset(CATEGORIES))),
                "from": draw(st.one_of(st.just(["*"]), _subset(parties))),
            }
            purposes = draw(st.sampled_from([None, ["TREAT"], ["CASEFIND"]]))
            if purposes is not None:
                clause["purposes"] = purposes
            clients.append(clause)
    return {
        "version": "generated",
        "organisations": [
            {"ods": ods, "kind": kinds[ods], "name": f"Synthetic {ods}"} for ods in parties
        ],
        "contributions": contributions,
        "access": [
            *(
                [
                    {
                        "name": "everything",
                        "to": list(KINDS),
                        "roles": ["*"],
                        "purposes": ["TREAT", "CASEFIND"],
                        "categories": list(CATEGORIES),
                        "from": list(KINDS),
                        "sensitive": draw(_subset(LABELS)),
                    }
                ]
                if generous
                else []
            ),
            *(rule(i) for i in range(draw(st.integers(0 if generous else 1, 4)))),
        ],
        "social_care_health_consent": draw(st.sampled_from(["implied", "explicit"])),
        "never_share": draw(st.one_of(st.just([]), _subset(LABELS))),
        "break_glass_roles": draw(_often(ROLES)),
        "system_clients": clients,
    }


def _indexed_tokens(resource_type: str) -> tuple[str, ...]:
    params = SEARCH_PARAMS.get(resource_type, {})
    return tuple(p for p in TOKEN_PARAMS if p in params and params[p].type is ParamType.TOKEN)


@st.composite
def _care_dates(draw: st.DrawFn, resource_type: str) -> tuple[tuple[datetime, datetime], ...]:
    """Care-date index entries of a resource: none for a type that records no care date."""
    if resource_type not in CARE_DATE_PARAMS:
        return ()
    pair = st.lists(st.sampled_from(CARE_MOMENTS), min_size=2, max_size=2).map(sorted)
    return tuple((low, high) for low, high in draw(st.lists(pair, max_size=2)))


@st.composite
def _tokens(draw: st.DrawFn, resource_type: str) -> tuple[tuple[str, str | None, str], ...]:
    """Token index entries of a resource, of the parameters its type has."""
    params = _indexed_tokens(resource_type)
    if not params:
        return ()
    entry = st.tuples(
        st.sampled_from(params), st.sampled_from([*SYSTEMS, None]), st.sampled_from(CODES)
    )
    return tuple(draw(st.lists(entry, unique=True, max_size=3)))


_VALUE = st.one_of(
    st.tuples(st.none(), st.sampled_from(CODES)),
    st.tuples(st.sampled_from(SYSTEMS), st.sampled_from(CODES)),
    st.tuples(st.just(""), st.sampled_from(CODES)),
    st.tuples(st.sampled_from(SYSTEMS), st.none()),
)


@st.composite
def _scopes(draw: st.DrawFn, context: str, *, always: bool = False) -> tuple[Scope, ...]:
    """Usually no scopes (consent alone decides); else (``always``) narrowed scopes,
    sometimes with whole-type ones beside them (which may or may not lift the narrowing)."""
    if not always and draw(st.integers(0, 2)) > 0:
        return ()
    narrowable = list(NARROWABLE)
    criterion = st.builds(
        TokenCriterion,
        st.sampled_from(SCOPE_PARAMS),
        st.lists(_VALUE, min_size=1, max_size=2, unique=True).map(tuple),
    )
    narrowed = st.builds(
        Scope,
        st.just(context),
        st.sampled_from(narrowable),
        st.sampled_from([frozenset("rs"), frozenset("r"), frozenset("s")]),
        st.lists(criterion, min_size=1, max_size=2).map(tuple),
    )
    whole = st.builds(
        Scope,
        st.just(context),
        st.sampled_from(["*", *narrowable]),
        st.sampled_from([frozenset("rs"), frozenset("r"), frozenset("s"), frozenset("cud")]),
    )
    return (
        *draw(st.lists(narrowed, min_size=1, max_size=3)),
        *draw(st.lists(whole, max_size=2)),
    )


def _callers(
    parties: Sequence[str], patient_ids: Sequence[str], *, staff_only: bool
) -> st.SearchStrategy[list[AccessContext]]:
    purposes = [Purpose.TREAT, Purpose.BTG, Purpose.CASEFIND]
    staff = st.builds(
        user,
        st.sampled_from([*parties, *parties, STRANGER]),
        st.sampled_from([*ROLES, *ROLES, "ADMIN"]),
        # Break-glass most often where relationships, directives and grants decide.
        st.sampled_from([*purposes, Purpose.BTG] if staff_only else [*purposes, Purpose.TREAT]),
        st.sampled_from([*USERS, *USERS, None]),
    )
    if staff_only:
        return st.lists(staff, min_size=2, max_size=4)
    return st.lists(
        st.one_of(
            staff,
            staff,
            st.builds(patient, st.sampled_from([*patient_ids, "hv-nobody"])),
            st.builds(system, st.sampled_from(CLIENTS), st.sampled_from([None, *parties])),
        ),
        min_size=3,
        max_size=6,
    )


@st.composite
def _relationship(
    draw: st.DrawFn,
    patient_ids: Sequence[str],
    organisations: Sequence[str],
    practitioners: Sequence[str],
) -> Relationship:
    """A relationship as the gateway derives or records them (see consent.relationships)."""
    kind = draw(
        st.sampled_from(
            ["registered", "encounter", "episode", "care-manager", "care-team", "self-claimed"]
        )
    )
    by_practitioner = kind in ("care-manager", "self-claimed") or (
        kind == "care-team" and draw(st.booleans())
    )
    return Relationship(
        patient_id=draw(st.sampled_from(patient_ids)),
        kind=kind,
        organisation=None if by_practitioner else draw(st.sampled_from(organisations)),
        practitioner=draw(st.sampled_from(practitioners)) if by_practitioner else None,
        ends_at=None
        if kind == "registered"
        else draw(st.one_of(st.none(), st.none(), st.sampled_from(MOMENTS))),
        # Usually the organisation that recorded the fact, sometimes another (a hospital's
        # copy of the GP details) or none known.
        source_organisation=draw(st.sampled_from([*organisations, None])),
    )


@st.composite
def _directive(
    draw: st.DrawFn,
    patient_ids: Sequence[str],
    organisations: Sequence[str],
    roles: Sequence[str],
    keys: Sequence[str],
    items: int,
    choices: bool = False,
) -> Directive:
    """A directive as ``directives_from_consent`` records them (levels follow the shape).
    With ``choices``, one without an item is narrowed to a code half the time and to a period
    of data three times in four."""
    # One directive in ``items`` names an item (sealed when denied); those seldom name
    # actors as well. Of the others, about one in three is narrowed to a security label (an
    # item and a label are never named together: such a provision is refused).
    item = (
        draw(st.sampled_from([*keys, "Condition/hv-none"]))
        if draw(st.integers(1, items)) == 1
        else None
    )
    label = (
        draw(st.sampled_from(DIRECTIVE_LABELS))
        if item is None and draw(st.integers(0, 2)) == 0
        else None
    )
    # About one in three of those without an item is narrowed to a purpose of use (never with
    # an item: such a provision is refused).
    purpose = (
        draw(st.sampled_from(DIRECTIVE_PURPOSES))
        if item is None and draw(st.integers(0, 2)) == 0
        else None
    )
    # About one in four is narrowed to a resource type (never with an item either).
    resource_class = (
        draw(st.sampled_from(RECORD_TYPES))
        if item is None and draw(st.integers(0, 3)) == 0
        else None
    )
    # About one in four is narrowed to a code (never with an item): one the resources' token
    # values may hold, or under a system they never use.
    code = (
        draw(
            st.tuples(
                st.sampled_from([*SYSTEMS, "http://example.org/unused"]), st.sampled_from(CODES)
            )
        )
        if item is None and draw(st.integers(0, 1 if choices else 3)) == 0
        else None
    )
    # About one in four is narrowed to a period of data (never with an item), either end
    # possibly open.
    data_from, data_to = (
        draw(
            st.tuples(
                st.one_of(st.none(), st.sampled_from(CARE_MOMENTS)),
                st.one_of(st.none(), st.sampled_from(CARE_MOMENTS)),
            )
            .map(lambda p: (p[0], p[1]) if None in p else tuple(sorted(p)))
            .filter(lambda p: p != (None, None))
        )
        if item is None
        and (draw(st.integers(0, 3)) > 0 if choices else draw(st.integers(0, 3)) == 0)
        else (None, None)
    )
    anyone = [st.none()] * (3 if item else 1)
    recipient = draw(
        st.one_of(
            *anyone,
            st.tuples(st.just("org"), st.sampled_from(organisations)),
            st.tuples(st.just("role"), st.sampled_from(roles)),
        )
    )
    source = draw(st.one_of(*anyone, st.sampled_from(organisations)))
    return Directive(
        patient_id=draw(st.sampled_from(patient_ids)),
        decision=draw(st.sampled_from(["deny", "permit"])),
        level=specificity(
            item, source, recipient, label, purpose, resource_class, code, data_from or data_to
        ),
        recipient_organisation=recipient[1] if recipient and recipient[0] == "org" else None,
        recipient_role=recipient[1] if recipient and recipient[0] == "role" else None,
        source_organisation=source,
        item=item,
        label=label,
        purpose=purpose,
        resource_class=resource_class,
        code=code,
        data_from=data_from,
        data_to=data_to,
        starts_at=draw(st.one_of(st.none(), st.none(), st.sampled_from(MOMENTS))),
        ends_at=draw(st.one_of(st.none(), st.none(), st.sampled_from(MOMENTS))),
    )


def _grant(practitioners: Sequence[str], patient_ids: Sequence[str]) -> st.SearchStrategy[Grant]:
    return st.builds(
        Grant,
        st.sampled_from(practitioners),
        st.sampled_from(patient_ids),
        st.sampled_from(MOMENTS),  # some expired, some expiring exactly now
    )


@st.composite
def worlds(
    draw: st.DrawFn, *, generous: bool = False, narrowed: bool = False, choices: bool = False
) -> World:
    """A random world. A ``generous`` one has a generous agreement, one person and staff
    callers only, so that relationships, directives and break-glass decide most answers. In a
    ``narrowed`` one every caller's scopes narrow some type, and the records are of the
    types they narrow, so that the scopes' queries decide many answers. In one with
    ``choices`` most directives are narrowed to a code or a period of data, so that the
    resources' tokens and care dates decide many answers."""
    document = draw(agreements(generous=generous))
    # Sometimes a category resources were labelled with is no longer in force (withdrawn from
    # the value sets after they were written): the agreement cannot name it any more.
    withdrawn = frozenset(draw(st.one_of(st.just([]), st.just([]), _subset(LABELS))))
    document["never_share"] = [c for c in document["never_share"] if c not in withdrawn]
    for rule in document["access"]:
        rule["sensitive"] = [c for c in rule["sensitive"] if c not in withdrawn]
    parties = [o["ods"] for o in document["organisations"]]
    organisations = [*parties, STRANGER]
    # Persons and their source patients; some patients identity has not filed yet.
    patients: dict[str, str | None] = {}
    for person in range(1 if generous else draw(st.integers(1, 2))):
        for n in range(draw(st.integers(1, 3))):
            filed = draw(st.integers(0, 4)) > 0
            patients[f"hv-pt{person}{n}"] = f"hv-person{person}" if filed else None
    patient_ids = sorted(patients)
    labels = st.one_of(
        st.just(frozenset[str]()),
        st.just(frozenset[str]()),
        st.frozensets(st.sampled_from(LABELS), min_size=1),
    )
    security = st.one_of(
        st.just(()), st.just(()), st.lists(st.sampled_from(SECURITY), unique=True).map(tuple)
    )
    # Each source patient's own Patient resource, then records and directory entries; mostly
    # recorded by parties, sometimes by an outsider or by nobody known.
    sources = [*parties, *parties, *parties, STRANGER]
    resources = [
        Resource("Patient", p, draw(st.sampled_from(sources)), p, draw(labels), draw(security))
        for p in patient_ids
    ]
    for i in range(draw(st.integers(2, 6 if generous else 10))):
        if draw(st.integers(0, 4)) == 0:
            resource_type = draw(st.sampled_from(DIRECTORY))
            owner = draw(st.one_of(st.none(), st.none(), st.sampled_from(patient_ids)))
        else:
            resource_type = draw(st.sampled_from(NARROWABLE[:3] if narrowed else RECORD_TYPES))
            owner = draw(
                st.one_of(st.sampled_from(patient_ids), st.sampled_from(patient_ids), st.none())
            )
        source = draw(st.sampled_from([*sources, None]))
        resources.append(
            Resource(
                resource_type,
                f"hv-r{i}",
                source,
                owner,
                draw(labels),
                draw(security),
                draw(_tokens(resource_type)),
                draw(_care_dates(resource_type)),
            )
        )
    keys = [r.key for r in resources]
    callers = [
        replace(caller, scopes=draw(_scopes(caller.kind.value, always=narrowed)))
        for caller in draw(_callers(parties, patient_ids, staff_only=generous))
    ]
    # Relationships: random ones, and some with the callers' own organisations and users, so
    # that the rules, directives and break-glass are reached often.
    staff = [c for c in callers if c.kind is CallerKind.USER]
    their_orgs = [c.organisation for c in staff if c.organisation] or organisations
    their_users = [c.user for c in staff if c.user] or list(USERS)
    relationships = draw(
        st.lists(_relationship(patient_ids, organisations, USERS), max_size=4)
    ) + draw(
        st.lists(
            _relationship(patient_ids, their_orgs, their_users),
            min_size=0 if generous else 1,
            max_size=4,
        )
    )
    their_roles = [c.role for c in staff if c.role] or list(ROLES)
    directives = [
        *draw(
            st.lists(_directive(patient_ids, organisations, ROLES, keys, 3, choices), max_size=3)
        ),
        *draw(
            st.lists(
                _directive(
                    patient_ids, their_orgs, their_roles, keys, 2 if generous else 3, choices
                ),
                max_size=6 if generous else 4,
            )
        ),
    ]
    # Break-glass grants: some for whoever, more for the callers breaking glass.
    breaking = [c.user for c in staff if c.user and c.purpose is Purpose.BTG] or list(USERS)
    grants = [
        *draw(st.lists(_grant(USERS, patient_ids), max_size=2)),
        *draw(st.lists(_grant(breaking, patient_ids), min_size=1 if generous else 0, max_size=3)),
    ]
    return World(
        agreement=document,
        patients=patients,
        resources=resources,
        callers=callers,
        relationships=relationships,
        directives=directives,
        grants=grants,
        sensitive=SENSITIVE - withdrawn,
    )


# -- the world in the database, and the two answers ------------------------------------


def _security_text(security: tuple[tuple[str, str], ...]) -> str | None:
    # As the store writes meta.security: "system|code system|code".
    return " ".join(f"{system}|{code}" for system, code in security) or None


def write_world(session: Session, world: World) -> dict[str, int]:
    """Insert the world's rows; the pk of each resource by its key."""
    resources = world.stored()
    rows = [
        {
            "resource_type": r.resource_type,
            "resource_id": r.resource_id,
            "version_id": 1,
            "last_updated": NOW,
            "deleted": False,
            "patient_id": r.patient,
            "source_org": r.source,
            "sensitivity": labels_text(r.sensitivity),
            "security": _security_text(r.security),
            "body": "{}",
        }
        for r in resources
    ]
    pks = list(
        session.scalars(
            insert(ResourceRow).returning(ResourceRow.pk, sort_by_parameter_order=True), rows
        )
    )
    by_key = {r.key: pk for r, pk in zip(resources, pks, strict=True)}
    tokens = [
        {
            "resource_pk": by_key[r.key],
            "resource_type": r.resource_type,
            "param": param,
            "system": system,
            "code": code,
        }
        for r in resources
        for param, system, code in r.tokens
    ]
    if tokens:
        session.execute(insert(search_token), tokens)
    dates = [
        {
            "resource_pk": by_key[r.key],
            "resource_type": r.resource_type,
            "param": CARE_DATE_PARAMS[r.resource_type],
            "low": low,
            "high": high,
        }
        for r in resources
        for low, high in r.care_dates
    ]
    if dates:
        session.execute(insert(search_date), dates)
    filed = [
        {"patient_id": p, "person_id": person, "features": "{}", "updated_at": NOW}
        for p, person in world.patients.items()
        if person is not None
    ]
    if filed:
        session.execute(insert(IdentityRecord), filed)
    if world.relationships:
        session.execute(
            insert(CareRelationshipRow),
            [
                {
                    "resource_pk": None,
                    "patient_id": r.patient_id,
                    "kind": r.kind,
                    "organisation": r.organisation,
                    "practitioner": r.practitioner,
                    "source_organisation": r.source_organisation,
                    "ends_at": r.ends_at,
                    "reason": None,
                }
                for r in world.relationships
            ],
        )
    if world.directives:
        session.execute(
            insert(ConsentDirectiveRow),
            [
                directive_values(d, by_key[f"Consent/hv-consent-{d.patient_id}"])
                for d in world.directives
            ],
        )
    if world.grants:
        session.execute(
            insert(BreakGlassGrantRow),
            [
                {
                    "grant_id": f"hv-grant-{i}",
                    "practitioner": g.practitioner,
                    "organisation": STRANGER,
                    "role": "DOC",
                    "patient_id": g.patient_id,
                    "reason": "synthetic emergency",
                    "granted_at": NOW - timedelta(hours=1),
                    "expires_at": g.expires_at,
                }
                for i, g in enumerate(world.grants)
            ],
        )
    return by_key


def facts_for(world: World, resource: Resource) -> ResourceFacts:
    person = world.person_patients(resource.patient)
    return ResourceFacts(
        resource_type=resource.resource_type,
        resource_id=resource.resource_id,
        source_organisation=resource.source,
        sensitivity=resource.sensitivity,
        security=frozenset(code for _, code in resource.security),
        patient_id=resource.patient,
        person_patients=person,
        relationships=tuple(r for r in world.relationships if r.patient_id in person),
        directives=tuple(d for d in world.directives if d.patient_id in person),
        grants=tuple(g for g in world.grants if g.patient_id in person),
        tokens=frozenset(resource.tokens),
        care_dates=resource.care_dates if resource.resource_type in CARE_DATE_PARAMS else None,
    )


@dataclass(frozen=True, slots=True)
class Answer:
    caller: AccessContext
    compiled: frozenset[str]  # keys of the resources the SQL returned
    reference: frozenset[str]  # keys of the resources decide permits
    # For one person's record (the read path's visible_for_person): the person's patients,
    # and the keys the specialised predicate's SQL returned among that person's resources.
    per_person: tuple[tuple[frozenset[str], frozenset[str]], ...] = ()
    # The full predicate as the request paths compile it (once per caller, time bound when
    # the statement runs); None when not asked.
    live: frozenset[str] | None = None
    # For each person, what ``person_visibility`` returned: ``within`` among the person's
    # resources, ``guarded`` among every resource of the world.
    request_forms: tuple[tuple[frozenset[str], frozenset[str], frozenset[str]], ...] = ()

    def report(self) -> str:
        leaked = sorted(self.compiled - self.reference)
        hidden = sorted(self.reference - self.compiled)
        return f"{describe(self.caller)}: leaked {leaked}, over-hidden {hidden}"

    def person_reports(self, world: World) -> list[str]:
        found = []

        def check(what: str, got: frozenset[str], expected: frozenset[str]) -> None:
            if got != expected:
                leaked, hidden = sorted(got - expected), sorted(expected - got)
                found.append(
                    f"{describe(self.caller)}, {what}: leaked {leaked}, over-hidden {hidden}"
                )

        for patients, compiled in self.per_person:
            mine = frozenset(r.key for r in world.stored() if r.patient in patients)
            check(f"specialised for {sorted(patients)}", compiled, self.reference & mine)
        if self.live is not None:
            check("full predicate compiled once (live time)", self.live, self.reference)
        for patients, within, guarded in self.request_forms:
            mine = frozenset(r.key for r in world.stored() if r.patient in patients)
            check(f"within for {sorted(patients)}", within, self.reference & mine)
            check(f"guarded for {sorted(patients)}", guarded, self.reference)
        return found


def parse(world: World) -> Agreement:
    return parse_agreement(world.agreement, sensitive_categories=world.sensitive)


def persons(world: World) -> list[frozenset[str]]:
    """The source patients of each person (a patient not yet filed is a person alone)."""
    return sorted({world.person_patients(p) for p in world.patients}, key=sorted)


def compare(session: Session, world: World, *, per_person: bool = False) -> list[Answer]:
    """Write ``world`` in a savepoint, answer for every caller both ways, roll it back.

    With ``per_person``, also ask the database for each person's record through the
    predicate specialised for that person (as the read path does for a person's record)."""
    agreement = parse(world)
    savepoint = session.begin_nested()
    try:
        by_key = write_world(session, world)
        key_of = {pk: key for key, pk in by_key.items()}
        facts = {p: person_facts(session, p) for p in persons(world)} if per_person else {}
        answers = []
        for caller in world.callers:
            predicate = visibility(caller, agreement, sensitive_categories=world.sensitive)
            compiled = session.scalars(
                select(ResourceRow.pk).where(
                    compile_visibility(predicate, now=NOW), ResourceRow.pk.in_(key_of)
                )
            )
            reference = {
                r.key
                for r in world.stored()
                if decide(
                    caller,
                    facts_for(world, r),
                    agreement,
                    sensitive_categories=world.sensitive,
                    now=NOW,
                )
            }
            specialised = tuple(
                (
                    patients,
                    frozenset(
                        key_of[pk]
                        for pk in session.scalars(
                            select(ResourceRow.pk).where(
                                compile_visibility(specialise(predicate, person, now=NOW), now=NOW),
                                ResourceRow.pk.in_(key_of),
                                ResourceRow.patient_id.in_(sorted(patients)),
                            )
                        )
                    ),
                )
                for patients, person in facts.items()
            )
            # The forms the request paths run, with the time they read at execution set to
            # the world's.
            at_now = {"consent_now_live": NOW}
            live = (
                frozenset(
                    key_of[pk]
                    for pk in session.scalars(
                        select(ResourceRow.pk).where(
                            compile_visibility_live(predicate), ResourceRow.pk.in_(key_of)
                        ),
                        at_now,
                    )
                )
                if per_person
                else None
            )
            request_forms = []
            for patients, person in facts.items():
                forms = person_visibility(predicate, person, patients, now=NOW)
                within, guarded = (
                    frozenset(
                        key_of[pk]
                        for pk in session.scalars(
                            select(ResourceRow.pk).where(form, ResourceRow.pk.in_(key_of)), at_now
                        )
                    )
                    for form in (forms.within, forms.guarded)
                )
                request_forms.append((patients, within, guarded))
            answers.append(
                Answer(
                    caller,
                    frozenset(key_of[pk] for pk in compiled),
                    frozenset(reference),
                    specialised,
                    live,
                    tuple(request_forms),
                )
            )
        return answers
    finally:
        savepoint.rollback()


def disagreements(answers: list[Answer], world: World | None = None) -> list[str]:
    found = [a.report() for a in answers if a.compiled != a.reference]
    if world is not None:
        found.extend(report for a in answers for report in a.person_reports(world))
    return found

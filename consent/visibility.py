"""What a caller may see: a small predicate tree, and the plain per-resource reference.

``visibility(context, agreement, ...)`` answers "what may this caller see" as a predicate over
a stored resource's labels (type, recording organisation, sensitivity, owning patient) and
over the relationship, directive and break-glass data of the person the resource belongs
to. The gateway compiles the tree to SQL (``fhir_gateway/store/visibility.py``) and applies
it inside every query, before anything is counted or paged. It never expands into lists of
patients.

``decide(context, facts, agreement, ...)`` is the same policy written plainly for one
resource, independently of the tree; property tests check that the compiled tree returns
exactly the resources ``decide`` permits.

The policy, for a member of staff (purpose TREAT, CASEFIND or BTG):

1. The organisation that recorded something always sees it.
2. Reference data with no patient (the directory: organisations, practitioners...) is
   visible to all staff.
3. Anything else is visible only through a rule of the agreement that applies to the user's
   organisation (by code or kind), role and purpose, for data from a contributing
   organisation within its contribution and the rule's categories, whose sensitive
   categories (if any) the rule names and none of which is never-share; and only where
   a. the person has a legitimate relationship with the user or their organisation, and
      the person's directives allow it (most specific wins, deny wins at equal specificity,
      sealed items never; explicit consent needed where the agreement requires it), or
   b. the user broke glass for this person (purpose BTG, a role the agreement names, an
      unexpired grant): objections and the missing relationship are lifted, sealed items,
      never-share categories and a missing explicit consent are not.

For the person themselves (purpose PATRQT): their own record (every source patient linked
to them), except items labelled not for disclosure to the patient and safeguarding details
(third-party information); and the directory.

For a system client: its own organisation's data; and what a clause of the agreement names
for that client (categories, contributing organisations), never-share categories excepted;
and the directory.

Fail closed: a caller the agreement does not know, or an organisation that is not a party,
sees only its own organisation's records.

Whatever the caller, where their SMART scopes narrow a type by search parameters
(``consent.context``), a resource of that type must also match one of the scopes' queries
(``InScope``, ANDed with the rest): the app asked for less, and gets no more than it asked
for, its own organisation's records included.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from consent.agreements import (
    DIRECTORY_TYPES,
    HEALTH_KINDS,
    WILDCARD,
    Agreement,
    types_of,
)
from consent.context import AccessContext, CallerKind, Purpose, TokenCriterion
from consent.directives import Directive
from consent.relationships import Relationship

NOT_FOR_PATIENT = "NOPAT"  # v3 ActCode: no disclosure to the patient without authorisation
SAFEGUARDING = "safeguarding"


# -- the predicate tree ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Const:
    value: bool


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple["Predicate", ...]


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple["Predicate", ...]


@dataclass(frozen=True, slots=True)
class SourceIn:
    organisations: frozenset[str]


@dataclass(frozen=True, slots=True)
class TypeIn:
    types: frozenset[str]


@dataclass(frozen=True, slots=True)
class NoPatient:
    """The resource belongs to nobody's record (directory data)."""


@dataclass(frozen=True, slots=True)
class SensitivityNone:
    """The resource carries none of these sensitive categories."""

    categories: frozenset[str]


@dataclass(frozen=True, slots=True)
class SensitivityWithin:
    """Every sensitive category the resource carries is one of these (none at all passes):
    a label the value sets no longer define, or one a rule does not name, is not shared."""

    categories: frozenset[str]


@dataclass(frozen=True, slots=True)
class NotLabelled:
    """The resource's ``meta.security`` carries none of these codes."""

    codes: frozenset[str]


@dataclass(frozen=True, slots=True)
class OwnPerson:
    """The resource belongs to the person whose source patient is ``patient_id``."""

    patient_id: str


@dataclass(frozen=True, slots=True)
class Related:
    """The person has a relationship in force with ``organisation`` or ``practitioner``;
    a registration counts only if one of ``registering`` (the GP practices) recorded it."""

    organisation: str | None
    practitioner: str | None
    registering: frozenset[str]


@dataclass(frozen=True, slots=True)
class BrokeGlass:
    """``practitioner`` holds an unexpired break-glass grant for the person."""

    practitioner: str


@dataclass(frozen=True, slots=True)
class DirectivesAllow:
    """The person's directives, for a recipient organisation and role, allow this resource.

    Sealed items are always refused. ``lift_objections``: deny directives other than sealed
    items are ignored (break-glass). ``require_permit``: an applicable permit must win (the
    agreement requires explicit consent). A directive narrowed to a security label applies
    only to resources carrying it (``Directive.covers``): its own data, nothing else; one
    narrowed to a purpose of use only to callers declaring it (``purposes``); one narrowed to
    a resource type only to resources of that type; one narrowed to a code only to resources
    whose token index holds it (``Directive.covers_code``); one narrowed to a period of data
    only to resources whose care date meets it (``Directive.covers_period``).
    """

    organisation: str | None
    role: str | None
    require_permit: bool
    lift_objections: bool
    # The caller's purposes of use as directives name them (break-glass counts as TREAT too):
    # a directive narrowed to a purpose applies only if it is one of these.
    purposes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InScope:
    """The caller's scopes narrow reads of some types (``AccessContext.narrowed_reads``): a
    resource of a type in ``narrowed`` must meet every criterion of one of its type's
    queries, matched against the token values the search index holds for the resource; a
    resource of any other type passes."""

    narrowed: tuple[tuple[str, tuple[tuple[TokenCriterion, ...], ...]], ...]


Predicate = (
    Const
    | InScope
    | AnyOf
    | AllOf
    | SourceIn
    | TypeIn
    | NoPatient
    | SensitivityNone
    | SensitivityWithin
    | NotLabelled
    | OwnPerson
    | Related
    | BrokeGlass
    | DirectivesAllow
)


def any_of(*items: Predicate) -> Predicate:
    kept = [i for i in items if i != Const(False)]
    if any(i == Const(True) for i in kept):
        return Const(True)
    if not kept:
        return Const(False)
    return kept[0] if len(kept) == 1 else AnyOf(tuple(kept))


def all_of(*items: Predicate) -> Predicate:
    kept = [i for i in items if i != Const(True)]
    if any(i == Const(False) for i in kept):
        return Const(False)
    if not kept:
        return Const(True)
    return kept[0] if len(kept) == 1 else AllOf(tuple(kept))


# -- visibility: the tree for one caller -----------------------------------------------


def _rule_purposes(purpose: Purpose) -> frozenset[str]:
    # Break-glass uses the rules written for direct care as well as any written for BTG.
    if purpose is Purpose.BTG:
        return frozenset({Purpose.TREAT.value, Purpose.BTG.value})
    return frozenset({purpose.value})


def _sources(
    agreement: Agreement, organisations: frozenset[str], kinds: frozenset[str]
) -> list[str]:
    return sorted(
        ods
        for ods, party in agreement.parties.items()
        if ods in organisations or party.kind in kinds
    )


def registering_practices(agreement: Agreement) -> frozenset[str]:
    return frozenset(ods for ods, party in agreement.parties.items() if party.kind == "gp")


def needs_explicit_consent(agreement: Agreement, recipient: str | None, source: str) -> bool:
    """Social care sees health data only with explicit consent, if the agreement says so."""
    return (
        agreement.social_care_health_consent == "explicit"
        and agreement.kind_of(recipient) == "social-care"
        and agreement.kind_of(source) in HEALTH_KINDS
    )


def visibility(
    context: AccessContext, agreement: Agreement, *, sensitive_categories: frozenset[str]
) -> Predicate:
    """The predicate over stored resources that this caller may see (see the module doc):
    ``InScope`` first where the scopes narrow some type, then what consent permits."""
    permitted = _permitted(context, agreement)
    narrowed = context.narrowed_reads()
    return all_of(InScope(narrowed), permitted) if narrowed else permitted


def scope_part(predicate: Predicate) -> InScope | None:
    """The ``InScope`` test ``visibility`` put first in ``predicate`` (or in a tree
    ``specialise`` made of it), if any: what the caller's scopes leave in view, so that a
    notice of what consent withheld counts only what the caller asked to see."""
    if isinstance(predicate, InScope):
        return predicate
    if isinstance(predicate, AllOf) and isinstance(predicate.items[0], InScope):
        return predicate.items[0]
    return None


def _permitted(context: AccessContext, agreement: Agreement) -> Predicate:
    directory = all_of(NoPatient(), TypeIn(DIRECTORY_TYPES))
    if context.kind is CallerKind.PATIENT:
        assert context.patient is not None
        return any_of(
            directory,
            all_of(
                OwnPerson(context.patient),
                NotLabelled(frozenset({NOT_FOR_PATIENT})),
                SensitivityNone(frozenset({SAFEGUARDING})),
            ),
        )
    own = SourceIn(frozenset({context.organisation})) if context.organisation else Const(False)
    never = SensitivityNone(agreement.never_share) if agreement.never_share else Const(True)
    if context.kind is CallerKind.SYSTEM:
        clause = agreement.system_clients.get(context.client_id or "")
        if clause is None or context.purpose.value not in clause.purposes:
            return any_of(own, directory)
        from_part: Predicate = (
            Const(True)
            if WILDCARD in clause.from_organisations
            else SourceIn(clause.from_organisations)
        )
        types_part: Predicate = (
            Const(True) if WILDCARD in clause.categories else TypeIn(types_of(clause.categories))
        )
        return any_of(own, directory, all_of(from_part, types_part, never))
    # A member of staff.
    organisation, role = context.organisation, context.role or ""
    kind = agreement.kind_of(organisation)
    if organisation is None or kind is None:
        return any_of(own, directory)
    purposes = _rule_purposes(context.purpose)
    directive_purposes = tuple(sorted(purposes))
    breaking_glass = (
        context.purpose is Purpose.BTG
        and role in agreement.break_glass_roles
        and context.user is not None
    )
    # What the agreement shares, as label predicates grouped by whether the person's explicit
    # consent is needed; the person-level gates (relationship, directives, break-glass) then
    # appear once per group, not once per source (they are the expensive part in SQL).
    groups: dict[bool, dict[tuple[frozenset[str], frozenset[str]], set[str]]] = {}
    for rule in agreement.rules:
        if not any(
            rule.applies_to(organisation=organisation, kind=kind, role=role, purpose=p)
            for p in purposes
        ):
            continue
        shareable = frozenset(rule.sensitive - agreement.never_share)
        for source in _sources(agreement, rule.from_organisations, rule.from_kinds):
            types = types_of(rule.categories) & agreement.contributed_types(source)
            if not types:
                continue
            explicit = needs_explicit_consent(agreement, organisation, source)
            groups.setdefault(explicit, {}).setdefault((types, shareable), set()).add(source)
    parts: list[Predicate] = []
    for explicit in sorted(groups):
        shared = any_of(
            *(
                all_of(
                    SourceIn(frozenset(sources)),
                    TypeIn(types),
                    SensitivityWithin(shareable),
                )
                for (types, shareable), sources in sorted(
                    groups[explicit].items(), key=lambda item: sorted(item[1])
                )
            )
        )
        gate = all_of(
            Related(organisation, context.user, registering_practices(agreement)),
            DirectivesAllow(
                organisation, role, explicit, lift_objections=False, purposes=directive_purposes
            ),
        )
        if breaking_glass:
            assert context.user is not None
            gate = any_of(
                gate,
                all_of(
                    BrokeGlass(context.user),
                    DirectivesAllow(
                        organisation,
                        role,
                        explicit,
                        lift_objections=True,
                        purposes=directive_purposes,
                    ),
                ),
            )
        parts.append(all_of(shared, gate))
    return any_of(own, directory, *parts)


# -- the reference: one resource, decided plainly --------------------------------------


@dataclass(frozen=True, slots=True)
class Grant:
    practitioner: str
    patient_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ResourceFacts:
    """Everything the policy looks at for one stored resource.

    ``person_patients`` are all the source patients of the person the resource belongs to
    (including its own ``patient_id``); ``relationships``, ``directives`` and ``grants`` are
    every one recorded for any of them.
    """

    resource_type: str
    resource_id: str
    source_organisation: str | None
    sensitivity: frozenset[str]
    security: frozenset[str]
    patient_id: str | None
    person_patients: frozenset[str]
    relationships: tuple[Relationship, ...] = ()
    directives: tuple[Directive, ...] = ()
    grants: tuple[Grant, ...] = ()
    # The resource's token values as searched: (parameter, system, code).
    tokens: frozenset[tuple[str, str | None, str | None]] = frozenset()
    # The resource's care dates as indexed (closed ranges), None for a type that records no
    # care date (``fhir_gateway.store.care_dates``).
    care_dates: tuple[tuple[datetime, datetime], ...] | None = None
    # Whether ``tokens`` and ``care_dates`` are this version's: False for a past version or a
    # deleted resource, whose index rows are gone (directives narrowed to a code or a period
    # of data then fail closed).
    indexed: bool = True


def _directives_allow(
    facts: ResourceFacts,
    *,
    organisation: str | None,
    role: str | None,
    require_permit: bool,
    lift_objections: bool,
    purposes: frozenset[str],
    now: datetime,
) -> bool:
    item = f"{facts.resource_type}/{facts.resource_id}"
    applicable = [
        d
        for d in facts.directives
        if d.patient_id in facts.person_patients
        and d.in_force(now)
        and d.recipient_organisation in (None, organisation)
        and d.recipient_role in (None, role)
        and d.source_organisation in (None, facts.source_organisation)
        and d.item in (None, item)
        and (d.purpose is None or d.purpose in purposes)
        and d.covers_type(facts.resource_type)
        and d.covers_code(facts.tokens, indexed=facts.indexed)
        and d.covers_period(facts.care_dates, indexed=facts.indexed)
        and d.covers(facts.sensitivity, facts.security)
    ]
    if any(d.sealed for d in applicable):
        return False
    permits = [d.level for d in applicable if d.decision == "permit"]
    denies = [] if lift_objections else [d.level for d in applicable if d.decision == "deny"]
    best_permit = max(permits, default=-1)
    best_deny = max(denies, default=-1)
    if require_permit:
        return best_permit > best_deny
    return best_deny == -1 or best_deny < best_permit


def in_scope(context: AccessContext, facts: ResourceFacts) -> bool:
    """Whether the caller's scopes ask for the resource (``InScope``, plainly)."""
    return all(
        facts.resource_type != resource_type
        or any(all(criterion.matches(facts.tokens) for criterion in query) for query in queries)
        for resource_type, queries in context.narrowed_reads()
    )


def decide(
    context: AccessContext,
    facts: ResourceFacts,
    agreement: Agreement,
    *,
    sensitive_categories: frozenset[str],
    now: datetime,
) -> bool:
    """Whether ``context`` may see the resource described by ``facts`` (the reference)."""
    if not in_scope(context, facts):
        return False
    is_directory = facts.patient_id is None and facts.resource_type in DIRECTORY_TYPES
    if context.kind is CallerKind.PATIENT:
        if is_directory:
            return True
        mine = context.patient is not None and (
            facts.patient_id == context.patient
            or (facts.patient_id is not None and context.patient in facts.person_patients)
        )
        return (
            mine and NOT_FOR_PATIENT not in facts.security and SAFEGUARDING not in facts.sensitivity
        )
    if context.organisation is not None and facts.source_organisation == context.organisation:
        return True
    if is_directory:
        return True
    if facts.sensitivity & agreement.never_share:
        return False
    if context.kind is CallerKind.SYSTEM:
        clause = agreement.system_clients.get(context.client_id or "")
        if clause is None or context.purpose.value not in clause.purposes:
            return False
        from_ok = WILDCARD in clause.from_organisations or (
            facts.source_organisation in clause.from_organisations
        )
        type_ok = WILDCARD in clause.categories or facts.resource_type in types_of(
            clause.categories
        )
        return from_ok and type_ok
    organisation, role = context.organisation, context.role or ""
    kind = agreement.kind_of(organisation)
    source = facts.source_organisation
    if organisation is None or kind is None or source is None or facts.patient_id is None:
        return False
    if source not in agreement.parties:
        return False
    if facts.resource_type not in agreement.contributed_types(source):
        return False
    purposes = _rule_purposes(context.purpose)
    source_kind = agreement.parties[source].kind
    covered = any(
        rule.applies_to(organisation=organisation, kind=kind, role=role, purpose=p)
        and (source in rule.from_organisations or source_kind in rule.from_kinds)
        and facts.resource_type in types_of(rule.categories)
        and facts.sensitivity <= rule.sensitive
        for rule in agreement.rules
        for p in purposes
    )
    if not covered:
        return False
    explicit = needs_explicit_consent(agreement, organisation, source)
    registering = registering_practices(agreement)
    related = any(
        r.patient_id in facts.person_patients
        and r.in_force(now)
        and r.opens_to(
            organisation=organisation, practitioner=context.user, registering=registering
        )
        for r in facts.relationships
    )
    if related and _directives_allow(
        facts,
        organisation=organisation,
        role=role,
        require_permit=explicit,
        lift_objections=False,
        purposes=_rule_purposes(context.purpose),
        now=now,
    ):
        return True
    broke_glass = (
        context.purpose is Purpose.BTG
        and role in agreement.break_glass_roles
        and context.user is not None
        and any(
            g.practitioner == context.user
            and g.patient_id in facts.person_patients
            and g.expires_at > now
            for g in facts.grants
        )
    )
    return broke_glass and _directives_allow(
        facts,
        organisation=organisation,
        role=role,
        require_permit=explicit,
        lift_objections=True,
        purposes=_rule_purposes(context.purpose),
        now=now,
    )


def labels_text(categories: Iterable[str]) -> str | None:
    """How sensitive categories are stored in one indexed text column: `` a b `` (spaces
    around each, so a category is matched whole with LIKE '% a %')."""
    ordered = sorted(set(categories))
    return f" {' '.join(ordered)} " if ordered else None


# -- one person's record: the person-level parts decided once ----------------------------


@dataclass(frozen=True, slots=True)
class PersonFacts:
    """What the policy needs to know about one person, loaded once for a request about them:
    the relationships and break-glass grants recorded against any of their source patients,
    and whether they have recorded any directive at all."""

    relationships: tuple[Relationship, ...]
    grants: tuple[Grant, ...]
    has_directives: bool


def specialise(predicate: Predicate, facts: PersonFacts, *, now: datetime) -> Predicate:
    """``predicate`` for resources of the one person ``facts`` describes, with the
    person-level parts decided: a relationship and a break-glass grant are known for the
    person, and without directives their choices allow everything (or, where explicit
    consent is needed, nothing). What remains is a predicate over the resource's labels (and
    directives, if the person has any). Valid only for resources of that person."""
    if isinstance(predicate, AnyOf):
        return any_of(*(specialise(item, facts, now=now) for item in predicate.items))
    if isinstance(predicate, AllOf):
        return all_of(*(specialise(item, facts, now=now) for item in predicate.items))
    if isinstance(predicate, Related):
        return Const(
            any(
                r.in_force(now)
                and r.opens_to(
                    organisation=predicate.organisation,
                    practitioner=predicate.practitioner,
                    registering=predicate.registering,
                )
                for r in facts.relationships
            )
        )
    if isinstance(predicate, BrokeGlass):
        return Const(
            any(
                g.practitioner == predicate.practitioner and g.expires_at > now
                for g in facts.grants
            )
        )
    if isinstance(predicate, DirectivesAllow) and not facts.has_directives:
        return Const(not predicate.require_permit)
    return predicate

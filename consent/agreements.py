"""The partnership's information-sharing agreement (the licence), as data.

Loaded from a JSON document, validated strictly and versioned by the gateway. What the
agreement does not permit is denied. Every rule is checked when it is loaded against what the
enforcement can express as a query (known organisations, data categories, sensitive
categories, purposes): a rule naming anything else is refused with the rule's path, so a
typing error in a licence can never silently widen or narrow sharing.

The parts:

- ``organisations``: the parties, each with its ODS code and kind (gp, hospital,
  social-care, community, other).
- ``contributions``: which data categories each organisation shares at all. Data outside an
  organisation's contribution is seen only by that organisation.
- ``access``: which roles in which organisations (by ODS code or kind) may see which data
  categories, from which contributing organisations (by code or kind), for which purposes,
  including which sensitive categories, if any.
- ``social_care_health_consent``: ``implied`` or ``explicit``: whether social care sees
  health data on implied consent or only where the person has given explicit consent.
- ``never_share``: sensitive categories no rule can share (only the recording organisation
  sees them, and break-glass never lifts this).
- ``break_glass_roles``, ``break_glass_hours``; ``self_claim_roles``, ``self_claim_hours``
  (self-claimed legitimate relationships, with a reason, time-limited).
- ``case_finding_roles``: roles in the team aligned with a practice that may see that
  practice's case-finding results.
- ``privacy_officer_roles``: who reads the audit and administers the agreement.
- ``identity_steward_roles``: who decides identity's review queue and links or unlinks
  records by hand (system clients may too).
- ``system_clients``: what each system client may read beyond its own organisation's data,
  and whether it may call ``$match``.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from consent.context import Purpose

ORGANISATION_KINDS = frozenset({"gp", "hospital", "social-care", "community", "other"})
HEALTH_KINDS = frozenset({"gp", "hospital", "community"})

# Data categories, each a set of FHIR resource types. A type in no category is shared with
# nobody but its recording organisation (and system clients granted "*").
DATA_CATEGORIES: Mapping[str, frozenset[str]] = {
    "demographics": frozenset({"Patient", "RelatedPerson"}),
    "problems": frozenset({"Condition"}),
    "medications": frozenset({"MedicationRequest", "MedicationStatement"}),
    "allergies": frozenset({"AllergyIntolerance"}),
    "observations": frozenset({"Observation", "DiagnosticReport"}),
    "procedures": frozenset({"Procedure", "Immunization"}),
    "encounters": frozenset({"Encounter", "EpisodeOfCare"}),
    "care-planning": frozenset(
        {
            "CarePlan",
            "CareTeam",
            "Goal",
            "Task",
            "ServiceRequest",
            "Flag",
            "Communication",
            "QuestionnaireResponse",
        }
    ),
    "documents": frozenset({"DocumentReference"}),
    "devices": frozenset({"Device"}),
    "provenance": frozenset({"Provenance", "Person"}),
}
# Reference data that belongs to no person: visible to any signed-in member of staff whose
# scopes allow the type (it is the directory, not anybody's record).
DIRECTORY_TYPES = frozenset(
    {
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Location",
        "HealthcareService",
        "Medication",
        "Questionnaire",
    }
)
ALL_PURPOSES = frozenset(p.value for p in Purpose)
WILDCARD = "*"


class AgreementError(ValueError):
    """The agreement document is not one the enforcement can apply (says where and why)."""


@dataclass(frozen=True, slots=True)
class Party:
    ods: str
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class AccessRule:
    """Roles in recipient organisations may see categories from contributors for purposes."""

    name: str
    to_organisations: frozenset[str]  # ODS codes; empty means "by kind"
    to_kinds: frozenset[str]
    roles: frozenset[str]  # role codes, or {"*"}
    purposes: frozenset[str]
    categories: frozenset[str]
    from_organisations: frozenset[str]
    from_kinds: frozenset[str]
    sensitive: frozenset[str] = frozenset()

    def applies_to(self, *, organisation: str, kind: str, role: str, purpose: str) -> bool:
        recipient = organisation in self.to_organisations or kind in self.to_kinds
        return (
            recipient
            and (WILDCARD in self.roles or role in self.roles)
            and purpose in self.purposes
        )


@dataclass(frozen=True, slots=True)
class SystemClause:
    """A system client may read ``categories`` from ``from_organisations`` for purposes."""

    client_id: str
    purposes: frozenset[str]
    categories: frozenset[str]  # category names, or {"*"} for every resource type
    from_organisations: frozenset[str]  # ODS codes, or {"*"}
    match: bool = False  # may call Patient/$match


@dataclass(frozen=True, slots=True)
class Agreement:
    version: str
    parties: Mapping[str, Party]
    contributions: Mapping[str, frozenset[str]]
    rules: tuple[AccessRule, ...]
    social_care_health_consent: str = "explicit"
    never_share: frozenset[str] = frozenset()
    break_glass_roles: frozenset[str] = frozenset()
    break_glass_hours: float = 4.0
    self_claim_roles: frozenset[str] = frozenset()
    self_claim_hours: float = 24.0
    case_finding_roles: frozenset[str] = frozenset()
    privacy_officer_roles: frozenset[str] = frozenset()
    identity_steward_roles: frozenset[str] = frozenset()
    system_clients: Mapping[str, SystemClause] = field(default_factory=dict)

    def kind_of(self, ods: str | None) -> str | None:
        party = self.parties.get(ods or "")
        return party.kind if party else None

    def contributed_types(self, ods: str) -> frozenset[str]:
        """The resource types ``ods`` shares at all (its contribution)."""
        return types_of(self.contributions.get(ods, frozenset()))


def types_of(categories: frozenset[str]) -> frozenset[str]:
    if WILDCARD in categories:
        return frozenset().union(*DATA_CATEGORIES.values())
    return frozenset().union(*(DATA_CATEGORIES[c] for c in categories))


def _strings(value: object, where: str, *, allowed: frozenset[str] | None = None) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise AgreementError(f"{where} must be a list of non-empty strings")
    found = frozenset(value)
    if allowed is not None:
        unknown = sorted(found - allowed - {WILDCARD})
        if unknown:
            raise AgreementError(f"{where} names {', '.join(unknown)}, which are not known")
    return found


def _number(value: object, where: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 24 * 7:
        raise AgreementError(f"{where} must be a number of hours between 0 and 168")
    return float(value)


def parse_agreement(
    document: Mapping[str, object], *, sensitive_categories: frozenset[str]
) -> Agreement:
    """The agreement in ``document``, or AgreementError naming the first bad part.

    ``sensitive_categories`` are the codes of the sensitive-data value sets in force; a rule
    may only name those.
    """
    known_keys = {
        "version",
        "organisations",
        "contributions",
        "access",
        "social_care_health_consent",
        "never_share",
        "break_glass_roles",
        "break_glass_hours",
        "self_claim_roles",
        "self_claim_hours",
        "case_finding_roles",
        "privacy_officer_roles",
        "identity_steward_roles",
        "system_clients",
        "description",
    }
    unknown_keys = sorted(set(document) - known_keys)
    if unknown_keys:
        raise AgreementError(f"Unknown parts: {', '.join(unknown_keys)}")
    version = document.get("version")
    if not isinstance(version, str) or not version.strip():
        raise AgreementError("version must be a non-empty string")
    parties = _parties(document.get("organisations"))
    categories = frozenset(DATA_CATEGORIES)
    contributions: dict[str, frozenset[str]] = {}
    raw_contributions = document.get("contributions") or {}
    if not isinstance(raw_contributions, Mapping):
        raise AgreementError("contributions must map ODS codes to lists of categories")
    for ods, cats in raw_contributions.items():
        if ods not in parties:
            raise AgreementError(f"contributions.{ods} is not an organisation of the agreement")
        contributions[ods] = _strings(cats, f"contributions.{ods}", allowed=categories)
    rules = tuple(
        _rule(raw, f"access[{i}]", parties, categories, sensitive_categories)
        for i, raw in enumerate(_list(document.get("access"), "access"))
    )
    consent_mode = document.get("social_care_health_consent", "explicit")
    if consent_mode not in ("implied", "explicit"):
        raise AgreementError("social_care_health_consent must be 'implied' or 'explicit'")
    clients: dict[str, SystemClause] = {}
    for i, raw in enumerate(_list(document.get("system_clients"), "system_clients")):
        clause = _system_clause(raw, f"system_clients[{i}]", parties, categories)
        if clause.client_id in clients:
            raise AgreementError(f"system_clients[{i}] repeats client {clause.client_id}")
        clients[clause.client_id] = clause
    return Agreement(
        version=version.strip(),
        parties=parties,
        contributions=contributions,
        rules=rules,
        social_care_health_consent=str(consent_mode),
        never_share=_strings(
            document.get("never_share"), "never_share", allowed=sensitive_categories
        ),
        break_glass_roles=_strings(document.get("break_glass_roles"), "break_glass_roles"),
        break_glass_hours=_number(document.get("break_glass_hours"), "break_glass_hours", 4.0),
        self_claim_roles=_strings(document.get("self_claim_roles"), "self_claim_roles"),
        self_claim_hours=_number(document.get("self_claim_hours"), "self_claim_hours", 24.0),
        case_finding_roles=_strings(document.get("case_finding_roles"), "case_finding_roles"),
        privacy_officer_roles=_strings(
            document.get("privacy_officer_roles"), "privacy_officer_roles"
        ),
        identity_steward_roles=_strings(
            document.get("identity_steward_roles"), "identity_steward_roles"
        ),
        system_clients=clients,
    )


def _list(value: object, where: str) -> Sequence[Mapping[str, object]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise AgreementError(f"{where} must be a list of objects")
    return value


def _parties(value: object) -> dict[str, Party]:
    parties: dict[str, Party] = {}
    for i, raw in enumerate(_list(value, "organisations")):
        ods, kind, name = raw.get("ods"), raw.get("kind"), raw.get("name", "")
        if not isinstance(ods, str) or not ods.isalnum():
            raise AgreementError(f"organisations[{i}].ods must be an ODS code")
        if kind not in ORGANISATION_KINDS:
            raise AgreementError(
                f"organisations[{i}].kind must be one of {', '.join(sorted(ORGANISATION_KINDS))}"
            )
        if ods in parties:
            raise AgreementError(f"organisations[{i}] repeats {ods}")
        parties[ods] = Party(ods=ods, kind=str(kind), name=str(name))
    if not parties:
        raise AgreementError("organisations must name at least one party")
    return parties


def _rule(
    raw: Mapping[str, object],
    where: str,
    parties: Mapping[str, Party],
    categories: frozenset[str],
    sensitive: frozenset[str],
) -> AccessRule:
    allowed_keys = {"name", "to", "roles", "purposes", "categories", "from", "sensitive"}
    extra = sorted(set(raw) - allowed_keys)
    if extra:
        raise AgreementError(f"{where} has unknown parts: {', '.join(extra)}")
    to = _strings(raw.get("to"), f"{where}.to", allowed=frozenset(parties) | ORGANISATION_KINDS)
    source = _strings(
        raw.get("from"), f"{where}.from", allowed=frozenset(parties) | ORGANISATION_KINDS
    )
    roles = _strings(raw.get("roles"), f"{where}.roles")
    purposes = _strings(raw.get("purposes"), f"{where}.purposes", allowed=ALL_PURPOSES)
    cats = _strings(raw.get("categories"), f"{where}.categories", allowed=categories)
    for name, values in (
        ("to", to),
        ("from", source),
        ("roles", roles),
        ("purposes", purposes),
        ("categories", cats),
    ):
        if not values:
            raise AgreementError(f"{where}.{name} must name at least one")
    if WILDCARD in purposes or WILDCARD in to or WILDCARD in source:
        raise AgreementError(f"{where}: 'to', 'from' and 'purposes' must be named, not '*'")
    if Purpose.PATRQT.value in purposes:
        raise AgreementError(f"{where}: the person's own access is not a sharing rule")
    return AccessRule(
        name=str(raw.get("name") or where),
        to_organisations=frozenset(v for v in to if v in parties),
        to_kinds=frozenset(v for v in to if v in ORGANISATION_KINDS),
        roles=roles,
        purposes=purposes,
        categories=cats,
        from_organisations=frozenset(v for v in source if v in parties),
        from_kinds=frozenset(v for v in source if v in ORGANISATION_KINDS),
        sensitive=_strings(raw.get("sensitive"), f"{where}.sensitive", allowed=sensitive),
    )


def _system_clause(
    raw: Mapping[str, object],
    where: str,
    parties: Mapping[str, Party],
    categories: frozenset[str],
) -> SystemClause:
    client = raw.get("client_id")
    if not isinstance(client, str) or not client:
        raise AgreementError(f"{where}.client_id must be a non-empty string")
    match = raw.get("match", False)
    if not isinstance(match, bool):
        raise AgreementError(f"{where}.match must be true or false")
    purposes = _strings(raw.get("purposes"), f"{where}.purposes", allowed=ALL_PURPOSES)
    return SystemClause(
        client_id=client,
        purposes=purposes or frozenset({Purpose.TREAT.value}),
        categories=_strings(raw.get("categories"), f"{where}.categories", allowed=categories),
        from_organisations=_strings(raw.get("from"), f"{where}.from", allowed=frozenset(parties)),
        match=match,
    )

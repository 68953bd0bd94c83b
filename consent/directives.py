"""A person's choices, read from FHIR ``Consent`` resources (R4 shape) into directives.

A directive says, for one person, deny or permit, to whom (a recipient organisation or role),
of whose data (a source organisation), or for one item (a sealed resource), and when. The
combining rule (docs/consent.md):

1. A sealed item (a ``deny`` provision naming the resource in ``provision.data``) is never
   shown to anyone but its recording organisation, and break-glass does not lift it.
2. Otherwise the most specific applicable directive wins: an item (level 3) beats a
   source-and-recipient directive (2), which beats a source-only or recipient-only one (1),
   which beats a blanket one (0).
3. At equal specificity, deny wins.
4. Break-glass lifts objections (every deny but sealed items) and nothing else: not sealed
   items, not never-share categories, and not the explicit consent the agreement requires
   before social care sees health data.

How a Consent maps (``scope`` patient-privacy, ``status`` active; anything else records no
directive):

- ``provision.type`` of the top provision: deny (objection) or permit (explicit consent);
  nested provisions are exceptions with their own type, period, actors and data.
- ``provision.actor`` with role ``IRCP`` (information recipient): the recipient, an
  ``Organization`` given by ODS identifier (or by a reference the gateway resolves to one),
  or a role given as an identifier in ``https://fhir.carejoin.example/CodeSystem/role``.
  With role ``CST`` (custodian): the source organisation whose data it concerns.
- ``provision.data`` references (meaning ``instance``): sealed items when denied.
- ``provision.securityLabel``: the directive applies only to data carrying that label (one
  directive per label, so several labels mean data carrying any of them): a sensitive-data
  category, named by its sensitivity code (the DS4P code, one the value sets recognise, or
  carejoin's own), matched against the categories stored with the resource; or a v3
  Confidentiality code ``R`` or ``V``, meaning data at least that confidential (``R``: R or
  V), matched against its stored ``meta.security``. Naming a label adds one to the
  level (a label alone 1; with a source or a recipient 2; with both 3, as an item). A label
  the value sets do not define, a lower confidentiality, or a label with an item, is refused.
- ``provision.purpose``: the directive applies only to callers declaring that purpose of use
  (HL7 v3 ActReason ``TREAT``, ``BTG``, ``PATRQT``, or carejoin's ``CASEFIND``; several
  purposes mean any of them, one directive each). Break-glass counts as direct care here as
  in the agreement's rules, so a directive about ``TREAT`` applies to a caller breaking glass
  too (whose objections are lifted all the same). Naming a purpose adds one to the level, as
  a label does, up to 3. Not inherited by nested provisions, like the actors and labels.
- ``provision.class``: the directive applies only to resources of that type (a Coding of
  ``http://hl7.org/fhir/resource-types``: "not my care plans to the council"); several mean
  any of them, one directive each; level +1, up to 3, as a label; never with items (an item
  already names its type). Other kinds of class (document formats, profiles) are refused.
- ``provision.code``: the directive applies only to data in which that code is found ("not
  my depression diagnosis, wherever it is recorded"): a Coding with a system, matched against
  the system and code of every token the search index holds for the resource (its coded
  elements as search parameters name them: ``Condition.code``, ``Observation.value``,
  ``Encounter.reasonCode``...). Several codes (or codings of one concept) mean any of them,
  one directive each; level +1, up to 3, as a label; never with items. Where a resource's
  tokens are not known (a past version, or a deleted resource, whose index rows are gone), a
  deny narrowed to a code applies and a permit does not: not knowing shows less, never more.
- ``provision.dataPeriod``: the directive applies only to data of that period ("not my
  records from 2010 to 2015"), by each resource's care date (the date the caller's store
  says when the care happened: an Observation's effective date, a Condition's onset, an
  Encounter's period), given to ``covers_period`` as closed ranges. A deny covers data whose
  care date meets the period at all; a permit only data whose care dates lie wholly within
  it. Data of a type that records no care date (a Patient, an organisation) is not data of a
  period and is not covered; data of a dated type whose date is not known (none recorded, a
  past version, a deleted resource) is covered by a deny and not by a permit. Level +1, up
  to 3, as a label; never with items (an item is sealed whatever its date).
- ``provision.action``: what the rule controls. Directives govern what other parties may
  access, use and disclose, so a provision naming any of ``access``, ``use`` and
  ``disclose`` (``http://terminology.hl7.org/CodeSystem/consentaction``) is recorded as one
  naming no action; ``collect`` and ``correct`` are not governed here and are refused.
- ``provision.period``: when it applies (an objection without an end applies until
  withdrawn: the Consent is made inactive or deleted).

Case-finding leaves out anyone with an objection in force, whatever it is narrowed to
(``docs/consent.md``): a purpose-narrowed objection about direct care leaves the person out
of case-finding too.
"""

import re
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from itertools import product
from typing import cast

from consent.labels import CONFIDENTIALITY, ValueSets, category_of_label, default_value_sets

ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
ROLE_SYSTEM = "https://fhir.carejoin.example/CodeSystem/role"
SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
RECIPIENT_ROLES = frozenset({"IRCP"})
# Ways R4 lets a provision narrow itself that this service does not enforce.
CONSENT_ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
# The actions directives govern: what other parties may see is what they access, use and
# disclose. (``collect`` and ``correct`` are not decided here.)
GOVERNED_ACTIONS = frozenset({"access", "use", "disclose"})
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
CAREJOIN_PURPOSE = "https://fhir.carejoin.example/CodeSystem/purpose-of-use"
# The purposes of use a directive may be narrowed to, by the system that names each.
PURPOSES = {
    ACT_REASON: frozenset({"TREAT", "BTG", "PATRQT"}),
    CAREJOIN_PURPOSE: frozenset({"CASEFIND"}),
}
SOURCE_ROLES = frozenset({"CST"})
# A confidentiality code in a narrowing names the data at least that confidential: the codes
# a resource's stored ``meta.security`` may carry for each (HL7 v3 Confidentiality).
CONFIDENTIALITY_AT_LEAST = {"R": frozenset({"R", "V"}), "V": frozenset({"V"})}
_CONFIDENTIALITY_SYSTEMS = frozenset({CONFIDENTIALITY, "http://hl7.org/fhir/v3/Confidentiality"})

OrganisationResolver = Callable[[str], str | None]  # "Organization/x" -> ODS code


class DirectiveError(ValueError):
    """A Consent the enforcement cannot apply (it is refused when written)."""


@dataclass(frozen=True, slots=True)
class Directive:
    patient_id: str
    decision: str  # deny | permit
    level: int  # 0 blanket, 1 one of source/recipient, 2 both, 3 an item
    recipient_organisation: str | None = None
    recipient_role: str | None = None
    source_organisation: str | None = None
    item: str | None = None  # "Type/id" of a sealed (or specifically permitted) item
    # The label it is narrowed to: a sensitive category, or confidentiality "R" / "V".
    label: str | None = None
    # The purpose of use it is narrowed to (the caller's declared purpose must be it).
    purpose: str | None = None
    # The resource type it is narrowed to (``provision.class``): data of that type only.
    resource_class: str | None = None
    # The coded concept it is narrowed to (``provision.code``): (system, code), matched
    # against the resource's token index values.
    code: tuple[str, str] | None = None
    # The period of data it is narrowed to (``provision.dataPeriod``), a closed range; either
    # end may be open.
    data_from: datetime | None = None
    data_to: datetime | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    @property
    def sealed(self) -> bool:
        return self.item is not None and self.decision == "deny"

    def in_force(self, now: datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= now) and (
            self.ends_at is None or now < self.ends_at
        )

    def covers_type(self, resource_type: str) -> bool:
        """Whether a resource of this type is what this directive is about."""
        return self.resource_class is None or self.resource_class == resource_type

    def covers_code(
        self, tokens: AbstractSet[tuple[str, str | None, str | None]], *, indexed: bool = True
    ) -> bool:
        """Whether data whose token index holds ``tokens`` ((parameter, system, code)) is what
        this directive is about by its code (always, when it names none). ``indexed`` False:
        the resource's tokens are not known (a past version, or a deleted resource): a deny
        applies and a permit does not, so not knowing shows less, never more."""
        if self.code is None:
            return True
        if not indexed:
            return self.decision == "deny"
        return any((system, code) == self.code for _, system, code in tokens)

    @property
    def dated(self) -> bool:
        return self.data_from is not None or self.data_to is not None

    def covers_period(
        self, care_dates: Sequence[tuple[datetime, datetime]] | None, *, indexed: bool = True
    ) -> bool:
        """Whether data with these care dates (closed ranges; None for a type that records
        no care date) is what this directive is about by its period of data (always, when
        it names none). ``indexed`` False: the dates are not known (a past version, or a
        deleted resource). A deny covers data meeting the period and data of unknown date; a
        permit only data known to lie wholly within it."""
        if not self.dated:
            return True
        if care_dates is None:
            return False
        deny = self.decision == "deny"
        if not indexed or not care_dates:
            return deny
        start, end = self.data_from, self.data_to
        if deny:
            return any(
                (end is None or low <= end) and (start is None or high >= start)
                for low, high in care_dates
            )
        return all(
            (start is None or low >= start) and (end is None or high <= end)
            for low, high in care_dates
        )

    def covers(self, sensitivity: AbstractSet[str], security: AbstractSet[str]) -> bool:
        """Whether data with these stored categories and ``meta.security`` codes is what
        this directive is about (always, when it names no label)."""
        return label_covers(self.label, sensitivity, security)


def specificity(item: str | None, *named: object) -> int:
    """A directive's level: 3 for an item; else one for each other thing it names (a source,
    a recipient, a label, a purpose, a type, a code, a period: ``named``, None where it names
    none), never above 3, so nothing outranks an item."""
    return 3 if item else min(sum(n is not None for n in named), 3)


def label_covers(
    label: str | None, sensitivity: AbstractSet[str], security: AbstractSet[str]
) -> bool:
    """A directive's ``label`` applies to data with these stored categories and security
    codes: no label applies to everything; a confidentiality code to data at least that
    confidential; a category to data stored with it."""
    if label is None:
        return True
    at_least = CONFIDENTIALITY_AT_LEAST.get(label)
    if at_least is not None:
        return not at_least.isdisjoint(security)
    return label in sensitivity


def _as_map(value: object) -> Mapping[str, object]:
    return cast(Mapping[str, object], value) if isinstance(value, Mapping) else {}


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _codes(concept: object) -> set[str]:
    return {
        str(coding.get("code"))
        for coding in (_as_map(c) for c in _as_list(_as_map(concept).get("coding")))
        if coding.get("code")
    }


def is_privacy_consent(consent: Mapping[str, object]) -> bool:
    return "patient-privacy" in _codes(consent.get("scope"))


def directives_from_consent(
    consent: Mapping[str, object],
    *,
    patient_id: str,
    resolve_organisation: OrganisationResolver,
    parse_instant: Callable[[str, bool], datetime],
    value_sets: ValueSets | None = None,
    resource_types: AbstractSet[str] | None = None,
) -> list[Directive]:
    """The directives a Consent records for ``patient_id`` (none unless active privacy).

    ``resource_types``: the types a ``provision.class`` may name (those the store keeps).
    ``parse_instant(text, end)`` turns a FHIR dateTime into the start (``end`` False) or the
    end (True) of the period it denotes. Raises DirectiveError for what cannot be enforced
    (an actor that is neither an organisation nor a role, an unknown actor role, a provision
    without a type, a security label ``value_sets`` do not define), so a choice is never
    recorded as something it is not.
    """
    if consent.get("status") != "active" or not is_privacy_consent(consent):
        return []
    top = _as_map(consent.get("provision"))
    if not top:
        raise DirectiveError("A privacy Consent needs a provision saying deny or permit")
    found: list[Directive] = []
    labels = _Vocabulary(value_sets or default_value_sets(), resource_types)
    _walk(
        top, patient_id, None, None, resolve_organisation, parse_instant, labels, found, "provision"
    )
    return found


class _Vocabulary:
    """What the codes a provision names are checked against: the value sets, and the
    resource types the store keeps (any, when not given)."""

    def __init__(self, value_sets: ValueSets, resource_types: AbstractSet[str] | None) -> None:
        self.value_sets = value_sets
        self.resource_types = resource_types

    def of(self, coding: Mapping[str, object], where: str) -> str:
        """The label a ``provision.securityLabel`` Coding names, as directives store it."""
        system, code = coding.get("system"), coding.get("code")
        if not isinstance(system, str) or not isinstance(code, str) or not code:
            raise DirectiveError(f"{where} must be a Coding with a system and a code")
        if system in _CONFIDENTIALITY_SYSTEMS:
            if code in CONFIDENTIALITY_AT_LEAST:
                return code
            raise DirectiveError(
                f"{where}: confidentiality '{code}' names no data this service keeps apart; "
                "use R or V, or record the choice without a label"
            )
        category = category_of_label(system, code, self.value_sets)
        if category is None:
            raise DirectiveError(
                f"{where}: {system}|{code} is not a sensitivity label this service knows"
            )
        return category


def _walk(
    provision: Mapping[str, object],
    patient_id: str,
    inherited_start: datetime | None,
    inherited_end: datetime | None,
    resolve: OrganisationResolver,
    parse_instant: Callable[[str, bool], datetime],
    labels: _Vocabulary,
    out: list[Directive],
    where: str,
) -> None:
    decision = provision.get("type")
    if decision not in ("deny", "permit"):
        raise DirectiveError(f"{where}.type must be deny or permit")
    for i, action in enumerate(_as_list(provision.get("action"))):
        _governed_action(_as_map(action), f"{where}.action[{i}]")
    period = _as_map(provision.get("period"))
    start = parse_instant(str(period["start"]), False) if period.get("start") else inherited_start
    end = parse_instant(str(period["end"]), True) if period.get("end") else inherited_end
    recipient_orgs: list[str] = []
    recipient_roles: list[str] = []
    sources: list[str | None] = []
    for i, raw_actor in enumerate(_as_list(provision.get("actor"))):
        actor = _as_map(raw_actor)
        roles = _codes(actor.get("role"))
        reference = _as_map(actor.get("reference"))
        organisation, role = _actor(reference, resolve, f"{where}.actor[{i}]")
        if roles & RECIPIENT_ROLES:
            if organisation:
                recipient_orgs.append(organisation)
            else:
                recipient_roles.append(str(role))
        elif roles & SOURCE_ROLES:
            if not organisation:
                raise DirectiveError(f"{where}.actor[{i}]: a custodian must be an organisation")
            sources.append(organisation)
        else:
            raise DirectiveError(f"{where}.actor[{i}].role must be IRCP or CST")
    items: list[str | None] = [
        _item(_as_map(d), f"{where}.data[{i}]")
        for i, d in enumerate(_as_list(provision.get("data")))
    ]
    recipients: list[tuple[str | None, str | None]] = [(o, None) for o in recipient_orgs] + [
        (None, r) for r in recipient_roles
    ] or [(None, None)]
    named_labels: list[str | None] = list(
        dict.fromkeys(
            labels.of(_as_map(c), f"{where}.securityLabel[{i}]")
            for i, c in enumerate(_as_list(provision.get("securityLabel")))
        )
    )
    if items and named_labels:
        raise DirectiveError(
            f"{where}: name items (data) or security labels, not both, in one provision"
        )
    purposes: list[str | None] = list(
        dict.fromkeys(
            _purpose(_as_map(c), f"{where}.purpose[{i}]")
            for i, c in enumerate(_as_list(provision.get("purpose")))
        )
    )
    classes: list[str | None] = list(
        dict.fromkeys(
            _resource_class(_as_map(c), f"{where}.class[{i}]", labels.resource_types)
            for i, c in enumerate(_as_list(provision.get("class")))
        )
    )
    codes: list[tuple[str, str] | None] = list(
        dict.fromkeys(
            coded
            for i, concept in enumerate(_as_list(provision.get("code")))
            for coded in _coded(_as_map(concept), f"{where}.code[{i}]")
        )
    )
    data_period = _as_map(provision.get("dataPeriod"))
    data_from = (
        parse_instant(str(data_period["start"]), False) if data_period.get("start") else None
    )
    data_to = parse_instant(str(data_period["end"]), True) if data_period.get("end") else None
    if "dataPeriod" in provision and data_from is None and data_to is None:
        raise DirectiveError(f"{where}.dataPeriod must have a start or an end")
    if data_from is not None and data_to is not None and data_to < data_from:
        raise DirectiveError(f"{where}.dataPeriod ends before it starts")
    dated = data_from is not None or data_to is not None
    if items and dated:
        raise DirectiveError(
            f"{where}: an item (data) is sealed or permitted whatever its date; name items or "
            "a dataPeriod, not both, in one provision"
        )
    if items and codes:
        raise DirectiveError(
            f"{where}: an item (data) is already the most specific thing a choice can name; "
            "name items or codes, not both, in one provision"
        )
    if items and classes:
        raise DirectiveError(
            f"{where}: an item (data) already names its type; name items or classes, not both"
        )
    if items and purposes:
        raise DirectiveError(
            f"{where}: an item (data) is sealed or permitted for every purpose; name items or "
            "purposes, not both, in one provision"
        )
    # One directive for each combination of what the provision names (each list stands for
    # "any of these"; an empty one for "not narrowed by this").
    for source, (organisation, role), item, label, purpose, resource_class, code in product(
        sources or [None],
        recipients,
        items or [None],
        named_labels or [None],
        purposes or [None],
        classes or [None],
        codes or [None],
    ):
        out.append(
            Directive(
                patient_id=patient_id,
                decision=str(decision),
                level=specificity(
                    item,
                    source,
                    organisation or role,
                    label,
                    purpose,
                    resource_class,
                    code,
                    data_from or data_to,
                ),
                recipient_organisation=organisation,
                recipient_role=role,
                source_organisation=source,
                item=item,
                label=label,
                purpose=purpose,
                resource_class=resource_class,
                code=code,
                data_from=data_from,
                data_to=data_to,
                starts_at=start,
                ends_at=end,
            )
        )
    for i, nested in enumerate(_as_list(provision.get("provision"))):
        _walk(
            _as_map(nested),
            patient_id,
            start,
            end,
            resolve,
            parse_instant,
            labels,
            out,
            f"{where}.provision[{i}]",
        )


def _resource_class(
    coding: Mapping[str, object], where: str, known_types: AbstractSet[str] | None
) -> str:
    """The resource type a ``provision.class`` Coding names."""
    system, code = coding.get("system"), coding.get("code")
    if system != RESOURCE_TYPES or not isinstance(code, str) or not code:
        raise DirectiveError(
            f"{where}: only resource types ({RESOURCE_TYPES}) can narrow a choice here"
        )
    if known_types is not None and code not in known_types:
        raise DirectiveError(f"{where}: {code} is not a resource type this service keeps")
    return code


def _coded(concept: Mapping[str, object], where: str) -> list[tuple[str, str]]:
    """The (system, code) pairs a ``provision.code`` CodeableConcept names (its codings are
    one concept's translations: data carrying any of them)."""
    codings = [_as_map(c) for c in _as_list(concept.get("coding"))]
    if not codings:
        raise DirectiveError(
            f"{where} must hold a Coding (a system and a code): text alone cannot be matched"
        )
    found = []
    for j, coding in enumerate(codings):
        system, code = coding.get("system"), coding.get("code")
        if not isinstance(system, str) or not system or not isinstance(code, str) or not code:
            raise DirectiveError(f"{where}.coding[{j}] must be a Coding with a system and a code")
        if len(system) > 255 or len(code) > 255:
            raise DirectiveError(f"{where}.coding[{j}] is longer than any indexed code")
        found.append((system, code))
    return found


def _governed_action(concept: Mapping[str, object], where: str) -> None:
    """Refuses a ``provision.action`` that names something other than what directives
    govern (access, use, disclose)."""
    codes = {
        str(coding.get("code"))
        for coding in (_as_map(c) for c in _as_list(concept.get("coding")))
        if coding.get("system") == CONSENT_ACTION and coding.get("code")
    }
    if not codes or not codes <= GOVERNED_ACTIONS:
        raise DirectiveError(
            f"{where}: only the actions {', '.join(sorted(GOVERNED_ACTIONS))} "
            f"({CONSENT_ACTION}) are governed here; record a choice about what others may see"
        )


def _purpose(coding: Mapping[str, object], where: str) -> str:
    """The purpose of use a ``provision.purpose`` Coding names."""
    system, code = coding.get("system"), coding.get("code")
    if not isinstance(system, str) or not isinstance(code, str) or not code:
        raise DirectiveError(f"{where} must be a Coding with a system and a code")
    if code not in PURPOSES.get(system, frozenset()):
        known = ", ".join(sorted(c for codes in PURPOSES.values() for c in codes))
        raise DirectiveError(
            f"{where}: {system}|{code} is not a purpose of use callers declare here ({known})"
        )
    return code


_ITEM = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]+)?$")


def _item(data: Mapping[str, object], where: str) -> str:
    """The ``Type/id`` a ``provision.data`` entry names: a relative or absolute reference,
    with or without a version (an item is sealed whole, every version)."""
    reference = _as_map(data.get("reference")).get("reference")
    if not isinstance(reference, str) or not reference:
        raise DirectiveError(f"{where}.reference must be a literal reference to the item")
    found = _ITEM.search(reference)
    if found is None:
        raise DirectiveError(f"{where}.reference '{reference}' does not name a resource")
    return f"{found.group(1)}/{found.group(2)}"


def _actor(
    reference: Mapping[str, object], resolve: OrganisationResolver, where: str
) -> tuple[str | None, str | None]:
    """(ODS code, None) for an organisation; (None, role code) for a role."""
    identifier = _as_map(reference.get("identifier"))
    system, value = identifier.get("system"), identifier.get("value")
    if system == ODS_SYSTEM and isinstance(value, str) and value:
        return value, None
    if system == ROLE_SYSTEM and isinstance(value, str) and value:
        return None, value
    literal = reference.get("reference")
    if isinstance(literal, str) and literal.startswith("Organization/"):
        ods = resolve(literal)
        if ods:
            return ods, None
        raise DirectiveError(f"{where}: {literal} is not an organisation known here")
    raise DirectiveError(
        f"{where}.reference must be an Organization (ODS identifier or reference) or a role"
    )

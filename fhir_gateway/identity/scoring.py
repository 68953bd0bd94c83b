"""Comparing two people's demographics, in the Fellegi-Sunter tradition, plus the rules that
NHS numbers impose.

Each field is compared into one of a few *levels* (exact, nickname, typo, different...). Each
level has ``m`` (how often it is seen when the records are the same person) and ``u`` (how
often between two different people who share a blocking key); its weight is ``log2(m/u)``.
The sum of the weights plus the prior is the match weight; ``2**w / (1 + 2**w)`` is the
match probability. A missing value on either side contributes nothing.

On top of the score, the rules of the NHS number (``decide``):

- the same **verified** NHS number links with certainty (assurance level4), unless birth
  date or sex conflict (a baby carrying a parent's number): then review;
- two **different verified** NHS numbers are two people: never an automatic link; if the
  demographics would otherwise link, a human reviews it (numbers are re-issued, for example
  on adoption, precisely to separate identities);
- **twins** (same birth date, same family name and address, given names that are not the
  same name) never link automatically, however high the rest of the score; with first
  names that are simply different (not a nickname, a typing error or a shared initial) they
  are two people, not even a review; first names that the nickname data relates but that
  are each common as a first name in their own right (Amelia and Emily, Charles and
  Charlie: ``own_names``) count as different names here, so a link is at most a review;
- **birth dates that differ beyond a typing error**, with no NHS number agreeing, are two
  people (a parent and a child, two household members of one name), not a review; with the
  same NHS number they are a review (a number on the wrong record).

The ``m``/``u`` values below are priors set from how English GP, hospital and social care
records differ (typing errors, nicknames, moves, marriage); they are data, and
``MatchModel`` takes others (estimated, for example, by expectation maximisation).

**Term frequencies.** Exact agreement on a family or first name is weighed by how common the
name is among the records being matched (``NameCounts``): ``u`` for "both are Smith" is the
share of records that are Smith, not the field's average. The share is smoothed towards the
level's ``u`` (``tf_prior_records`` pseudo-records, so a small index says little) and the
weight moves at most ``tf_max_boost`` bits above and ``tf_max_penalty`` bits below the
level's own weight (a name seen once in a million is not proof of identity).
"""

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Literal

from nicknames import NickNamer
from rapidfuzz.distance import OSA, JaroWinkler

from fhir_gateway.identity.demographics import Demographics, postcode_sector

Decision = Literal["link", "review", "no-link"]

# field -> level -> (m, u)
DEFAULT_LEVELS: Mapping[str, Mapping[str, tuple[float, float]]] = {
    "nhs_number": {
        "exact": (0.97, 1e-7),
        "different": (0.03, 0.9999),
    },
    "family_name": {
        "exact": (0.86, 0.004),
        "other_name": (0.07, 0.002),  # maiden, old or hyphen part matches
        "similar": (0.04, 0.004),  # Jaro-Winkler >= 0.92
        "different": (0.03, 0.99),
    },
    "given_name": {
        "exact": (0.90, 0.01),
        "nickname": (0.04, 0.002),
        "similar": (0.03, 0.005),  # Jaro-Winkler >= 0.90
        "initial": (0.01, 0.05),
        "different": (0.02, 0.933),
    },
    "birth_date": {
        "exact": (0.95, 0.0002),
        "typo": (0.035, 0.003),  # day and month swapped, one digit wrong, two swapped
        "year_month": (0.005, 0.01),
        "different": (0.01, 0.9868),
    },
    "sex": {
        "same": (0.985, 0.5),
        "different": (0.015, 0.5),
    },
    "postcode": {
        "exact": (0.78, 0.002),
        "sector": (0.07, 0.02),
        "different": (0.15, 0.978),
    },
    "phone": {
        "exact": (0.55, 0.0005),
        "different": (0.45, 0.9995),
    },
}


@dataclass(frozen=True, slots=True)
class MatchModel:
    levels: Mapping[str, Mapping[str, tuple[float, float]]] = field(
        default_factory=lambda: DEFAULT_LEVELS
    )
    # The prior: how likely two records sharing a blocking key are the same person.
    prior: float = 0.001
    # At or above: link automatically. 9, not 12, since names are weighed by their frequency
    # (2026-12-06): on the tuning seed (population version 3, seed 1, 100,000 people) the
    # highest threshold whose F1 was no worse than 12's before the adjustment (0.9950): 0.9954,
    # precision 0.9990 (was 0.9971). At 12 the adjustment gave precision 0.9998 but recall
    # 0.9820: true pairs of a common name, no NHS number and a new address weigh 8 to 12.
    link_weight: float = 9.0
    # At or above (and below link_weight): a human reviews. 7, not 4: on the tuning seed of
    # the accuracy benchmark, reviews weighing 4 to 7 (two records of one common name, birth
    # dates a typing error apart, different addresses) were right 1.6 % of the time.
    review_weight: float = 7.0
    # Term-frequency adjustment of exact agreement on these fields (``NameCounts``).
    tf_fields: tuple[str, ...] = ("family_name", "given_name")
    # The prior's weight in the name's share, in records: the share used is
    # (records with the name + tf_prior_records * u) / (records + tf_prior_records).
    tf_prior_records: float = 1000.0
    # How much of the adjustment applies (Splink's ``tf_adjustment_weight``): 1 weighs an
    # agreeing name by its share alone, 0 by the field's average ``u`` alone.
    tf_strength: float = 1.0
    tf_max_boost: float = 3.0  # bits a rare name may add to the level's weight, at most
    tf_max_penalty: float = 8.0  # bits a common name may take from it, at most

    def weight(self, field_name: str, level: str) -> float:
        m, u = self.levels[field_name][level]
        return math.log2(m / u)

    @property
    def prior_weight(self) -> float:
        return math.log2(self.prior / (1 - self.prior))

    def tf_weight(self, field_name: str, count: int, total: int) -> tuple[float, float]:
        """The weight of exact agreement on a value ``count`` of ``total`` records carry,
        and the (smoothed) share of records used as its ``u``."""
        m, u = self.levels[field_name]["exact"]
        share = (count + self.tf_prior_records * u) / (total + self.tf_prior_records)
        adjustment = self.tf_strength * math.log2(u / share)
        adjustment = max(-self.tf_max_penalty, min(self.tf_max_boost, adjustment))
        return math.log2(m / u) + adjustment, share


DEFAULT_MODEL = MatchModel()


@dataclass(frozen=True, slots=True)
class FieldEvidence:
    field: str
    level: str
    weight: float
    # Exact agreement on a name, adjusted for how common it is: the share of records with
    # that name used as ``u`` (smoothed; see ``MatchModel.tf_weight``). None otherwise.
    frequency: float | None = None

    def as_json(self) -> dict[str, object]:
        """The evidence as kept with a review (the frequency only where names were weighed
        by it)."""
        data: dict[str, object] = {"field": self.field, "level": self.level, "weight": self.weight}
        if self.frequency is not None:
            data["frequency"] = float(f"{self.frequency:.4g}")
        return data


# The normalised value of each term-frequency field, as counted and compared for "exact".
TF_VALUE = {"family_name": "family", "given_name": "given"}


def name_values(features: "Demographics") -> list[tuple[str, str]]:
    """(field, normalised value) of each term-frequency field ``features`` has."""
    return [
        (name, v) for name, attribute in TF_VALUE.items() if (v := getattr(features, attribute))
    ]


class NameCounts:
    """How many records of the index (or of the population being linked) carry each
    normalised family name and first name: the data term-frequency adjustment needs.

    ``counts`` maps (field, value) to records; ``totals`` maps a field to the records that
    have it at all. The batch linker counts every record it links; matching one record reads
    the counts identity keeps with its index (``identity_name_count``)."""

    __slots__ = ("_evidence", "counts", "totals")

    def __init__(self, counts: Mapping[tuple[str, str], int], totals: Mapping[str, int]):
        self.counts = dict(counts)
        self.totals = dict(totals)
        self._evidence: dict[tuple[str, str], tuple[MatchModel, FieldEvidence]] = {}

    @classmethod
    def of(cls, people: "Iterable[Demographics]") -> "NameCounts":
        counts: dict[tuple[str, str], int] = defaultdict(int)
        totals: dict[str, int] = defaultdict(int)
        for person in people:
            for name, value in name_values(person):
                counts[name, value] += 1
                totals[name] += 1
        return cls(counts, totals)

    def evidence(self, model: MatchModel, field_name: str, value: str) -> FieldEvidence:
        """Exact agreement on ``value``, weighed by its frequency."""
        cached = self._evidence.get((field_name, value))
        if cached is not None and cached[0] is model:
            return cached[1]
        weight, share = model.tf_weight(
            field_name, self.counts.get((field_name, value), 0), self.totals.get(field_name, 0)
        )
        found = FieldEvidence(field_name, "exact", weight, share)
        self._evidence[field_name, value] = (model, found)
        return found


@dataclass(frozen=True, slots=True)
class Match:
    decision: Decision
    weight: float
    probability: float
    assurance: str | None  # level1..level4 for a link, None otherwise
    evidence: tuple[FieldEvidence, ...]
    reasons: tuple[str, ...] = ()

    @property
    def grade(self) -> str:
        """The FHIR ``match-grade`` for ``Patient/$match``."""
        if self.decision == "link":
            return "certain" if self.assurance == "level4" else "probable"
        if self.decision == "review":
            return "possible"
        return "certainly-not"


_nicknames = NickNamer()

# The evidence of every level, per model (its weight ``log2(m/u)`` computed once, not once a
# comparison). Keyed by the identity of the model's levels, which are kept alive here so
# that the identity is never reused.
_EVIDENCE: dict[int, tuple[object, dict[str, dict[str, "FieldEvidence"]]]] = {}


def _evidence_table(model: MatchModel) -> dict[str, dict[str, "FieldEvidence"]]:
    cached = _EVIDENCE.get(id(model.levels))
    if cached is not None and cached[0] is model.levels:
        return cached[1]
    if len(_EVIDENCE) > 64:
        _EVIDENCE.clear()
    table = {
        name: {level: FieldEvidence(name, level, model.weight(name, level)) for level in levels}
        for name, levels in model.levels.items()
    }
    _EVIDENCE[id(model.levels)] = (model.levels, table)
    return table


@lru_cache(maxsize=1 << 16)
def _nickname_of(a: str, b: str) -> bool:
    """One is a short form of the other (Bill, William), or both are short forms of one
    name (Bill, Will). The data set also lists some full names as "canonical" forms of other
    full names through a shared short form (Robert and William both give Bill): a shared
    canonical counts only when it is the fuller name of the two."""
    if b in _nicknames.nicknames_of(a) or a in _nicknames.nicknames_of(b):
        return True
    size_a, size_b = len(_nicknames.nicknames_of(a)), len(_nicknames.nicknames_of(b))
    return any(
        len(_nicknames.nicknames_of(c)) > max(size_a, size_b)
        for c in _nicknames.canonicals_of(a) & _nicknames.canonicals_of(b)
    )


def compare_nhs(a: Demographics, b: Demographics) -> str | None:
    if a.nhs is None or b.nhs is None:
        return None
    return "exact" if a.nhs.value == b.nhs.value else "different"


FAMILY_SIMILAR = 0.92  # Jaro-Winkler similarity from which family names are "similar"


def compare_family(a: Demographics, b: Demographics) -> str | None:
    if a.family is None or b.family is None:
        return None
    if a.family == b.family:
        return "exact"
    if a.family_names & b.family_names:
        return "other_name"
    if JaroWinkler.similarity(a.family, b.family) >= FAMILY_SIMILAR:
        return "similar"
    return "different"


def _one_edit(a: str, b: str) -> bool:
    """One letter wrong, missing or extra, or two adjacent letters swapped, in a name of three
    letters or more: a typing error that Jaro-Winkler misses in short names (Leo, Lo)."""
    return max(len(a), len(b)) >= 3 and OSA.distance(a, b, score_cutoff=1) <= 1


def compare_given(a: Demographics, b: Demographics) -> str | None:
    if a.given is None or b.given is None:
        return None
    if a.given == b.given:
        return "exact"
    if (a.given_names & b.given_names) or any(
        _nickname_of(x, y) for x in a.given_names for y in b.given_names
    ):
        return "nickname"
    if JaroWinkler.similarity(a.given, b.given) >= 0.90 or _one_edit(a.given, b.given):
        return "similar"
    if a.given[0] == b.given[0]:
        return "initial"
    return "different"


@lru_cache(maxsize=1 << 16)
def _digits(day: date) -> str:
    return day.strftime("%Y%m%d")


def _date_typo(a: date, b: date) -> bool:
    if a.year == b.year and a.month == b.day and a.day == b.month:
        return True
    # Optimal string alignment: one wrong, missing or extra digit, or two adjacent swapped.
    return OSA.distance(_digits(a), _digits(b), score_cutoff=1) == 1


def compare_birth_date(a: Demographics, b: Demographics) -> str | None:
    if a.birth_date is None or b.birth_date is None:
        return None
    if a.birth_date == b.birth_date:
        return "exact"
    if _date_typo(a.birth_date, b.birth_date):
        return "typo"
    if (a.birth_date.year, a.birth_date.month) == (b.birth_date.year, b.birth_date.month):
        return "year_month"
    return "different"


def compare_sex(a: Demographics, b: Demographics) -> str | None:
    if a.sex is None or b.sex is None:
        return None
    return "same" if a.sex == b.sex else "different"


def compare_postcode(a: Demographics, b: Demographics) -> str | None:
    if not a.postcodes or not b.postcodes:
        return None
    # Any address either source knows: people move, and one source hears first.
    if any(p in b.postcodes for p in a.postcodes):
        return "exact"
    sectors = {postcode_sector(p) for p in b.postcodes}
    if any(postcode_sector(p) in sectors for p in a.postcodes):
        return "sector"
    return "different"


def compare_phone(a: Demographics, b: Demographics) -> str | None:
    if not a.phones or not b.phones:
        return None
    return "exact" if a.phones & b.phones else "different"


COMPARISONS = {
    "nhs_number": compare_nhs,
    "family_name": compare_family,
    "given_name": compare_given,
    "birth_date": compare_birth_date,
    "sex": compare_sex,
    "postcode": compare_postcode,
    "phone": compare_phone,
}


def score(
    a: Demographics,
    b: Demographics,
    model: MatchModel = DEFAULT_MODEL,
    names: NameCounts | None = None,
) -> tuple[float, tuple[FieldEvidence, ...]]:
    """The match weight of ``a`` against ``b`` and the evidence field by field; with
    ``names``, exact agreement on a name is weighed by how common the name is."""
    table = _evidence_table(model)
    evidence = []
    for name, compare in COMPARISONS.items():
        level = compare(a, b)
        if level is None:
            continue
        if names is not None and level == "exact" and name in model.tf_fields:
            evidence.append(names.evidence(model, name, getattr(a, TF_VALUE[name])))
        else:
            evidence.append(table[name][level])
    total = model.prior_weight + sum(e.weight for e in evidence)
    return total, tuple(evidence)


def _both_verified(a: Demographics, b: Demographics) -> bool:
    """Both records carry an NHS number the national index has verified."""
    return a.nhs is not None and b.nhs is not None and a.nhs.verified and b.nhs.verified


# Screening (``cannot_link``): the fields in the order they are looked at, the cheapest
# first (names, which need string similarity and the nickname data, last).
SCREEN_ORDER = ("nhs_number", "sex", "phone", "birth_date", "postcode", "family_name", "given_name")
# Below the review weight by more than this: no rounding of a sum of seven weights can
# bring the bound (or the weight ``score`` adds up in another order) back above it.
_SCREEN_MARGIN = 1e-9

# Per field of ``SCREEN_ORDER``: its name, its comparison, its levels' weights, whether exact
# agreement is weighed by the name's frequency, and the most the fields after it can add.
_ScreenStep = tuple[
    str, Callable[["Demographics", "Demographics"], str | None], dict[str, float], bool, float
]
_SCREENS: dict[int, tuple[MatchModel, float, float, tuple[_ScreenStep, ...]]] = {}


def screen_steps(model: MatchModel) -> tuple[float, float, tuple[_ScreenStep, ...]]:
    """(The prior's weight, the weight below which a pair is screened out, the steps), once
    per model. A field's best is its best level (exact agreement on a name at most its
    level's weight plus ``tf_max_boost``, the rarest name's), and nothing when it cannot be
    compared."""
    cached = _SCREENS.get(id(model))
    if cached is not None and cached[0] is model:
        return cached[1], cached[2], cached[3]
    table = _evidence_table(model)  # the weights ``score`` adds, to the last bit
    best = []
    for name in SCREEN_ORDER:
        top = max(model.weight(name, level) for level in model.levels[name])
        if name in model.tf_fields:
            top = max(top, model.weight(name, "exact") + model.tf_max_boost)
        best.append(max(0.0, top))
    steps = tuple(
        (
            name,
            COMPARISONS[name],
            {level: e.weight for level, e in table[name].items()},
            name in model.tf_fields,
            sum(best[k + 1 :]),
        )
        for k, name in enumerate(SCREEN_ORDER)
    )
    if len(_SCREENS) > 64:
        _SCREENS.clear()
    found = (model.prior_weight, model.review_weight - _SCREEN_MARGIN, steps)
    _SCREENS[id(model)] = (model, *found)
    return found


def cannot_link(
    a: Demographics,
    b: Demographics,
    model: MatchModel = DEFAULT_MODEL,
    names: NameCounts | None = None,
    *,
    compared: tuple[int, float] | None = None,
) -> bool:
    """True only when ``decide(a, b, model, names)`` is certainly "no-link", found without
    building its evidence: field by field, cheapest first, until even the best that the
    fields not yet compared could add leaves the weight below ``review_weight``. (Below it
    ``decide`` says no-link whatever its rules, which only ever lower a decision, except for
    one verified NHS number on both, never screened.) False says nothing: decide.

    ``compared``: how many fields of ``SCREEN_ORDER`` the caller has compared already and
    the weight they came to (the prior included), to go on from there (the batch linker
    compares the first fields of every pair at once: ``columns``)."""
    if _both_verified(a, b) and compare_nhs(a, b) == "exact":
        return False
    weight, floor, steps = screen_steps(model)
    if compared is not None:
        done, weight = compared
        steps = steps[done:]
    for name, compare, weights, by_frequency, after in steps:
        level = compare(a, b)
        if level is not None:
            if by_frequency and names is not None and level == "exact":
                weight += names.evidence(model, name, getattr(a, TF_VALUE[name])).weight
            else:
                weight += weights[level]
        if weight + after < floor:
            return True
    return False


def _probability(weight: float) -> float:
    if weight > 60:
        return 1.0
    odds: float = 2.0**weight
    return odds / (1 + odds)


def _levels(evidence: tuple[FieldEvidence, ...]) -> dict[str, str]:
    return {e.field: e.level for e in evidence}


def decide(
    a: Demographics,
    b: Demographics,
    model: MatchModel = DEFAULT_MODEL,
    names: NameCounts | None = None,
) -> Match:
    """Link, review or no link, with the evidence and the reasons for any rule applied
    (names weighed by their frequency in ``names`` when given)."""
    weight, evidence = score(a, b, model, names)
    levels = _levels(evidence)
    probability = _probability(weight)
    both_verified = _both_verified(a, b)
    conflicts = [f for f in ("birth_date", "sex") if levels.get(f) == "different"]

    if both_verified and levels.get("nhs_number") == "exact":
        if conflicts:
            return Match(
                "review",
                weight,
                probability,
                None,
                evidence,
                (f"same verified NHS number but {' and '.join(conflicts)} conflict",),
            )
        return Match("link", weight, probability, "level4", evidence, ("same verified NHS number",))

    decision: Decision = (
        "link"
        if weight >= model.link_weight
        else "review"
        if weight >= model.review_weight
        else "no-link"
    )
    reasons: list[str] = []
    two_people = _two_people(levels)
    if two_people is not None:
        return Match("no-link", weight, probability, None, evidence, (two_people,))
    if decision == "link" and _twins(levels):
        decision = "review"
        reasons.append("different first names and no agreeing NHS number (twins or a household?)")
    if decision == "link" and names is not None and _twin_names(a, b, levels, names):
        decision = "review"
        reasons.append(
            "first names related only as nicknames, each common in its own right, and no "
            "agreeing NHS number (twins?)"
        )
    if both_verified and levels.get("nhs_number") == "different":
        # Two people by the national index. Only demographics strong enough to link despite
        # the numbers disagreeing (a re-issued number?) are worth a human's time.
        if decision == "link":
            decision = "review"
            reasons.append("different verified NHS numbers: never linked automatically")
        else:
            decision = "no-link"
    if decision == "link" and levels.get("birth_date") == "different":
        # Birth dates that differ beyond a typing error with the same (unverified) NHS number:
        # a baby given a parent's number, a number on the wrong record. A human decides.
        # (Without an agreeing number they are two people: ``_two_people``.)
        decision = "review"
        reasons.append("birth dates differ by more than a typing error")
    if decision == "link" and levels.get("nhs_number") != "exact" and conflicts == ["sex"]:
        decision = "review"
        reasons.append("sex conflicts and no NHS number agrees")
    assurance = None
    if decision == "link":
        assurance = "level3" if levels.get("nhs_number") == "exact" else "level2"
    return Match(decision, weight, probability, assurance, evidence, tuple(reasons))


def _two_people(levels: Mapping[str, str]) -> str | None:
    """Why the records are two people whatever the rest of the score, if they are: not even
    worth a human's review. (Set from the review band of the tuning seed of the accuracy
    benchmark, where these pairs were hundreds of reviews with no true match among them.)"""
    if levels.get("nhs_number") != "exact" and levels.get("birth_date") == "different":
        # No number agrees and the birth dates differ beyond a typing error: a parent and a
        # child, or two members of a household, of one name at one address.
        return "birth dates differ beyond a typing error and no NHS number agrees"
    if (
        levels.get("nhs_number") != "exact"
        and levels.get("given_name") == "different"
        and levels.get("birth_date") in ("exact", "typo")
        and levels.get("family_name") in ("exact", "other_name", "similar")
    ):
        # Twins: one birth date, family and home, two first names that are not the same name.
        return "twins: one birth date and family, different first names"
    return None


OWN_NAME_SHARE = 0.15
"""Two first names that the nickname data relates are each a name in its own right when the
rarer is given at least this share as often as the other among the records matched: a short
form is rarely anyone's recorded first name (Bill is 3-5 % of William's count, Ollie of
Oliver's, in the synthetic populations; the highest such share seen was 9 %), while names
parents choose are common in their own right (Emily is about a fifth of Amelia's count,
Charles two fifths of Charlie's). Set on the tuning seed of the accuracy benchmark
(population version 3, seed 1, 100,000 people: every linked short-form pair below 0.10,
both linked twin pairs above 0.19)."""

OWN_NAME_SEEN = 20
"""Records a first name must be seen on before its count says anything (a new or small index
cannot tell a short form from a name)."""


def own_names(a: str, b: str, names: "NameCounts") -> bool:
    """``a`` and ``b`` (normalised first names) are each common as a first name in its own
    right among ``names``' records (``OWN_NAME_SHARE``), not a name and its short form."""
    count_a = names.counts.get(("given_name", a), 0)
    count_b = names.counts.get(("given_name", b), 0)
    if min(count_a, count_b) < OWN_NAME_SEEN:
        return False
    return min(count_a, count_b) >= OWN_NAME_SHARE * max(count_a, count_b)


@lru_cache(maxsize=1 << 14)
def nickname_forms(given: str) -> frozenset[str]:
    """Every first name the nickname data may relate to ``given`` (a superset of the names
    ``_nickname_of`` accepts): whose counts ``own_names`` needs, beside ``given``'s own, when
    one record is matched against the index."""
    forms = set(_nicknames.nicknames_of(given)) | set(_nicknames.canonicals_of(given))
    for canonical in _nicknames.canonicals_of(given):
        forms |= _nicknames.nicknames_of(canonical)
    forms.discard(given)
    return frozenset(forms)


def _twin_names(
    a: Demographics, b: Demographics, levels: Mapping[str, str], names: "NameCounts"
) -> bool:
    """Twins named as forms of one name in the nickname data (Amelia and Emily) but each a
    name in its own right: no agreeing NHS number, birth dates equal (or a typing error
    apart), first names that agree only through the nickname data, both common (``own_names``)."""
    if levels.get("nhs_number") == "exact" or levels.get("given_name") != "nickname":
        return False
    if levels.get("birth_date") not in ("exact", "typo"):
        return False
    if a.given is None or b.given is None or a.given_names & b.given_names:
        return False
    return own_names(a.given, b.given, names)


def _twins(levels: Mapping[str, str]) -> bool:
    """Twins, or siblings of one household: no agreeing NHS number, birth dates equal (or a
    typing error apart) and first names that share only an initial, whatever the family
    names (a twin who has married has another); or first names that are simply different."""
    if levels.get("nhs_number") == "exact":
        return False
    if levels.get("given_name") == "different":
        return True
    return (
        levels.get("birth_date") in ("exact", "typo")
        # "similar" (Jaro-Winkler >= 0.90) is left out: it is far more often a typing error
        # in one name than twins with near-identical names.
        and levels.get("given_name") == "initial"
    )

"""Case-finding cohorts kept as data: named boolean rules over the measures of an assessment.

A cohort file (``coordination/data/cohorts.json`` is the default) is::

    {"version": "1.0.0", "published": "2026-12-06", "notes": "...",
     "cohorts": [{"code": "frail-75-plus", "name": "...", "description": "...",
                  "rule": {"all": [{"age_at_least": 75},
                                   {"hfrs_band_in": ["intermediate", "high"]}]}}]}

A rule is one object with exactly one key: ``all`` or ``any`` (a non-empty list of rules),
``not`` (one rule), or a measure:

====================================  =======================================================
``age_at_least``: n                   age on ``as_of`` is n or more (unknown age: false)
``hfrs_band_in``: [bands]             HFRS band is one of these (not scored: false)
``charlson_at_least``: n              Charlson index is n or more
``ltc_count_at_least``: n             n or more long-term conditions
``emergency_admissions_at_least``: n  n or more emergency admissions in the window
``emergency_bed_days_at_least``: n    n or more emergency bed days in the window
``ae_attendances_at_least``: n        n or more A&E attendances in the window
``has_current_social_care_service``   true: has a social care service running on
: true/false                          ``as_of``; false: has none
====================================  =======================================================

Counts are whole numbers, 0 or more. A malformed file is refused whole when it is loaded,
with a ``CohortError`` naming the bad part. Pure: no I/O but reading the packaged default once.
"""

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Final, TypeAlias

from coordination.case_finding.rules import Assessment

BANDS: Final = ("low", "intermediate", "high")
COUNT_MEASURES: Final = frozenset(
    {
        "age_at_least",
        "charlson_at_least",
        "ltc_count_at_least",
        "emergency_admissions_at_least",
        "emergency_bed_days_at_least",
        "ae_attendances_at_least",
    }
)
MEASURES: Final = COUNT_MEASURES | {"hfrs_band_in", "has_current_social_care_service"}
MAX_DEPTH: Final = 20

_DOCUMENT_KEYS = frozenset({"version", "published", "notes", "cohorts"})
_COHORT_KEYS = frozenset({"code", "name", "description", "rule"})
_COHORT_CODE = re.compile(r"[a-z0-9][a-z0-9-]*")


class CohortError(ValueError):
    """A cohort rule file that cannot be used; the message names the bad part."""


@dataclass(frozen=True, slots=True)
class All:
    rules: tuple["Rule", ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    rules: tuple["Rule", ...]


@dataclass(frozen=True, slots=True)
class Not:
    rule: "Rule"


@dataclass(frozen=True, slots=True)
class Measure:
    """``name`` is one of ``MEASURES``; ``value`` an int for the counts, a frozenset of bands
    for ``hfrs_band_in``, a bool for ``has_current_social_care_service``."""

    name: str
    value: int | bool | frozenset[str]


Rule: TypeAlias = All | AnyOf | Not | Measure


@dataclass(frozen=True, slots=True)
class Cohort:
    code: str
    name: str
    description: str
    rule: Rule

    def matches(self, assessment: Assessment) -> bool:
        return evaluate(self.rule, assessment)


@dataclass(frozen=True, slots=True)
class CohortRules:
    """A validated cohort file; iterating it gives its cohorts in file order."""

    version: str
    cohorts: tuple[Cohort, ...]

    def __iter__(self) -> Iterator[Cohort]:
        return iter(self.cohorts)

    def cohort(self, code: str) -> Cohort:
        """The cohort with this code; ``KeyError`` if there is none."""
        for cohort in self.cohorts:
            if cohort.code == code:
                return cohort
        raise KeyError(code)


# --- evaluation ---------------------------------------------------------------------------


def _measure(measure: Measure, a: Assessment) -> bool:
    value = measure.value
    match measure.name:
        case "hfrs_band_in":
            assert isinstance(value, frozenset)
            return a.frailty is not None and a.frailty.band in value
        case "has_current_social_care_service":
            return bool(a.services) is value
    assert isinstance(value, int)
    if measure.name == "age_at_least":
        return a.age is not None and a.age >= value
    actual = {
        "charlson_at_least": a.charlson.index,
        "ltc_count_at_least": a.conditions.count,
        "emergency_admissions_at_least": a.emergency.emergency_admissions,
        "emergency_bed_days_at_least": a.emergency.emergency_bed_days,
        "ae_attendances_at_least": a.emergency.ae_attendances,
    }[measure.name]
    return actual >= value


def evaluate(rule: Rule, assessment: Assessment) -> bool:
    """Whether ``assessment`` satisfies ``rule``."""
    if isinstance(rule, All):
        return all(evaluate(r, assessment) for r in rule.rules)
    if isinstance(rule, AnyOf):
        return any(evaluate(r, assessment) for r in rule.rules)
    if isinstance(rule, Not):
        return not evaluate(rule.rule, assessment)
    return _measure(rule, assessment)


def matching_cohorts(assessment: Assessment, cohorts: Iterable[Cohort]) -> tuple[Cohort, ...]:
    """The cohorts ``assessment`` falls in, in the order given."""
    return tuple(cohort for cohort in cohorts if cohort.matches(assessment))


# --- parsing ------------------------------------------------------------------------------


def _fail(where: str, problem: str) -> CohortError:
    return CohortError(f"Cohort rules: {where}: {problem}")


def _text(entry: Mapping[str, object], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, f"'{key}' must be a non-empty string")
    return value


def _unknown(entry: Mapping[str, object], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(key) for key in entry if key not in allowed)
    if unknown:
        raise _fail(where, f"unknown field(s) {', '.join(unknown)}")


def _rule(raw: object, where: str, depth: int = 0) -> Rule:
    if depth > MAX_DEPTH:
        raise _fail(where, f"rules nest more than {MAX_DEPTH} deep")
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise _fail(
            where, "a rule must be an object with exactly one key (all, any, not or a measure)"
        )
    ((key, value),) = raw.items()
    at = f"{where}.{key}"
    if key in ("all", "any"):
        if not isinstance(value, list) or not value:
            raise _fail(at, "must be a non-empty list of rules")
        rules = tuple(_rule(item, f"{at}[{i}]", depth + 1) for i, item in enumerate(value))
        return All(rules) if key == "all" else AnyOf(rules)
    if key == "not":
        return Not(_rule(value, at, depth + 1))
    if key in COUNT_MEASURES:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(at, f"must be a whole number, 0 or more (got {value!r})")
        return Measure(key, value)
    if key == "hfrs_band_in":
        if not isinstance(value, list) or not value:
            raise _fail(at, f"must be a non-empty list of bands ({', '.join(BANDS)})")
        for band in value:
            if band not in BANDS:
                raise _fail(at, f"{band!r} is not a band ({', '.join(BANDS)})")
        return Measure(key, frozenset(value))
    if key == "has_current_social_care_service":
        if not isinstance(value, bool):
            raise _fail(at, f"must be true or false (got {value!r})")
        return Measure(key, value)
    known = ", ".join(["all", "any", "not", *sorted(MEASURES)])
    raise _fail(where, f"unknown rule or measure {key!r} (expected one of {known})")


def _cohort(entry: object, where: str) -> Cohort:
    if not isinstance(entry, Mapping):
        raise _fail(where, "must be an object")
    code = _text(entry, "code", where)
    if not _COHORT_CODE.fullmatch(code):
        raise _fail(where, f"code {code!r} must be lower case letters, digits and hyphens")
    where = f"{where} '{code}'"
    _unknown(entry, _COHORT_KEYS, where)
    name = _text(entry, "name", where)
    description = _text(entry, "description", where) if "description" in entry else ""
    if "rule" not in entry:
        raise _fail(where, "missing 'rule'")
    return Cohort(code, name, description, _rule(entry["rule"], f"{where}: rule"))


def parse_cohorts(document: object) -> CohortRules:
    """Validate a cohort document (see the module docstring); ``CohortError`` names the
    first bad part: an unknown field, rule or measure, a wrong value, a duplicate code."""
    if not isinstance(document, Mapping):
        raise _fail("document", "must be an object")
    _unknown(document, _DOCUMENT_KEYS, "document")
    version = _text(document, "version", "document")
    raw = document.get("cohorts")
    if not isinstance(raw, list) or not raw:
        raise _fail("document", "'cohorts' must be a non-empty list")
    cohorts: list[Cohort] = []
    for index, entry in enumerate(raw):
        cohort = _cohort(entry, f"cohorts[{index}]")
        if any(c.code == cohort.code for c in cohorts):
            raise _fail(f"cohorts[{index}]", f"duplicate cohort code {cohort.code!r}")
        cohorts.append(cohort)
    return CohortRules(version, tuple(cohorts))


def load_cohorts(text: str) -> CohortRules:
    """Parse and validate cohort rules from JSON text."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail("document", f"not valid JSON ({exc})") from None
    return parse_cohorts(document)


@cache
def default_cohorts() -> CohortRules:
    """The packaged default cohorts (``coordination/data/cohorts.json``), read once."""
    resource = files("coordination") / "data" / "cohorts.json"
    return load_cohorts(resource.read_text(encoding="utf-8"))

"""Case-finding (risk stratification) rules: pure scoring of one person's record.

The caller gathers a person's facts from the shared record (hospital and GP diagnoses,
inpatient stays, A&E attendances, social care services), each with where it came from, and
asks for an assessment on a given day (``as_of``). Nothing here reads the clock, the database
or the network; the only I/O is reading the packaged reference data
(``coordination/data``) once per process.

Measures (docs/case-finding.md has the exact rules and their sources):

- ``hfrs``: the Hospital Frailty Risk Score (Gilbert et al., Lancet 2018), for people aged 75
  and over only, from hospital ICD-10 diagnoses in the preceding 2 years.
- ``charlson``: the Charlson comorbidity index, Quan 2005 ICD-10 coding with Quan 2011
  weights, with the three hierarchies applied.
- ``long_term_conditions``: which of the QOF-register long-term conditions the record shows.
- ``emergency_use``: emergency admissions, emergency bed days and A&E attendances in the last
  12 months.
- ``current_services``: social care services running on ``as_of``.

``assess`` puts them together with the union of the sensitivity labels of every fact it
carries (a derived item carries every label of what it was derived from) and a ``need`` key
for ranking.
"""

import csv
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from importlib.resources import files
from types import MappingProxyType
from typing import Final, Literal, NamedTuple
from zoneinfo import ZoneInfo

from consent.labels import ICD10_SYSTEMS, SNOMED, is_concept_id, normalise_icd10

__all__ = [
    "CHARLSON_HIERARCHIES",
    "CHARLSON_NAMES",
    "EMERGENCY_ADMISSION_METHODS",
    "HFRS_MIN_AGE",
    "ICD10_SYSTEMS",
    "SNOMED",
    "Admission",
    "Assessment",
    "Attendance",
    "Band",
    "Charlson",
    "CharlsonCondition",
    "CharlsonWeights",
    "Conditions",
    "Contribution",
    "Diagnosis",
    "EmergencyUse",
    "Fact",
    "Frailty",
    "HierarchyStep",
    "LongTermCondition",
    "LongTermConditionList",
    "Need",
    "PersonRecord",
    "ScoringSettings",
    "Service",
    "admission_is_emergency",
    "age_on",
    "assess",
    "charlson",
    "charlson_conditions",
    "current_services",
    "emergency_use",
    "hfrs",
    "hfrs_band",
    "hfrs_weights",
    "icd10_category",
    "long_term_condition_list",
    "long_term_conditions",
    "parse_long_term_conditions",
    "rank",
    "years_before",
]

HFRS_MIN_AGE: Final = 75
LONDON: Final = ZoneInfo("Europe/London")

# NHS Data Dictionary ADMISSION METHOD. Emergency: 21-28 and 2A-2D; elective 11-13;
# maternity 31-32; other 81-83 (transfers and births, which are not emergency admissions).
EMERGENCY_ADMISSION_METHODS: Final = frozenset(
    {"21", "22", "23", "24", "25", "28", "2A", "2B", "2C", "2D"}
)
_OTHER_ADMISSION_METHODS: Final = frozenset({"11", "12", "13", "31", "32", "81", "82", "83"})

Band = Literal["low", "intermediate", "high"]
CharlsonWeights = Literal["quan2011", "charlson1987"]


# --- the facts ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fact:
    """Where a contributing fact came from, for explanations.

    ``reference`` is the FHIR reference of the item (``Condition/rh-1-e0-d1``);
    ``organisation`` the ODS code of its source; ``display`` a line for people to read;
    ``labels`` the sensitive-data category codes the item carries (``consent.labels``).
    """

    reference: str
    organisation: str
    date: date | None
    display: str
    labels: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """A coded diagnosis. ``system`` and ``code`` are as the source sent them: ICD-10 under any
    of ``ICD10_SYSTEMS`` (``F00.1``, ``F001``, ``F00X`` and ``f00.1`` are all understood), or a
    SNOMED CT concept id under ``SNOMED``. ``hospital`` says a hospital source recorded it
    (the Hospital Frailty Risk Score counts hospital diagnoses only). The diagnosis date is
    ``fact.date``."""

    system: str
    code: str
    hospital: bool
    fact: Fact


@dataclass(frozen=True, slots=True)
class Admission:
    """A hospital inpatient stay (an A&E attendance is an ``Attendance``). ``emergency`` is
    decided by the admission method (``admission_is_emergency``), never by encounter class;
    pass False when the method is unknown. ``end`` None: still in hospital."""

    start: datetime
    end: datetime | None
    emergency: bool
    fact: Fact


@dataclass(frozen=True, slots=True)
class Attendance:
    """An A&E attendance."""

    start: datetime
    fact: Fact


@dataclass(frozen=True, slots=True)
class Service:
    """A social care service from the council (an EpisodeOfCare or a ServiceRequest).
    ``end`` None: still running."""

    code: str | None
    display: str
    start: date | None
    end: date | None
    fact: Fact


@dataclass(frozen=True, slots=True)
class PersonRecord:
    person_id: str
    birth_date: date | None
    diagnoses: tuple[Diagnosis, ...] = ()
    admissions: tuple[Admission, ...] = ()
    attendances: tuple[Attendance, ...] = ()
    services: tuple[Service, ...] = ()


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one category, condition or count gave a measure, and the facts behind it.

    ``key`` is the category (``F00``), condition (``chf``, ``dementia``) or count
    (``emergency_admissions``); ``points`` what it added (an HFRS weight, a Charlson weight,
    1 for a long-term condition, the count itself for emergency use). ``facts`` are every fact
    found for it, in date order, even where the category counts once.
    """

    key: str
    display: str
    points: float
    facts: tuple[Fact, ...]


@dataclass(frozen=True, slots=True)
class Frailty:
    """The Hospital Frailty Risk Score: ``score`` (one decimal), ``band``, and one
    contribution per ICD-10 category counted (highest points first)."""

    score: float
    band: Band
    contributions: tuple[Contribution, ...]
    lookback_years: int
    undated_excluded: int = 0  # hospital ICD-10 diagnoses with no date, not counted


@dataclass(frozen=True, slots=True)
class HierarchyStep:
    """A Charlson condition left out because the more severe one it is ranked under is
    present: ``suppressed`` (with its facts, weight as it would have been) and ``by``."""

    suppressed: Contribution
    by: str


@dataclass(frozen=True, slots=True)
class Charlson:
    """The Charlson comorbidity index: ``index`` (sum of the counted conditions' weights),
    one contribution per condition counted (including conditions of weight 0 under the
    Quan 2011 weights), and the hierarchy steps applied."""

    index: int
    contributions: tuple[Contribution, ...]
    hierarchy_applied: tuple[HierarchyStep, ...]
    weights: CharlsonWeights
    lookback_years: int
    undated_excluded: int = 0


@dataclass(frozen=True, slots=True)
class Conditions:
    """Long-term conditions: ``count``, ``codes`` (which, in list order) and one
    contribution (1 point) per condition."""

    count: int
    codes: tuple[str, ...]
    contributions: tuple[Contribution, ...]


@dataclass(frozen=True, slots=True)
class EmergencyUse:
    """Emergency use in the window ``[window_start, as_of]`` (``months`` long).

    ``emergency_admissions``: stays that began as emergencies, starting in the window.
    ``emergency_bed_days``: nights in hospital within the window of stays that began as
    emergencies (whenever they began; a stay still open counts to ``as_of``).
    ``ae_attendances``: A&E attendances starting in the window.
    """

    months: int
    window_start: date
    emergency_admissions: int
    emergency_bed_days: int
    ae_attendances: int
    contributions: tuple[Contribution, ...]


class Need(NamedTuple):
    """How much a person may need coordination, compared field by field: a larger tuple is
    greater need. ``rank`` orders people by it (ties: person id).

    1. ``frailty_band``: HFRS band, high 2, intermediate 1, low or not scored 0;
    2. ``emergency_admissions`` in the window;
    3. ``charlson_index``;
    4. ``ltc_count``;
    5. ``emergency_bed_days`` in the window;
    6. ``ae_attendances`` in the window;
    7. ``hfrs_tenths``: the HFRS in tenths (0 when not scored), to order within a band.
    """

    frailty_band: int
    emergency_admissions: int
    charlson_index: int
    ltc_count: int
    emergency_bed_days: int
    ae_attendances: int
    hfrs_tenths: int


@dataclass(frozen=True, slots=True)
class ScoringSettings:
    """The choices ``assess`` makes (the names match ``coordination.settings``)."""

    hfrs_lookback_years: int = 2
    charlson_lookback_years: int = 2
    charlson_weights: CharlsonWeights = "quan2011"
    charlson_hospital_only: bool = False
    emergency_months: int = 12


@dataclass(frozen=True, slots=True)
class Assessment:
    """Every measure for one person on ``as_of``.

    ``frailty`` is None when the person is under 75 or their age is unknown: not scored,
    which is not the same as low. ``labels`` is the union of the labels of every fact the
    assessment carries (contributions, hierarchy steps, current services).
    """

    person_id: str
    as_of: date
    age: int | None
    frailty: Frailty | None
    charlson: Charlson
    conditions: Conditions
    emergency: EmergencyUse
    services: tuple[Service, ...]
    labels: frozenset[str]
    need: Need


# --- dates --------------------------------------------------------------------------------


def _check_as_of(as_of: date) -> None:
    # datetime is a date too; comparing one with a date raises, and which day an aware
    # datetime falls on is a time-zone question the caller should answer.
    if isinstance(as_of, datetime) or not isinstance(as_of, date):
        raise TypeError(f"as_of must be a date, not {type(as_of).__name__}")


def age_on(birth_date: date, as_of: date) -> int:
    """Age in completed years on ``as_of``. Someone born on 29 February turns a year older
    on 1 March in a common year. ``ValueError`` if ``as_of`` is before the birth."""
    _check_as_of(as_of)
    if as_of < birth_date:
        raise ValueError(f"as_of {as_of} is before the birth date {birth_date}")
    before_birthday = (as_of.month, as_of.day) < (birth_date.month, birth_date.day)
    return as_of.year - birth_date.year - before_birthday


def _months_before(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    following = date(year + (month == 12), month % 12 + 1, 1)
    last = (following - timedelta(days=1)).day
    return date(year, month, min(day.day, last))


def years_before(day: date, years: int) -> date:
    """The same calendar day ``years`` earlier (28 February for 29 February in a common
    year): the first day of a lookback of ``years`` ending on ``day``."""
    return _months_before(day, 12 * years)


def _local_date(moment: datetime) -> date:
    """The calendar day in England of a time (naive times are taken as local)."""
    if moment.tzinfo is None:
        return moment.date()
    return moment.astimezone(LONDON).date()


def _in_window(day: date | None, start: date, as_of: date) -> bool:
    return day is not None and start <= day <= as_of


def _fact_order(fact: Fact) -> tuple[date, str]:
    return (fact.date or date.min, fact.reference)


def _facts(facts: Iterable[Fact]) -> tuple[Fact, ...]:
    return tuple(sorted(set(facts), key=_fact_order))


# --- packaged reference data --------------------------------------------------------------


def _read_data(name: str) -> str:
    return (files("coordination") / "data" / name).read_text(encoding="utf-8")


_HFRS_PREFIX = re.compile(r"[A-Z][0-9]{2}")
_TENTHS = re.compile(r"([0-9]+)\.([0-9])")
_CHARLSON_PREFIX = re.compile(r"[A-Z][0-9]{2,3}")

CHARLSON_NAMES: Final = MappingProxyType(
    {
        "mi": "Myocardial infarction",
        "chf": "Congestive heart failure",
        "pvd": "Peripheral vascular disease",
        "cevd": "Cerebrovascular disease",
        "dementia": "Dementia",
        "cpd": "Chronic pulmonary disease",
        "rheumd": "Rheumatic disease",
        "pud": "Peptic ulcer disease",
        "mld": "Mild liver disease",
        "diab": "Diabetes without chronic complications",
        "diabwc": "Diabetes with chronic complications",
        "hp": "Hemiplegia or paraplegia",
        "rend": "Renal disease",
        "canc": "Any malignancy, including lymphoma and leukaemia, except malignant neoplasm of skin",
        "msld": "Moderate or severe liver disease",
        "metacanc": "Metastatic solid tumour",
        "aids": "AIDS/HIV",
    }
)
# (milder, more severe): only the more severe counts when both are present.
CHARLSON_HIERARCHIES: Final = (("mld", "msld"), ("diab", "diabwc"), ("canc", "metacanc"))


@dataclass(frozen=True, slots=True)
class CharlsonCondition:
    code: str
    name: str
    prefixes: tuple[str, ...]
    charlson1987_weight: int
    quan2011_weight: int

    def weight(self, weights: CharlsonWeights) -> int:
        return self.quan2011_weight if weights == "quan2011" else self.charlson1987_weight


@cache
def hfrs_weights() -> Mapping[str, int]:
    """ICD-10 three-character category -> HFRS points in tenths (``F00`` -> 71), from
    ``coordination/data/hfrs_weights.csv`` (Gilbert et al. 2018), read once."""
    rows = csv.DictReader(_read_data("hfrs_weights.csv").splitlines())
    if rows.fieldnames != ["icd10_prefix", "weight"]:
        raise ValueError(f"hfrs_weights.csv: unexpected header {rows.fieldnames}")
    weights: dict[str, int] = {}
    for line, row in enumerate(rows, 2):
        prefix, weight = row["icd10_prefix"], row["weight"]
        match = _TENTHS.fullmatch(weight or "")
        if not _HFRS_PREFIX.fullmatch(prefix or "") or match is None or prefix in weights:
            raise ValueError(f"hfrs_weights.csv line {line}: bad or repeated row {row}")
        weights[prefix] = int(match.group(1)) * 10 + int(match.group(2))
    return MappingProxyType(weights)


@cache
def charlson_conditions() -> tuple[CharlsonCondition, ...]:
    """The 17 Charlson conditions with their Quan 2005 ICD-10 prefixes and both sets of
    weights, from ``coordination/data/charlson_quan2005_icd10.csv``, read once."""
    text = _read_data("charlson_quan2005_icd10.csv")
    rows = csv.DictReader(text.splitlines())
    expected = ["condition", "icd10_prefix", "charlson1987_weight", "quan2011_weight"]
    if rows.fieldnames != expected:
        raise ValueError(f"charlson_quan2005_icd10.csv: unexpected header {rows.fieldnames}")
    prefixes: dict[str, list[str]] = {}
    weights: dict[str, tuple[int, int]] = {}
    seen: set[str] = set()
    for line, row in enumerate(rows, 2):
        condition, prefix = row["condition"], row["icd10_prefix"]
        where = f"charlson_quan2005_icd10.csv line {line}"
        if condition not in CHARLSON_NAMES:
            raise ValueError(f"{where}: unknown condition {condition!r}")
        if not _CHARLSON_PREFIX.fullmatch(prefix or "") or prefix in seen:
            raise ValueError(f"{where}: bad or repeated prefix {prefix!r}")
        try:
            pair = (int(row["charlson1987_weight"]), int(row["quan2011_weight"]))
        except ValueError:
            raise ValueError(f"{where}: weights must be whole numbers") from None
        if weights.setdefault(condition, pair) != pair:
            raise ValueError(f"{where}: weights differ from the condition's earlier rows")
        seen.add(prefix)
        prefixes.setdefault(condition, []).append(prefix)
    missing = sorted(set(CHARLSON_NAMES) - set(prefixes))
    if missing:
        raise ValueError(f"charlson_quan2005_icd10.csv: no rows for {', '.join(missing)}")
    return tuple(
        CharlsonCondition(code, CHARLSON_NAMES[code], tuple(prefixes[code]), *weights[code])
        for code in CHARLSON_NAMES
    )


@cache
def _charlson_index() -> Mapping[str, str]:
    return MappingProxyType(
        {prefix: c.code for c in charlson_conditions() for prefix in c.prefixes}
    )


# --- long-term conditions (data) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LongTermCondition:
    code: str
    title: str
    qof_register: str
    snomed: frozenset[str]
    icd10_prefixes: tuple[str, ...]  # normalised: no dot, upper case


@dataclass(frozen=True, slots=True)
class LongTermConditionList:
    version: str
    conditions: tuple[LongTermCondition, ...]
    _snomed: Mapping[str, tuple[str, ...]] = field(repr=False, compare=False)
    _icd10: Mapping[str, tuple[str, ...]] = field(repr=False, compare=False)


_LTC_DOCUMENT_KEYS = frozenset({"version", "published", "source", "notes", "conditions"})
_LTC_KEYS = frozenset({"code", "title", "qof_register", "notes", "snomed", "icd10_prefixes"})
_LTC_CODE = re.compile(r"[a-z][a-z0-9_]*")
_ICD10_ENTRY = re.compile(r"([A-Z][0-9]{2})(?:\.?([0-9]))?")
_ICD10_RANGE = re.compile(r"([A-Z])([0-9]{2})-([A-Z])([0-9]{2})")


def _ltc_fail(where: str, problem: str) -> ValueError:
    return ValueError(f"Long-term condition list: {where}: {problem}")


def _text_field(entry: Mapping[str, object], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _ltc_fail(where, f"'{key}' must be a non-empty string")
    return value


def _unknown(entry: Mapping[str, object], allowed: AbstractSet[str], where: str) -> None:
    unknown = sorted(str(key) for key in entry if key not in allowed)
    if unknown:
        raise _ltc_fail(where, f"unknown field(s) {', '.join(unknown)}")


def _list_of_objects(
    entry: Mapping[str, object], key: str, where: str
) -> Sequence[Mapping[str, object]]:
    value = entry.get(key)
    if not isinstance(value, list):
        raise _ltc_fail(where, f"'{key}' must be a list")
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise _ltc_fail(f"{where}: {key}[{index}]", "must be an object")
    return value


def _icd10_entry(raw: str, at: str) -> list[str]:
    text = "".join(raw.split()).upper()
    single = _ICD10_ENTRY.fullmatch(text)
    if single is not None:
        return [single.group(1) + (single.group(2) or "")]
    span = _ICD10_RANGE.fullmatch(text)
    if span is None or span.group(1) != span.group(3) or span.group(2) >= span.group(4):
        raise _ltc_fail(at, f"malformed ICD-10 prefix or range '{raw}' (e.g. I48, N18.3, C00-C43)")
    letter = span.group(1)
    return [f"{letter}{n:02d}" for n in range(int(span.group(2)), int(span.group(4)) + 1)]


def _ltc(entry: Mapping[str, object], where: str) -> LongTermCondition:
    _unknown(entry, _LTC_KEYS, where)
    code = _text_field(entry, "code", where)
    if not _LTC_CODE.fullmatch(code):
        raise _ltc_fail(where, f"code '{code}' must be lower case letters, digits and _")
    where = f"{where} '{code}'"
    title = _text_field(entry, "title", where)
    register = _text_field(entry, "qof_register", where)
    if "notes" in entry:
        _text_field(entry, "notes", where)
    snomed: set[str] = set()
    for index, item in enumerate(_list_of_objects(entry, "snomed", where)):
        at = f"{where}: snomed[{index}]"
        _unknown(item, {"code", "display"}, at)
        sctid = _text_field(item, "code", at)
        _text_field(item, "display", at)
        if not is_concept_id(sctid):
            raise _ltc_fail(at, f"'{sctid}' is not a valid SNOMED CT concept id")
        if sctid in snomed:
            raise _ltc_fail(at, f"duplicate code {sctid}")
        snomed.add(sctid)
    prefixes: list[str] = []
    for index, item in enumerate(_list_of_objects(entry, "icd10_prefixes", where)):
        at = f"{where}: icd10_prefixes[{index}]"
        _unknown(item, {"prefix", "display"}, at)
        raw = _text_field(item, "prefix", at)
        _text_field(item, "display", at)
        for prefix in _icd10_entry(raw, at):
            if prefix in prefixes:
                raise _ltc_fail(at, f"duplicate ICD-10 prefix {prefix}")
            prefixes.append(prefix)
    for prefix in prefixes:
        if any(prefix[:n] in prefixes for n in range(3, len(prefix))):
            raise _ltc_fail(where, f"ICD-10 prefix {prefix} is already covered by a shorter one")
    if not snomed and not prefixes:
        raise _ltc_fail(where, "needs at least one SNOMED CT code or ICD-10 prefix")
    return LongTermCondition(code, title, register, frozenset(snomed), tuple(prefixes))


def parse_long_term_conditions(document: object) -> LongTermConditionList:
    """Validate a long-term condition list (``{"version", "published", "source", "notes",
    "conditions": [{"code", "title", "qof_register", "notes"?, "snomed": [{"code",
    "display"}], "icd10_prefixes": [{"prefix", "display"}]}]}``). ICD-10 prefixes are WHO
    three- or four-character codes (``N18.3`` or ``N183``) or a range of three-character
    categories (``C00-C43``). ``ValueError`` names the bad entry."""
    if not isinstance(document, Mapping):
        raise _ltc_fail("document", "must be an object")
    _unknown(document, _LTC_DOCUMENT_KEYS, "document")
    version = _text_field(document, "version", "document")
    for key in ("published", "source", "notes"):
        _text_field(document, key, "document")
    conditions: list[LongTermCondition] = []
    for index, entry in enumerate(_list_of_objects(document, "conditions", "document")):
        condition = _ltc(entry, f"conditions[{index}]")
        if any(c.code == condition.code for c in conditions):
            raise _ltc_fail(f"conditions[{index}]", f"duplicate condition '{condition.code}'")
        conditions.append(condition)
    if not conditions:
        raise _ltc_fail("document", "'conditions' must not be empty")
    snomed: dict[str, list[str]] = {}
    icd10: dict[str, list[str]] = {}
    for condition in conditions:
        for sctid in condition.snomed:
            snomed.setdefault(sctid, []).append(condition.code)
        for prefix in condition.icd10_prefixes:
            icd10.setdefault(prefix, []).append(condition.code)
    return LongTermConditionList(
        version,
        tuple(conditions),
        MappingProxyType({k: tuple(v) for k, v in snomed.items()}),
        MappingProxyType({k: tuple(v) for k, v in icd10.items()}),
    )


@cache
def long_term_condition_list() -> LongTermConditionList:
    """The packaged list (``coordination/data/long_term_conditions.json``), read once."""
    return parse_long_term_conditions(json.loads(_read_data("long_term_conditions.json")))


# --- scoring ------------------------------------------------------------------------------


def admission_is_emergency(method_code: str | None) -> bool | None:
    """Whether an NHS Data Dictionary ADMISSION METHOD code is an emergency admission:
    True for 21-25, 28 and 2A-2D; False for elective (11-13), maternity (31-32) and other
    (81-83) methods; None when the code is missing or not one of these."""
    if method_code is None:
        return None
    code = method_code.strip().upper()
    if code in EMERGENCY_ADMISSION_METHODS:
        return True
    if code in _OTHER_ADMISSION_METHODS:
        return False
    return None


def icd10_category(code: str) -> str | None:
    """The three-character ICD-10 category of a code as sent (``F00.1``, ``F001`` and
    ``F00X`` are all ``F00``), or None when it is not an ICD-10 code."""
    head = normalise_icd10(code)
    return head[:3] if head is not None else None


def hfrs_band(score_tenths: int) -> Band:
    """Bands of Gilbert et al.: low < 5, intermediate 5 to 15 inclusive, high > 15."""
    if score_tenths < 50:
        return "low"
    return "intermediate" if score_tenths <= 150 else "high"


def _icd10_in_window(
    diagnoses: Iterable[Diagnosis], start: date, as_of: date, *, hospital_only: bool
) -> tuple[list[tuple[str, Diagnosis]], int]:
    """(normalised code, diagnosis) for each ICD-10 diagnosis dated in ``[start, as_of]``,
    and how many were left out for having no date."""
    found: list[tuple[str, Diagnosis]] = []
    undated = 0
    for diagnosis in diagnoses:
        if diagnosis.system not in ICD10_SYSTEMS or (hospital_only and not diagnosis.hospital):
            continue
        head = normalise_icd10(diagnosis.code)
        if head is None:
            continue
        if diagnosis.fact.date is None:
            undated += 1
        elif _in_window(diagnosis.fact.date, start, as_of):
            found.append((head, diagnosis))
    return found, undated


def _age(record: PersonRecord, as_of: date) -> int | None:
    if record.birth_date is None or record.birth_date > as_of:
        return None
    return age_on(record.birth_date, as_of)


def _frailty(record: PersonRecord, as_of: date, lookback_years: int) -> Frailty:
    weights = hfrs_weights()
    found, undated = _icd10_in_window(
        record.diagnoses, years_before(as_of, lookback_years), as_of, hospital_only=True
    )
    by_category: dict[str, list[Diagnosis]] = {}
    for head, diagnosis in found:
        if head[:3] in weights:
            by_category.setdefault(head[:3], []).append(diagnosis)
    tenths = sum(weights[category] for category in by_category)
    contributions = sorted(
        (
            Contribution(
                category,
                _category_display(category, found_in),
                weights[category] / 10,
                _facts(d.fact for d in found_in),
            )
            for category, found_in in by_category.items()
        ),
        key=lambda c: (-c.points, c.key),
    )
    return Frailty(tenths / 10, hfrs_band(tenths), tuple(contributions), lookback_years, undated)


def _category_display(category: str, diagnoses: Sequence[Diagnosis]) -> str:
    first = min(diagnoses, key=lambda d: _fact_order(d.fact))
    return f"{category} (from {first.fact.display})"


def hfrs(record: PersonRecord, *, as_of: date, lookback_years: int = 2) -> Frailty | None:
    """The Hospital Frailty Risk Score on ``as_of``, or None when the person is under 75 or
    their age is unknown (not scored: never "low").

    Counts every hospital ICD-10 diagnosis dated in the ``lookback_years`` before ``as_of``
    (from the same day ``lookback_years`` earlier, inclusive, to ``as_of``); undated ones
    are not counted (``undated_excluded`` says how many). Each three-character category
    scores once however often it is recorded.
    """
    _check_as_of(as_of)
    if lookback_years < 1:
        raise ValueError("lookback_years must be at least 1")
    age = _age(record, as_of)
    if age is None or age < HFRS_MIN_AGE:
        return None
    return _frailty(record, as_of, lookback_years)


def charlson(
    record: PersonRecord,
    *,
    as_of: date,
    lookback_years: int = 2,
    weights: CharlsonWeights = "quan2011",
    hospital_only: bool = False,
) -> Charlson:
    """The Charlson comorbidity index on ``as_of``.

    Counts ICD-10 diagnoses (from any source, or hospital ones only with ``hospital_only``)
    dated in the ``lookback_years`` before ``as_of``; undated ones are not counted. A code
    belongs to a condition when its normalised form (no dot, upper case: ``I25.2`` ->
    ``I252``) starts with one of the condition's Quan 2005 prefixes. Each condition counts
    once; when both levels of a hierarchy are present only the more severe counts (moderate
    or severe liver disease over mild; diabetes with complications over without; metastatic
    solid tumour over any malignancy). Weights: Quan 2011 (default) or Charlson 1987.
    """
    _check_as_of(as_of)
    if lookback_years < 1:
        raise ValueError("lookback_years must be at least 1")
    if weights not in ("quan2011", "charlson1987"):
        raise ValueError(f"unknown Charlson weights {weights!r}")
    index = _charlson_index()
    found, undated = _icd10_in_window(
        record.diagnoses, years_before(as_of, lookback_years), as_of, hospital_only=hospital_only
    )
    by_condition: dict[str, list[Fact]] = {}
    for head, diagnosis in found:
        for length in range(3, len(head) + 1):
            condition = index.get(head[:length])
            if condition is not None:
                by_condition.setdefault(condition, []).append(diagnosis.fact)
    conditions = {c.code: c for c in charlson_conditions()}

    def contribution(code: str) -> Contribution:
        c = conditions[code]
        return Contribution(code, c.name, c.weight(weights), _facts(by_condition[code]))

    steps = tuple(
        HierarchyStep(contribution(milder), severe)
        for milder, severe in CHARLSON_HIERARCHIES
        if milder in by_condition and severe in by_condition
    )
    suppressed = {step.suppressed.key for step in steps}
    counted = tuple(
        contribution(code) for code in conditions if code in by_condition and code not in suppressed
    )
    total = sum(conditions[c.key].weight(weights) for c in counted)
    return Charlson(total, counted, steps, weights, lookback_years, undated)


def long_term_conditions(
    record: PersonRecord, *, as_of: date, conditions: LongTermConditionList | None = None
) -> Conditions:
    """Which long-term conditions the record shows on ``as_of``: SNOMED CT concepts matched
    exactly on code, ICD-10 codes by prefix on the normalised code, from any source and any
    date up to ``as_of`` (undated ones count: a long-term condition has no lookback). Each
    condition counts once. ``conditions`` defaults to the packaged list."""
    _check_as_of(as_of)
    ltc = conditions if conditions is not None else long_term_condition_list()
    found: dict[str, list[Fact]] = {}
    for diagnosis in record.diagnoses:
        if diagnosis.fact.date is not None and diagnosis.fact.date > as_of:
            continue
        codes: Iterable[str] = ()
        if diagnosis.system == SNOMED:
            codes = ltc._snomed.get(diagnosis.code.strip(), ())
        elif diagnosis.system in ICD10_SYSTEMS:
            head = normalise_icd10(diagnosis.code)
            if head is not None:
                codes = [
                    code for n in range(3, len(head) + 1) for code in ltc._icd10.get(head[:n], ())
                ]
        for code in codes:
            found.setdefault(code, []).append(diagnosis.fact)
    contributions = tuple(
        Contribution(c.code, c.title, 1, _facts(found[c.code]))
        for c in ltc.conditions
        if c.code in found
    )
    return Conditions(len(contributions), tuple(c.key for c in contributions), contributions)


def emergency_use(record: PersonRecord, *, as_of: date, months: int = 12) -> EmergencyUse:
    """Emergency use in the ``months`` before ``as_of`` (from the same day ``months``
    earlier, inclusive, to ``as_of``).

    Emergency admissions: stays with ``emergency`` True that began in the window.
    Emergency bed days: for every stay that began as an emergency, the nights it spent in
    hospital within the window (discharge day minus admission day, each clipped to the
    window; a stay still open counts to ``as_of``; a same-day stay is 0).
    A&E attendances: attendances that began in the window. Days are calendar days in England.
    """
    _check_as_of(as_of)
    if months < 1:
        raise ValueError("months must be at least 1")
    start = _months_before(as_of, months)
    admitted: list[Fact] = []
    bed_day_facts: list[Fact] = []
    bed_days = 0
    for stay in record.admissions:
        if not stay.emergency:
            continue
        first = _local_date(stay.start)
        if first > as_of:
            continue
        if first >= start:
            admitted.append(stay.fact)
        last = as_of if stay.end is None else min(_local_date(stay.end), as_of)
        nights = (last - max(first, start)).days
        if nights > 0:
            bed_days += nights
            bed_day_facts.append(stay.fact)
    attended = [
        a.fact for a in record.attendances if _in_window(_local_date(a.start), start, as_of)
    ]
    contributions = tuple(
        Contribution(key, display, count, _facts(facts))
        for key, display, count, facts in (
            ("emergency_admissions", "Emergency admissions", len(admitted), admitted),
            ("emergency_bed_days", "Emergency bed days", bed_days, bed_day_facts),
            ("ae_attendances", "A&E attendances", len(attended), attended),
        )
        if count
    )
    return EmergencyUse(months, start, len(admitted), bed_days, len(attended), contributions)


def current_services(record: PersonRecord, *, as_of: date) -> tuple[Service, ...]:
    """Social care services running on ``as_of``: started on or before it (or no start
    given) and not ended before it (``end`` None, or on or after ``as_of``)."""
    _check_as_of(as_of)
    running = (
        s
        for s in record.services
        if (s.start is None or s.start <= as_of) and (s.end is None or s.end >= as_of)
    )
    return tuple(
        sorted(running, key=lambda s: (s.start or date.min, s.code or "", s.fact.reference))
    )


_BAND_RANK: Final = MappingProxyType({"low": 0, "intermediate": 1, "high": 2})


def assess(
    record: PersonRecord, *, as_of: date, settings: ScoringSettings = ScoringSettings()
) -> Assessment:
    """Every measure for one person on ``as_of``, with the union of the labels of every fact
    carried and the ``need`` key. A birth date after ``as_of`` is treated as unknown."""
    _check_as_of(as_of)
    frailty = hfrs(record, as_of=as_of, lookback_years=settings.hfrs_lookback_years)
    comorbidity = charlson(
        record,
        as_of=as_of,
        lookback_years=settings.charlson_lookback_years,
        weights=settings.charlson_weights,
        hospital_only=settings.charlson_hospital_only,
    )
    ltc = long_term_conditions(record, as_of=as_of)
    emergency = emergency_use(record, as_of=as_of, months=settings.emergency_months)
    services = current_services(record, as_of=as_of)
    contributions = [
        *(frailty.contributions if frailty is not None else ()),
        *comorbidity.contributions,
        *(step.suppressed for step in comorbidity.hierarchy_applied),
        *ltc.contributions,
        *emergency.contributions,
    ]
    facts = [fact for c in contributions for fact in c.facts]
    facts.extend(s.fact for s in services)
    labels = frozenset[str]().union(*(fact.labels for fact in facts))
    need = Need(
        frailty_band=_BAND_RANK[frailty.band] if frailty is not None else 0,
        emergency_admissions=emergency.emergency_admissions,
        charlson_index=comorbidity.index,
        ltc_count=ltc.count,
        emergency_bed_days=emergency.emergency_bed_days,
        ae_attendances=emergency.ae_attendances,
        hfrs_tenths=round(frailty.score * 10) if frailty is not None else 0,
    )
    return Assessment(
        person_id=record.person_id,
        as_of=as_of,
        age=_age(record, as_of),
        frailty=frailty,
        charlson=comorbidity,
        conditions=ltc,
        emergency=emergency,
        services=services,
        labels=labels,
        need=need,
    )


def rank(assessments: Iterable[Assessment]) -> tuple[Assessment, ...]:
    """Assessments in order of need, greatest first (``Need``, field by field); ties by
    person id, so the order is the same every time."""
    return tuple(
        sorted(assessments, key=lambda a: (tuple(-value for value in a.need), a.person_id))
    )

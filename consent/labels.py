"""Sensitive-data labels, computed when a resource is written (pure).

A resource is sensitive when any Coding anywhere in it names a concept of a sensitive
category (HIV, sexual health, termination of pregnancy, fertility, gender identity,
safeguarding, mental health detail, substance misuse), or when its source already labelled
it. The categories are value sets kept as data (``consent/data/sensitive_categories.json``,
documented in docs/sensitive-data.md), versioned so that a change to a list is a new
version and stored resources can be labelled again.

Labels are computed once, at write time, and stored with the resource in ``meta.security``:
one confidentiality code (HL7 v3 Confidentiality R or V, the highest the categories ask
for) and each category's sensitivity code (HL7 DS4P v3 ActCode where one fits). The source's
clinical codes are never changed, and a label the source sent is never removed or lowered:
a source knows things about its record that its codes may not say.

Pure: no I/O except reading the packaged value-set document, and nothing of the gateway.
"""

import json
import re
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib.resources import files
from types import MappingProxyType
from typing import Final, Literal, cast

SNOMED: Final = "http://snomed.info/sct"
DMD: Final = "https://dmd.nhs.uk"
# WHO ICD-10 as English hospitals send it. UK Core names the first two; older CareConnect
# feeds used the third. ICD-10-CM is deliberately absent: its codes below the three-character
# category differ from WHO's, so prefixes written for WHO ICD-10 would mislabel them.
ICD10_SYSTEMS: Final = frozenset(
    {
        "http://hl7.org/fhir/sid/icd-10",
        "http://hl7.org/fhir/sid/icd-10-uk",
        "https://fhir.hl7.org.uk/Id/icd10",
    }
)
CONFIDENTIALITY: Final = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT_CODE: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CAREJOIN_SENSITIVITY: Final = "https://fhir.carejoin.example/CodeSystem/sensitivity"

# Sources built on STU3 still send the pre-R4 URIs of the v3 code systems; a label is the
# same label whichever URI carries it.
_SYSTEM_ALIASES: Final = MappingProxyType(
    {
        "http://hl7.org/fhir/v3/Confidentiality": CONFIDENTIALITY,
        "http://hl7.org/fhir/v3/ActCode": ACT_CODE,
    }
)

Confidentiality = Literal["R", "V"]
# HL7 v3 Confidentiality, lowest to highest. Only R and V are ever set here, but a source
# may send any of them and the ranking decides which one stands.
_RANK: Final = MappingProxyType({"U": 0, "L": 1, "M": 2, "N": 3, "R": 4, "V": 5})
_CONFIDENTIALITY_DISPLAY: Final = MappingProxyType({"R": "restricted", "V": "very restricted"})

_SCTID = re.compile(r"[1-9][0-9]{5,17}")
_ICD10_PREFIX = re.compile(r"([A-Z][0-9]{2})\.?([0-9]{1,2})?")
# The leading letter and digits of a compacted ICD-10 code: whatever follows (the X or '-'
# fillers and the D/A dagger and asterisk marks hospital systems append) is not part of it.
_ICD10_HEAD = re.compile(r"[A-Z][0-9]{2,5}")
_CATEGORY_CODE = re.compile(r"[a-z][a-z0-9_]*")

_KIND_SCTID: Final = 1
_KIND_ICD10: Final = 2
# SNOMED CT and dm+d share one identifier space (dm+d products are concepts of the SNOMED
# CT UK drug extension), and GP systems send dm+d codes under either system URI.
_SYSTEM_KIND: Final = MappingProxyType(
    {SNOMED: _KIND_SCTID, DMD: _KIND_SCTID} | dict.fromkeys(ICD10_SYSTEMS, _KIND_ICD10)
)


@dataclass(frozen=True, slots=True)
class SensitiveCategory:
    """One sensitive-data category and the concepts that put a resource in it.

    ``icd10_prefixes`` are normalised (no dot: ``O987``); ``snomed`` and ``dmd`` hold SNOMED
    CT identifiers. ``other_codings`` are exact ``(system, code)`` pairs from other code
    systems; ``recognised_labels`` are security labels other than the category's own DS4P
    code that mean the same category when a source sends them.
    """

    code: str
    title: str
    confidentiality: Confidentiality
    ds4p_system: str
    ds4p_code: str
    ds4p_display: str = ""
    description: str = ""
    snomed: frozenset[str] = frozenset()
    icd10_prefixes: tuple[str, ...] = ()
    dmd: frozenset[str] = frozenset()
    other_codings: frozenset[tuple[str, str]] = frozenset()
    recognised_labels: frozenset[tuple[str, str]] = frozenset()
    sources: tuple[str, ...] = ()


def _frozen_index(index: Mapping[str, set[str]]) -> Mapping[str, frozenset[str]]:
    return MappingProxyType({key: frozenset(value) for key, value in index.items()})


@dataclass(frozen=True, slots=True)
class ValueSets:
    """A version of the sensitive-data value sets, with lookups precomputed for ``classify``.

    Raises ``ValueError`` when two categories share a code or when a security label would
    mean two categories, since either would make labelling ambiguous.
    """

    version: str
    categories: tuple[SensitiveCategory, ...]
    published: date | None = None
    _by_code: Mapping[str, SensitiveCategory] = field(init=False, repr=False, compare=False)
    _sctids: Mapping[str, frozenset[str]] = field(init=False, repr=False, compare=False)
    _icd10: Mapping[str, frozenset[str]] = field(init=False, repr=False, compare=False)
    _other: Mapping[tuple[str, str], frozenset[str]] = field(init=False, repr=False, compare=False)
    _labels: Mapping[tuple[str, str], str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_code: dict[str, SensitiveCategory] = {}
        sctids: dict[str, set[str]] = {}
        icd10: dict[str, set[str]] = {}
        other: dict[tuple[str, str], set[str]] = {}
        labels: dict[tuple[str, str], str] = {}
        for category in self.categories:
            if category.code in by_code:
                raise ValueError(f"Duplicate sensitive-data category '{category.code}'")
            by_code[category.code] = category
            for sctid in category.snomed | category.dmd:
                sctids.setdefault(sctid, set()).add(category.code)
            for prefix in category.icd10_prefixes:
                icd10.setdefault(prefix, set()).add(category.code)
            for coding in category.other_codings:
                other.setdefault(coding, set()).add(category.code)
            own = (_canonical_system(category.ds4p_system), category.ds4p_code)
            for system, code in {own, *category.recognised_labels}:
                label = (_canonical_system(system), code)
                if labels.setdefault(label, category.code) != category.code:
                    raise ValueError(
                        f"Security label {label[0]}|{label[1]} would mean both "
                        f"'{labels[label]}' and '{category.code}'"
                    )
        object.__setattr__(self, "_by_code", MappingProxyType(by_code))
        object.__setattr__(self, "_sctids", _frozen_index(sctids))
        object.__setattr__(self, "_icd10", _frozen_index(icd10))
        object.__setattr__(
            self,
            "_other",
            MappingProxyType({key: frozenset(value) for key, value in other.items()}),
        )
        object.__setattr__(self, "_labels", MappingProxyType(labels))

    def category(self, code: str) -> SensitiveCategory:
        """The category with this code; ``KeyError`` if there is none."""
        return self._by_code[code]


def _canonical_system(system: str) -> str:
    return _SYSTEM_ALIASES.get(system, system)


# --- the value-set document ------------------------------------------------------------


_DOCUMENT_KEYS = frozenset({"version", "published", "description", "categories"})
_CATEGORY_KEYS = frozenset(
    {
        "code",
        "title",
        "description",
        "confidentiality",
        "ds4p",
        "sources",
        "checked",
        "snomed",
        "icd10_prefixes",
        "dmd",
        "other_codings",
        "recognised_labels",
    }
)
_REQUIRED_CATEGORY_KEYS = frozenset(
    {"code", "title", "description", "confidentiality", "ds4p", "sources"}
)

# Verhoeff tables: every SNOMED CT identifier (and so every dm+d identifier) ends in a
# Verhoeff check digit, so a mistyped code in a value set is caught when it is loaded rather
# than silently never matching.
_VERHOEFF_D: Final = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P: Final = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)
# The partition identifier (second and third digits from the right): 00 for an
# international concept, 10 for a concept of a national extension such as the UK's.
_CONCEPT_PARTITIONS: Final = frozenset({"00", "10"})


def is_concept_id(code: str) -> bool:
    """Whether ``code`` is a well-formed SNOMED CT concept identifier.

    Checks the form (6 to 18 digits, no leading zero), the partition identifier (a concept,
    international or extension) and the Verhoeff check digit. It cannot tell whether the
    concept exists or what it means.
    """
    if not _SCTID.fullmatch(code) or code[-3:-1] not in _CONCEPT_PARTITIONS:
        return False
    check = 0
    for position, digit in enumerate(reversed(code)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[position % 8][int(digit)]]
    return check == 0


def _fail(where: str, problem: str) -> ValueError:
    return ValueError(f"Sensitive-data value sets: {where}: {problem}")


def _text(entry: Mapping[str, object], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, f"'{key}' must be a non-empty string")
    return value


def _entries(entry: Mapping[str, object], key: str, where: str) -> list[Mapping[str, object]]:
    value = entry.get(key, [])
    if not isinstance(value, list):
        raise _fail(where, f"'{key}' must be a list")
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise _fail(f"{where}: {key}[{index}]", "must be an object")
    return value


def _check_keys(entry: Mapping[str, object], allowed: AbstractSet[str], where: str) -> None:
    unknown = sorted(str(key) for key in entry if key not in allowed)
    if unknown:
        raise _fail(where, f"unknown field(s) {', '.join(unknown)}")


def _concept_ids(entry: Mapping[str, object], key: str, where: str) -> frozenset[str]:
    codes: set[str] = set()
    for index, item in enumerate(_entries(entry, key, where)):
        at = f"{where}: {key}[{index}]"
        _check_keys(item, {"code", "display"}, at)
        code = _text(item, "code", at)
        _text(item, "display", at)
        if not is_concept_id(code):
            raise _fail(at, f"'{code}' is not a valid SNOMED CT concept id (form or check digit)")
        if code in codes:
            raise _fail(at, f"duplicate code {code}")
        codes.add(code)
    return frozenset(codes)


def _icd10_prefixes(entry: Mapping[str, object], where: str) -> tuple[str, ...]:
    prefixes: list[str] = []
    for index, item in enumerate(_entries(entry, "icd10_prefixes", where)):
        at = f"{where}: icd10_prefixes[{index}]"
        _check_keys(item, {"prefix", "display"}, at)
        raw = _text(item, "prefix", at)
        _text(item, "display", at)
        match = _ICD10_PREFIX.fullmatch(raw)
        if match is None:
            raise _fail(at, f"malformed ICD-10 prefix '{raw}' (expected e.g. B20 or O98.7)")
        prefix = match.group(1) + (match.group(2) or "")
        if prefix in prefixes:
            raise _fail(at, f"duplicate ICD-10 prefix {raw}")
        prefixes.append(prefix)
    for prefix in prefixes:
        for length in range(3, len(prefix)):
            if prefix[:length] in prefixes:
                raise _fail(
                    where, f"ICD-10 prefix {prefix} is already covered by {prefix[:length]}"
                )
    return tuple(prefixes)


def _codings(entry: Mapping[str, object], key: str, where: str) -> frozenset[tuple[str, str]]:
    codings: set[tuple[str, str]] = set()
    for index, item in enumerate(_entries(entry, key, where)):
        at = f"{where}: {key}[{index}]"
        _check_keys(item, {"system", "code", "display"}, at)
        coding = (_canonical_system(_text(item, "system", at)), _text(item, "code", at))
        if coding in codings:
            raise _fail(at, f"duplicate coding {coding[0]}|{coding[1]}")
        codings.add(coding)
    return frozenset(codings)


def _category(entry: Mapping[str, object], where: str) -> SensitiveCategory:
    _check_keys(entry, _CATEGORY_KEYS, where)
    missing = sorted(_REQUIRED_CATEGORY_KEYS - entry.keys())
    if missing:
        raise _fail(where, f"missing field(s) {', '.join(missing)}")
    code = _text(entry, "code", where)
    if not _CATEGORY_CODE.fullmatch(code):
        raise _fail(where, f"category code '{code}' must be lower case letters, digits and _")
    where = f"{where} '{code}'"
    raw_confidentiality = entry.get("confidentiality")
    confidentiality: Confidentiality
    if raw_confidentiality == "R":
        confidentiality = "R"
    elif raw_confidentiality == "V":
        confidentiality = "V"
    else:
        raise _fail(where, f"unknown confidentiality {raw_confidentiality!r} (expected R or V)")
    ds4p = entry.get("ds4p")
    if not isinstance(ds4p, Mapping):
        raise _fail(where, "'ds4p' must be an object with system, code and display")
    _check_keys(ds4p, {"system", "code", "display"}, f"{where}: ds4p")
    ds4p_system = _text(ds4p, "system", f"{where}: ds4p")
    if not ds4p_system.startswith(("http://", "https://", "urn:")):
        raise _fail(where, f"ds4p system '{ds4p_system}' is not an absolute URI")
    sources = entry.get("sources")
    if (
        not isinstance(sources, list)
        or not sources
        or not all(isinstance(s, str) and s.strip() for s in sources)
    ):
        raise _fail(where, "'sources' must be a non-empty list of citations")
    category = SensitiveCategory(
        code=code,
        title=_text(entry, "title", where),
        description=_text(entry, "description", where),
        confidentiality=confidentiality,
        ds4p_system=_canonical_system(ds4p_system),
        ds4p_code=_text(ds4p, "code", f"{where}: ds4p"),
        ds4p_display=_text(ds4p, "display", f"{where}: ds4p"),
        snomed=_concept_ids(entry, "snomed", where),
        icd10_prefixes=_icd10_prefixes(entry, where),
        dmd=_concept_ids(entry, "dmd", where),
        other_codings=_codings(entry, "other_codings", where),
        recognised_labels=_codings(entry, "recognised_labels", where),
        sources=tuple(sources),
    )
    if not (category.snomed or category.icd10_prefixes or category.dmd or category.other_codings):
        raise _fail(where, "empty category: no SNOMED CT, ICD-10, dm+d or other codes")
    return category


def parse_value_sets(document: Mapping[str, object]) -> ValueSets:
    """Validate a sensitive-data value-set document and build its lookups.

    The document is ``{"version", "published" (ISO date), "description"?, "categories":
    [...]}``; each category has ``code`` (lower case, unique), ``title``, ``description``,
    ``confidentiality`` (``R`` or ``V``), ``ds4p`` (``system``, ``code``, ``display``),
    ``sources`` (citations), and at least one concept among ``snomed`` and ``dmd`` (lists of
    ``{"code", "display"}`` with valid SNOMED CT concept ids), ``icd10_prefixes`` (lists of
    ``{"prefix", "display"}``, WHO ICD-10 three- or four-character codes with or without the
    dot) and ``other_codings`` (``{"system", "code", "display"}``); optionally
    ``recognised_labels`` (security labels meaning the category) and ``checked`` (how the
    codes were verified).

    Strict, because a silently ignored mistake in a value set means sensitive data shared
    unlabelled: unknown fields, duplicates (categories, codes, prefixes, a prefix already
    covered by a shorter one, a label meaning two categories) and malformed codes all raise
    ``ValueError`` naming the entry.
    """
    if not isinstance(document, Mapping):
        raise _fail("document", "must be an object")
    _check_keys(document, _DOCUMENT_KEYS, "document")
    version = _text(document, "version", "document")
    published_text = _text(document, "published", "document")
    try:
        published = date.fromisoformat(published_text)
    except ValueError:
        raise _fail("document", f"'published' is not an ISO date: {published_text}") from None
    raw_categories = document.get("categories")
    if not isinstance(raw_categories, list) or not raw_categories:
        raise _fail("document", "'categories' must be a non-empty list")
    categories: list[SensitiveCategory] = []
    for index, entry in enumerate(raw_categories):
        where = f"categories[{index}]"
        if not isinstance(entry, Mapping):
            raise _fail(where, "must be an object")
        categories.append(_category(entry, where))
    try:
        return ValueSets(version=version, categories=tuple(categories), published=published)
    except ValueError as exc:
        raise _fail("categories", str(exc)) from None


@cache
def default_value_sets() -> ValueSets:
    """The value sets packaged with carejoin (``consent/data/sensitive_categories.json``).

    Read and validated once per process; a packaged document that fails validation raises
    ``ValueError`` at first use rather than labelling with a broken list.
    """
    resource = files("consent") / "data" / "sensitive_categories.json"
    document = json.loads(resource.read_text(encoding="utf-8"))
    return parse_value_sets(document)


# --- classification --------------------------------------------------------------------


def normalise_icd10(code: str) -> str | None:
    """The ICD-10 code as the value sets hold it, or None if ``code`` is not one.

    Upper case, dots and whitespace removed, and anything after the letter and its digits
    dropped: hospital systems send ``B20.1``, ``B201``, ``b20.1``, ``F32X``, ``F32-`` and
    dagger/asterisk marks (``N74.3A``), all of which name the same code.
    """
    compact = "".join(code.split()).replace(".", "").upper()
    match = _ICD10_HEAD.match(compact)
    return match.group() if match is not None else None


def _match_coding(system: str, code: str, value_sets: ValueSets, found: set[str]) -> None:
    kind = _SYSTEM_KIND.get(system)
    if kind == _KIND_SCTID:
        categories = value_sets._sctids.get(code.strip())
        if categories:
            found.update(categories)
    elif kind == _KIND_ICD10:
        head = normalise_icd10(code)
        if head is not None:
            icd10 = value_sets._icd10
            for length in range(3, len(head) + 1):
                categories = icd10.get(head[:length])
                if categories:
                    found.update(categories)
    if value_sets._other:
        categories = value_sets._other.get((system, code))
        if categories:
            found.update(categories)


def classify(resource: Mapping[str, object], value_sets: ValueSets) -> frozenset[str]:
    """The sensitive-data categories whose concepts occur in ``resource``.

    Every Coding anywhere in the resource counts, however deeply nested (``code``,
    ``valueCodeableConcept``, ``medicationCodeableConcept``, ``evidence``, extensions,
    contained resources): a Coding is any object with string ``system`` and ``code``.
    SNOMED CT and dm+d codes (under either system URI) match exactly; ICD-10 codes
    (``ICD10_SYSTEMS``) are normalised with ``normalise_icd10`` and match by prefix; other
    codings match exactly on system and code. Malformed codings (no system, a code that is
    not a string) and non-object entries are ignored, never an error. Security labels are
    not read here: see ``label_resource``. Returns category codes; empty when none match.
    """
    found: set[str] = set()
    stack: list[object] = [resource]
    pop = stack.pop
    push = stack.append
    while stack:
        node = pop()
        if isinstance(node, Mapping):
            system = node.get("system")
            if system is not None:
                code = node.get("code")
                if isinstance(system, str) and isinstance(code, str):
                    _match_coding(system, code, value_sets, found)
            for value in node.values():
                kind = type(value)
                # Most values are strings, numbers or plain dicts and lists; the exact type
                # test keeps the walk cheap and the isinstance fallback keeps it complete.
                if (
                    kind is dict
                    or kind is list
                    or (kind is not str and isinstance(value, (Mapping, list, tuple)))
                ):
                    push(value)
        else:  # only mappings, lists and tuples are ever pushed
            for item in cast("list[object]", node):
                if isinstance(item, (Mapping, list, tuple)):
                    push(item)
    return frozenset(found)


def security_labels(categories: Iterable[str], value_sets: ValueSets) -> tuple[dict[str, str], ...]:
    """The ``meta.security`` Codings that the given categories call for.

    First one v3 Confidentiality coding at the highest level the categories ask for (V above
    R), then each category's sensitivity coding, in value-set order.
    Empty when there are no categories (no confidentiality is asserted for ordinary data:
    that is the source's business). Each coding has ``system``, ``code`` and ``display``.
    Raises ``ValueError`` for a category code the value sets do not define.
    """
    wanted = set(categories)
    unknown = wanted - value_sets._by_code.keys()
    if unknown:
        raise ValueError(f"Unknown sensitive-data categories: {', '.join(sorted(unknown))}")
    chosen = [category for category in value_sets.categories if category.code in wanted]
    if not chosen:
        return ()
    level = max((category.confidentiality for category in chosen), key=_RANK.__getitem__)
    labels = [
        {"system": CONFIDENTIALITY, "code": level, "display": _CONFIDENTIALITY_DISPLAY[level]}
    ]
    # ValueSets guarantees that no two categories share a sensitivity code.
    labels.extend(
        {
            "system": category.ds4p_system,
            "code": category.ds4p_code,
            "display": category.ds4p_display,
        }
        for category in chosen
    )
    return tuple(labels)


def _source_security(resource: Mapping[str, object]) -> list[dict[str, object]]:
    meta = resource.get("meta")
    if not isinstance(meta, Mapping):
        return []
    security = meta.get("security")
    if not isinstance(security, (list, tuple)):
        return []
    return [dict(coding) for coding in security if isinstance(coding, Mapping)]


def label_resource(
    resource: Mapping[str, object], value_sets: ValueSets
) -> tuple[frozenset[str], list[dict[str, object]]]:
    """The categories of ``resource`` and the full ``meta.security`` to store with it.

    Categories come from its codes (``classify``) and from the security labels its source
    already sent (a category's DS4P code or one of its ``recognised_labels``, under either
    the R4 or the STU3 URI of the v3 code systems). The returned list:

    - starts with one v3 Confidentiality coding when there is any: the source's own if it is
      at least as high as ours (kept as sent), otherwise ours. A source's label is never
      lowered; several confidentiality codings from the source collapse to the highest;
    - then every other security coding the source sent, in its order, as sent (repeats of
      the same system and code dropped);
    - then our sensitivity codings that the source did not already send.

    Entries of ``meta.security`` that are not objects cannot be stored as Codings and are
    left out. ``resource`` is not modified; the source's clinical codes are never touched.
    """
    source = _source_security(resource)
    categories = set(classify(resource, value_sets))
    confidentiality: dict[str, object] | None = None
    kept: list[dict[str, object]] = []
    seen: set[tuple[object, object]] = set()
    for coding in source:
        raw_system = coding.get("system")
        system = _canonical_system(raw_system) if isinstance(raw_system, str) else raw_system
        code = coding.get("code")
        if system == CONFIDENTIALITY and isinstance(code, str) and code in _RANK:
            current = confidentiality["code"] if confidentiality is not None else None
            if not isinstance(current, str) or _RANK[code] > _RANK[current]:
                confidentiality = coding
            continue
        if (system, code) in seen:
            continue
        seen.add((system, code))
        kept.append(coding)
        if isinstance(system, str) and isinstance(code, str):
            category = value_sets._labels.get((system, code))
            if category is not None:
                categories.add(category)
    ours = security_labels(categories, value_sets)
    if ours:
        source_code = confidentiality["code"] if confidentiality is not None else None
        if not isinstance(source_code, str) or _RANK[source_code] < _RANK[ours[0]["code"]]:
            confidentiality = dict(ours[0])
    merged = [confidentiality] if confidentiality is not None else []
    merged.extend(kept)
    merged.extend(dict(label) for label in ours[1:] if (label["system"], label["code"]) not in seen)
    return frozenset(categories), merged


def category_of_label(system: str, code: str, value_sets: ValueSets) -> str | None:
    """The category a sensitivity label names (a category's DS4P code or one of its
    ``recognised_labels``, under either URI of the v3 code systems), or None."""
    return value_sets._labels.get((_canonical_system(system), code))


def combine(*label_sets: AbstractSet[str]) -> frozenset[str]:
    """The categories of an item derived from others: every category of every source item.

    An alert, a task or a folded summary entry built from sensitive items is itself as
    sensitive as all of them together, so its labels are the union (empty for none).
    """
    combined: frozenset[str] = frozenset()
    return combined.union(*label_sets)

"""Turn a resource's JSON into the search-index entries of its type's parameters.

Runs on every write, so it is compiled once per resource type and walks plain dicts (the JSON
as parsed, decimals as ``Decimal``) without building models. Which entries an element yields
depends on the parameter type and the element's data type (R4 3.1.1.5 "search parameter
types" says which data types each type can match):

============  ==============================================================================
token         code/string/uri/boolean, Coding, CodeableConcept (each coding), Identifier
              (system|value), ContactPoint (value)
string        string, HumanName (family, given, prefix, suffix, text), Address (line, city,
              district, state, postalCode, country, text)
date          date, dateTime, instant, Period, Timing (events and repeat.boundsPeriod)
reference     Reference ("Type/id", absolute URL, urn:uuid), canonical
quantity      Quantity, Age, Duration, Count, Distance, SimpleQuantity (Range is not indexed)
number        decimal, integer
uri           uri, url, canonical (indexed as a token without system)
============  ==============================================================================

Values longer than the index columns hold are cut to fit; the stored resource keeps them
whole. ``_id`` and ``_lastUpdated`` are not extracted: they are columns of the resource row.
Nor is a parameter that is a restriction or a union of others (``Observation.patient``,
``combo-code``: ``fhir_gateway.search.storage``); its rows are theirs.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from fhir_gateway.search.dates import MAX_DATE, MIN_DATE, InvalidDate, parse_range
from fhir_gateway.search.model import (
    DateEntry,
    IndexEntries,
    ParamType,
    QuantityEntry,
    ReferenceEntry,
    SearchParam,
    StringEntry,
    TokenEntry,
)
from fhir_gateway.search.registry import SEARCH_PARAMS
from fhir_gateway.search.storage import has_own_rows
from fhir_gateway.search.text import normalize

CODE_MAX = 255
STRING_MAX = 255
ID_MAX = 64
URL_MAX = 1024

CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")

# Which data types of a choice element (``value[x]``) each parameter type can match.
_CHOICE_TYPES: Mapping[ParamType, frozenset[str]] = {
    ParamType.TOKEN: frozenset(
        {"CodeableConcept", "Coding", "Identifier", "ContactPoint", "Code", "Boolean", "Uri", "Id"}
    ),
    ParamType.STRING: frozenset({"String", "Markdown", "HumanName", "Address"}),
    ParamType.DATE: frozenset({"Date", "DateTime", "Instant", "Period", "Timing"}),
    ParamType.REFERENCE: frozenset({"Reference", "Canonical"}),
    ParamType.QUANTITY: frozenset(
        {"Quantity", "Age", "Duration", "Count", "Distance", "SimpleQuantity"}
    ),
    ParamType.NUMBER: frozenset({"Decimal", "Integer", "PositiveInt", "UnsignedInt"}),
    ParamType.URI: frozenset({"Uri", "Url", "Canonical"}),
}
_UNEXTRACTED = frozenset({"_id", "_lastUpdated"})


@dataclass(frozen=True, slots=True)
class _Step:
    name: str
    choice: bool  # ``name[x]``
    where: tuple[str, str] | None  # ``name(field=value)``


@dataclass(frozen=True, slots=True)
class _Path:
    steps: tuple[_Step, ...]

    @property
    def head(self) -> _Step:
        return self.steps[0]


@dataclass(frozen=True, slots=True)
class _Compiled:
    param: SearchParam
    paths: tuple[_Path, ...]


def compile_path(path: str) -> _Path:
    """Parse a registry path such as ``telecom(system=email)`` or ``component.value[x]``."""
    steps = []
    for raw in path.split("."):
        where = None
        name = raw
        if name.endswith(")") and "(" in name:
            name, _, condition = name[:-1].partition("(")
            field, _, wanted = condition.partition("=")
            where = (field, wanted)
        choice = name.endswith("[x]")
        if choice:
            name = name[:-3]
        if not name.isidentifier():
            raise ValueError(f"Bad search path segment '{raw}' in '{path}'")
        steps.append(_Step(name=name, choice=choice, where=where))
    return _Path(steps=tuple(steps))


@cache
def _compiled(resource_type: str) -> tuple[_Compiled, ...]:
    params = SEARCH_PARAMS.get(resource_type, {})
    return tuple(
        _Compiled(param=p, paths=tuple(compile_path(path) for path in p.paths))
        for p in params.values()
        if p.code not in _UNEXTRACTED and has_own_rows(resource_type, p.code)
    )


def extract(resource: Mapping[str, Any]) -> IndexEntries:
    """All index entries ``resource`` yields for its type's search parameters, without
    duplicates."""
    entries = IndexEntries()
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return entries
    tokens: dict[TokenEntry, None] = {}
    strings: dict[StringEntry, None] = {}
    dates: dict[DateEntry, None] = {}
    references: dict[ReferenceEntry, None] = {}
    quantities: dict[QuantityEntry, None] = {}
    for compiled in _compiled(resource_type):
        param = compiled.param
        kind = param.type
        for path in compiled.paths:
            head = path.head
            if not head.choice and head.name not in resource:
                continue
            for value, data_type in _walk(resource, path.steps):
                if (
                    data_type is not None
                    and data_type not in _CHOICE_TYPES.get(kind, ())
                    and not (param.code == "deceased" and data_type == "DateTime")
                ):
                    continue
                if kind is ParamType.TOKEN:
                    for token in _tokens(param, value, data_type):
                        tokens[token] = None
                elif kind is ParamType.STRING:
                    for string in _strings(param.code, value):
                        strings[string] = None
                elif kind is ParamType.DATE:
                    for date in _dates(param.code, value):
                        dates[date] = None
                elif kind is ParamType.REFERENCE:
                    reference = _reference(param, value)
                    if reference is not None:
                        references[reference] = None
                elif kind in (ParamType.QUANTITY, ParamType.NUMBER):
                    quantity = _quantity(param.code, value)
                    if quantity is not None:
                        quantities[quantity] = None
                elif kind is ParamType.URI and isinstance(value, str):
                    tokens[TokenEntry(param.code, None, value[:CODE_MAX])] = None
    entries.tokens.extend(tokens)
    entries.strings.extend(strings)
    entries.dates.extend(dates)
    entries.references.extend(references)
    entries.quantities.extend(quantities)
    return entries


def _walk(root: Mapping[str, Any], steps: tuple[_Step, ...]) -> list[tuple[Any, str | None]]:
    """The values at the end of ``steps``, with the data type a choice step selected."""
    current: list[tuple[Any, str | None]] = [(root, None)]
    for step in steps:
        found: list[tuple[Any, str | None]] = []
        for node, _ in current:
            if not isinstance(node, dict):
                continue
            if step.choice:
                for key, value in node.items():
                    suffix = _choice_suffix(key, step.name)
                    if suffix is not None:
                        _collect(found, value, suffix, step.where)
            else:
                value = node.get(step.name)
                if value is not None:
                    _collect(found, value, None, step.where)
        if not found:
            return found
        current = found
    return current


def _collect(
    found: list[tuple[Any, str | None]],
    value: Any,
    data_type: str | None,
    where: tuple[str, str] | None,
) -> None:
    items = value if isinstance(value, list) else (value,)
    for item in items:
        if item is None:
            continue
        if where is not None and not (isinstance(item, dict) and item.get(where[0]) == where[1]):
            continue
        found.append((item, data_type))


@cache
def _choice_suffix_cached(key: str, name: str) -> str | None:
    if len(key) > len(name) and key.startswith(name) and key[len(name)].isupper():
        return key[len(name) :]
    return None


def _choice_suffix(key: str, name: str) -> str | None:
    if not key.startswith(name):
        return None
    return _choice_suffix_cached(key, name)


def _tokens(param: SearchParam, value: Any, data_type: str | None) -> Iterator[TokenEntry]:
    code = param.code
    if isinstance(value, bool):
        yield TokenEntry(code, None, "true" if value else "false")
    elif isinstance(value, str):
        if code == "deceased" and data_type is not None:
            # R4: Patient.deceased.exists() and Patient.deceased != false
            yield TokenEntry(code, None, "true")
        else:
            yield TokenEntry(code, None, value[:CODE_MAX])
    elif isinstance(value, dict):
        if "coding" in value or ("text" in value and "value" not in value and "code" not in value):
            for coding in value.get("coding") or ():
                if isinstance(coding, dict):
                    yield from _coding(code, coding)
        elif "value" in value:
            system = value.get("system")
            token_value = value.get("value")
            if not isinstance(token_value, str):
                return
            if system in CONTACT_SYSTEMS:  # ContactPoint: the value alone
                yield TokenEntry(code, None, token_value[:CODE_MAX])
            else:  # Identifier
                yield TokenEntry(code, _cut(system, CODE_MAX), token_value[:CODE_MAX])
        else:
            yield from _coding(code, value)


def _coding(code: str, coding: Mapping[str, Any]) -> Iterator[TokenEntry]:
    system, value = coding.get("system"), coding.get("code")
    if isinstance(system, str) or isinstance(value, str):
        yield TokenEntry(code, _cut(system, CODE_MAX), _cut(value, CODE_MAX))


def _cut(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _strings(code: str, value: Any) -> Iterator[StringEntry]:
    if isinstance(value, str):
        text = value.strip()
        if text:
            yield StringEntry(code, normalize(text)[:STRING_MAX], text[:STRING_MAX])
    elif isinstance(value, dict):
        parts: tuple[str, ...] = (
            NAME_PARTS if ("family" in value or "given" in value) else ADDRESS_PARTS
        )
        if not any(part in value for part in parts):
            parts = NAME_PARTS + ADDRESS_PARTS
        for part in parts:
            part_value = value.get(part)
            for item in part_value if isinstance(part_value, list) else (part_value,):
                if isinstance(item, str):
                    yield from _strings(code, item)


def _dates(code: str, value: Any) -> Iterator[DateEntry]:
    if isinstance(value, str):
        bounds = _range(value)
        if bounds is not None:
            yield DateEntry(code, bounds[0], bounds[1])
    elif isinstance(value, dict):
        if "start" in value or "end" in value:  # Period
            entry = _period(code, value)
            if entry is not None:
                yield entry
        for event in value.get("event") or ():  # Timing
            yield from _dates(code, event)
        repeat = value.get("repeat")
        if isinstance(repeat, dict) and isinstance(repeat.get("boundsPeriod"), dict):
            entry = _period(code, repeat["boundsPeriod"])
            if entry is not None:
                yield entry


def _period(code: str, period: Mapping[str, Any]) -> DateEntry | None:
    start, end = period.get("start"), period.get("end")
    low_range = _range(start) if isinstance(start, str) else None
    high_range = _range(end) if isinstance(end, str) else None
    if low_range is None and high_range is None:
        return None
    low: datetime = low_range[0] if low_range is not None else MIN_DATE
    high: datetime = high_range[1] if high_range is not None else MAX_DATE
    return DateEntry(code, low, high)


def _range(text: str) -> tuple[datetime, datetime] | None:
    try:
        return parse_range(text)
    except InvalidDate:
        return None


def _reference(param: SearchParam, value: Any) -> ReferenceEntry | None:
    if isinstance(value, dict):
        reference = value.get("reference")
        if not isinstance(reference, str) or not reference or reference.startswith("#"):
            return None
        entry = parse_reference(param.code, reference)
    elif isinstance(value, str):  # canonical: the URL without its |version
        entry = ReferenceEntry(param.code, None, None, value.partition("|")[0][:URL_MAX])
    else:
        return None
    if param.targets and entry.target_type not in param.targets:
        return None
    return entry


def parse_reference(code: str, reference: str) -> ReferenceEntry:
    """Index form of a Reference.reference: relative ``Type/id[/_history/n]`` becomes type and
    id; absolute URLs and ``urn:`` references are kept whole (with the type when the URL ends in
    ``Type/id`` so that type-restricted parameters still see them)."""
    if "://" in reference or reference.startswith("urn:"):
        target_type = None
        parts = reference.split("/")
        if len(parts) >= 4 and parts[-4] != "" and parts[-2] == "_history":
            parts = parts[:-2]
        if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalpha():
            target_type = parts[-2][:ID_MAX]
        return ReferenceEntry(code, target_type, None, reference[:URL_MAX])
    parts = reference.split("/")
    if len(parts) >= 2 and parts[0][:1].isupper():
        return ReferenceEntry(code, parts[0][:ID_MAX], parts[1][:ID_MAX], None)
    return ReferenceEntry(code, None, reference[:ID_MAX], None)


def _quantity(code: str, value: Any) -> QuantityEntry | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)):
        return QuantityEntry(code, Decimal(value))
    if isinstance(value, float):
        return QuantityEntry(code, Decimal(str(value)))
    if isinstance(value, dict):
        number = value.get("value")
        if isinstance(number, bool) or not isinstance(number, (int, float, Decimal)):
            return None
        return QuantityEntry(
            code,
            Decimal(str(number)) if isinstance(number, float) else Decimal(number),
            _cut(value.get("system"), CODE_MAX),
            _cut(value.get("code"), CODE_MAX),
            _cut(value.get("unit"), CODE_MAX),
        )
    return None

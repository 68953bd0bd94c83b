"""Parsing FHIR search requests into plain data (R4 3.1.1 "Search").

Pure: no database. The query builder (``query.py``) turns a ``SearchRequest`` into SQL.
Repeated parameters are ANDed, comma-separated values ORed (3.1.1.5.6 "Composite search
parameters and OR/AND"); ``\\,`` ``\\|`` and ``\\$`` escape those characters.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from fhir_gateway.search.model import ParamType, SearchParam
from fhir_gateway.search.registry import SUPPORTED_TYPES, params_for

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
RESULT_PARAMS = frozenset(
    {
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_summary",
        "_elements",
        "_total",
        "_cursor",
        "_format",
        "_pretty",
        "_contained",
        "_containedType",
    }
)
SUMMARY_MODES = frozenset({"true", "false", "text", "data", "count"})
TOTAL_MODES = frozenset({"none", "estimate", "accurate"})
# Modifiers this server implements, per parameter type (3.1.1.5 "Modifiers").
MODIFIERS: dict[ParamType, frozenset[str]] = {
    ParamType.TOKEN: frozenset({"missing", "not"}),
    ParamType.STRING: frozenset({"missing", "exact", "contains"}),
    ParamType.DATE: frozenset({"missing"}),
    ParamType.REFERENCE: frozenset({"missing"}),
    ParamType.QUANTITY: frozenset({"missing"}),
    ParamType.NUMBER: frozenset({"missing"}),
    ParamType.URI: frozenset({"missing"}),
}
_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]+$")


class SearchError(ValueError):
    """A search the server cannot run; ``unsupported`` marks a valid but unimplemented one."""

    def __init__(self, message: str, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


@dataclass(frozen=True, slots=True)
class Criterion:
    """One search parameter occurrence: its values are ORed.

    For a chained parameter (``subject:Patient.name=x``), ``chain`` is the criterion applied to
    the referenced resources of type ``chain_type``. For a reverse chain
    (``_has:Observation:patient:code=x`` on Patient), ``has`` is the criterion applied to the
    referring resources of type ``has_type``, and ``param`` is their reference parameter
    (``patient`` of Observation) that must point at the resource searched for.
    """

    param: SearchParam
    resource_type: str
    modifier: str | None
    values: tuple[str, ...]
    chain: "Criterion | None" = None
    chain_type: str | None = None
    has: "Criterion | None" = None
    has_type: str | None = None

    def types_searched(self) -> Iterator[str]:
        """Every other resource type this criterion searches through (chains and ``_has``)."""
        for inner, inner_type in ((self.chain, self.chain_type), (self.has, self.has_type)):
            if inner is not None and inner_type is not None:
                yield inner_type
                yield from inner.types_searched()


@dataclass(frozen=True, slots=True)
class SortKey:
    param: SearchParam
    descending: bool


@dataclass(frozen=True, slots=True)
class Include:
    """``_include=Source:param[:Target]`` or ``_revinclude`` of the same shape; ``*`` is any."""

    source_type: str
    param: str
    target_type: str | None
    iterate: bool


@dataclass(slots=True)
class SearchRequest:
    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int = 20
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    summary: str | None = None
    elements: tuple[str, ...] = ()
    total: str = "accurate"
    cursor: str | None = None
    ignored: list[str] = field(default_factory=list)


def split_values(raw: str) -> tuple[str, ...]:
    r"""Split on commas not escaped with a backslash; unescape ``\,`` ``\|`` ``\$`` ``\\``."""
    values: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in raw:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            values.append("".join(current))
            current = []
        else:
            current.append(ch)
    if escaped:
        current.append("\\")
    values.append("".join(current))
    return tuple(values)


def split_token(value: str) -> tuple[str | None, str | None]:
    r"""``system|code`` -> (system, code); ``|code`` -> ("", code); ``code`` -> (None, code)."""
    index = _unescaped_bar(value)
    if index < 0:
        return None, _unescape(value)
    return _unescape(value[:index]), (_unescape(value[index + 1 :]) or None)


def _unescaped_bar(value: str) -> int:
    escaped = False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "|":
            return i
    return -1


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def split_prefix(value: str) -> tuple[str, str]:
    """``ge2024-01-01`` -> ("ge", "2024-01-01"); no prefix means ``eq``."""
    if len(value) > 2 and value[:2] in PREFIXES and not value[2].isalpha():
        return value[:2], value[2:]
    return "eq", value


def parse_number(text: str) -> Decimal:
    try:
        number = Decimal(text)
    except InvalidOperation as exc:
        raise SearchError(f"'{text}' is not a number") from exc
    if not number.is_finite():
        raise SearchError(f"'{text}' is not a finite number")
    return number


def parse_search(
    resource_type: str,
    items: list[tuple[str, str]],
    *,
    strict: bool,
    default_count: int,
    max_count: int,
) -> SearchRequest:
    """Parse query items (name, value) of a search on ``resource_type``.

    Unknown parameters are an error when ``strict`` (``Prefer: handling=strict``) and are
    reported in ``ignored`` otherwise (the self link then leaves them out, as 3.1.1.4 says).
    """
    request = SearchRequest(resource_type=resource_type, count=default_count)
    known = params_for(resource_type)
    for name, raw in items:
        base, _, modifier = name.partition(":")
        if base in RESULT_PARAMS:
            _result_param(request, base, raw, max_count=max_count, iterate=modifier == "iterate")
            continue
        if base not in known and base != "_has" and not _is_chain(base, modifier):
            if strict:
                raise SearchError(f"Unknown search parameter '{base}' for {resource_type}")
            request.ignored.append(name)
            continue
        request.criteria.append(_parameter(resource_type, name, raw))
    return request


def types_searched(request: SearchRequest) -> set[str]:
    """The resource types a search reaches through its chains and reverse chains, beyond its
    own: the caller's scopes must let it search each of them."""
    return {t for c in request.criteria for t in c.types_searched()}


def _is_chain(base: str, modifier: str) -> bool:
    return "." in base or "." in modifier


def _parameter(resource_type: str, name: str, raw: str) -> Criterion:
    """One search parameter of ``resource_type``: plain (with its modifier), chained or a
    reverse chain. An unknown parameter here is an error: inside a chain or a reverse chain it
    cannot be ignored without changing what the whole parameter means."""
    base, _, modifier = name.partition(":")
    if base == "_has":
        return _reverse_chained(resource_type, name, raw)
    if _is_chain(base, modifier):
        return _chained(resource_type, name, raw)
    if base in RESULT_PARAMS:
        raise SearchError(f"'{base}' is not a search parameter and cannot be chained")
    param = params_for(resource_type).get(base)
    if param is None:
        raise SearchError(f"Unknown search parameter '{base}' for {resource_type}")
    return _criterion(resource_type, param, modifier or None, raw)


def _reverse_chained(resource_type: str, name: str, raw: str) -> Criterion:
    """``_has:Observation:patient:code=x`` on Patient: the patients some Observation whose code
    is x refers to by its ``patient`` parameter (3.1.1.4.7 "Reverse chaining"). The inner
    parameter may itself be chained, carry a modifier, or be another ``_has``."""
    parts = name.split(":", 3)
    if len(parts) < 4 or not all(parts[1:]):
        raise SearchError(
            f"'{name}' is not a reverse chain: write _has:Type:reference-parameter:parameter"
        )
    _, referring, reference, inner_name = parts
    if referring not in SUPPORTED_TYPES:
        raise SearchError(f"'{referring}' is not a resource type this server stores")
    param = params_for(referring).get(reference)
    if param is None or param.type is not ParamType.REFERENCE:
        raise SearchError(f"'{reference}' is not a reference parameter of {referring}")
    if param.targets and resource_type not in param.targets:
        raise SearchError(f"'{reference}' of {referring} cannot refer to {resource_type}")
    return Criterion(
        param=param,
        resource_type=resource_type,
        modifier=None,
        values=(),
        has=_parameter(referring, inner_name, raw),
        has_type=referring,
    )


def _criterion(resource_type: str, param: SearchParam, modifier: str | None, raw: str) -> Criterion:
    if modifier is not None:
        allowed = MODIFIERS.get(param.type, frozenset())
        is_type_modifier = param.type is ParamType.REFERENCE and _TYPE_NAME.match(modifier)
        if not is_type_modifier and modifier not in allowed:
            raise SearchError(
                f"Modifier ':{modifier}' is not supported on {param.type} parameter '{param.code}'",
                unsupported=True,
            )
        if is_type_modifier and modifier not in SUPPORTED_TYPES:
            raise SearchError(f"'{modifier}' is not a resource type this server stores")
    values = split_values(raw)
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise SearchError(f"':missing' takes true or false, not '{raw}'")
        values = (raw,)
    elif any(v == "" for v in values):
        raise SearchError(f"Parameter '{param.code}' has an empty value")
    return Criterion(param=param, resource_type=resource_type, modifier=modifier, values=values)


def _chained(resource_type: str, name: str, raw: str) -> Criterion:
    """``subject:Patient.identifier=x`` or ``patient.name=x`` (3.1.1.4.6 "Chained parameters")."""
    head, _, rest = name.partition(".")
    base, _, type_modifier = head.partition(":")
    param = params_for(resource_type).get(base)
    if param is None or param.type is not ParamType.REFERENCE:
        raise SearchError(
            f"'{base}' is not a reference parameter of {resource_type}, so it cannot be chained"
        )
    if type_modifier:
        target = type_modifier
    elif len(param.targets) == 1:
        target = param.targets[0]
    else:
        raise SearchError(
            f"Chained parameter '{name}' needs a type modifier ('{base}:Type.{rest}') "
            "because the reference may point to several types"
        )
    if target not in SUPPORTED_TYPES or (param.targets and target not in param.targets):
        raise SearchError(f"'{base}' of {resource_type} cannot refer to {target}")
    return Criterion(
        param=param,
        resource_type=resource_type,
        modifier=None,
        values=(),
        chain=_parameter(target, rest, raw),
        chain_type=target,
    )


def _result_param(
    request: SearchRequest, name: str, raw: str, *, max_count: int, iterate: bool
) -> None:
    if name == "_count":
        if not raw.isdigit():
            raise SearchError(f"_count must be a whole number, not '{raw}'")
        request.count = min(int(raw), max_count)
    elif name == "_sort":
        request.sort = [_sort_key(request.resource_type, key) for key in raw.split(",") if key]
    elif name in ("_include", "_revinclude"):
        include = _include(raw, iterate=iterate)
        (request.includes if name == "_include" else request.revincludes).append(include)
    elif name == "_summary":
        if raw not in SUMMARY_MODES:
            raise SearchError(f"_summary must be one of {', '.join(sorted(SUMMARY_MODES))}")
        request.summary = None if raw == "false" else raw
    elif name == "_elements":
        request.elements = tuple(e.strip() for e in raw.split(",") if e.strip())
    elif name == "_total":
        if raw not in TOTAL_MODES:
            raise SearchError(f"_total must be one of {', '.join(sorted(TOTAL_MODES))}")
        request.total = raw
    elif name == "_cursor":
        request.cursor = raw
    # _format and _pretty are honoured by the HTTP layer; _contained is not supported and
    # is ignored, which the spec allows for result parameters.


def _sort_key(resource_type: str, key: str) -> SortKey:
    descending = key.startswith("-")
    code = key[1:] if descending else key
    param = params_for(resource_type).get(code)
    if param is None:
        raise SearchError(f"Cannot sort {resource_type} by unknown parameter '{code}'")
    if param.type in (ParamType.SPECIAL, ParamType.COMPOSITE):
        raise SearchError(
            f"Sorting by {param.type} parameter '{code}' is not supported", unsupported=True
        )
    return SortKey(param=param, descending=descending)


def _include(raw: str, *, iterate: bool) -> Include:
    parts = raw.split(":")
    if parts == ["*"]:
        return Include(source_type="*", param="*", target_type=None, iterate=iterate)
    if len(parts) not in (2, 3):
        raise SearchError(f"_include/_revinclude must be 'Type:param[:TargetType]', not '{raw}'")
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if source not in SUPPORTED_TYPES:
        raise SearchError(f"'{source}' is not a resource type this server stores")
    if code != "*":
        param = params_for(source).get(code)
        if param is None or param.type is not ParamType.REFERENCE:
            raise SearchError(f"'{code}' is not a reference parameter of {source}")
    if target is not None and target not in SUPPORTED_TYPES:
        raise SearchError(f"'{target}' is not a resource type this server stores")
    return Include(source_type=source, param=code, target_type=target, iterate=iterate)

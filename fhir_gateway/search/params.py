"""Parsing FHIR search requests into plain data (R4 3.1.1 "Search").

Pure: no database. The query builder (``query.py``) turns a ``SearchRequest`` into SQL.
Repeated parameters are ANDed, comma-separated values ORed (3.1.1.5.6 "Composite search
parameters and OR/AND"); ``\\,`` ``\\|`` and ``\\$`` escape those characters.
"""

import re
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
    the referenced resources of type ``chain_type``.
    """

    param: SearchParam
    resource_type: str
    modifier: str | None
    values: tuple[str, ...]
    chain: "Criterion | None" = None
    chain_type: str | None = None


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
        if "." in base or (modifier and "." in modifier):
            request.criteria.append(_chained(resource_type, name, raw))
            continue
        param = known.get(base)
        if param is None:
            if strict:
                raise SearchError(f"Unknown search parameter '{base}' for {resource_type}")
            request.ignored.append(name)
            continue
        request.criteria.append(_criterion(resource_type, param, modifier or None, raw))
    return request


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
    inner_name = rest
    inner_base = inner_name.partition(".")[0].partition(":")[0]
    if "." in inner_name:
        inner = _chained(target, inner_name, raw)
    else:
        inner_param = params_for(target).get(inner_base)
        if inner_param is None:
            raise SearchError(f"Unknown search parameter '{inner_base}' for {target}")
        inner_modifier = inner_name.partition(":")[2] or None
        inner = _criterion(target, inner_param, inner_modifier, raw)
    return Criterion(
        param=param,
        resource_type=resource_type,
        modifier=None,
        values=(),
        chain=inner,
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

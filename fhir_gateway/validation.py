"""Parsing and validating FHIR R4 JSON on the write path.

Bodies are parsed with orjson (strict JSON: no NaN, no duplicate-key surprises turned into
silent data), then validated with fhir.resources' R4B models (the package has no R4 models;
``fhir_gateway.r4compat`` holds the differences that matter and adapts R4 JSON before
validation). The validated model is thrown away: what is stored is the client's JSON, so no
element is re-serialised or re-formatted (decimals keep their precision, for example).
"""

import json
import typing
from collections.abc import Mapping, Sequence
from decimal import Decimal
from functools import cache
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from fhir_gateway import r4compat, r4rules
from fhir_gateway.outcomes import Invalid, Issue
from fhir_gateway.search.registry import SUPPORTED_TYPES

STORED_TYPES = SUPPORTED_TYPES


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(body: bytes | str) -> Any:
    """Parse a request body, answering 400 with the position of the first problem.

    Decimals are parsed as ``Decimal`` so that ``1.50`` is stored and returned as ``1.50``:
    FHIR decimals carry their precision (R4 2.24.0.1, "decimal").
    """
    if not body.strip():
        raise Invalid("The request body is empty; a FHIR JSON resource was expected")
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"The request body is not valid JSON: {exc}") from exc


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> bytes:
    """Serialise JSON parsed by ``parse_json`` back to bytes, decimals exactly as sent."""
    return orjson.dumps(value, default=_default)


def require_resource_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise Invalid("The request body must be a JSON object (a FHIR resource)")
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise Invalid(
            "The resource has no resourceType",
            issues=(Issue(code="required", diagnostics="resourceType is required"),),
        )
    return data


@cache
def _model(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


class ElementMemo:
    """The complex elements already validated in a run of many resources (a bulk load), by
    their data type and their exact JSON, with the model each became.

    A resource's top-level complex elements (its code, subject, category, identifiers...)
    repeat across a load far more than resources do. fhir.resources builds every nested
    element through Python, which is most of a validation's cost; an element whose exact JSON
    was already validated as the same data type is handed to the model as the instance it
    became, which the model accepts as it is (pydantic does not validate an instance of the
    right class again). An element's validity depends only on its own JSON and data type, so
    the resource's verdict and its issues are those of a validation without the memo; the
    resource-level rules (required elements, choice types, unknown elements) run as always.
    Invalid elements are never remembered. Bounded: at ``limit`` elements it starts afresh
    (an element held costs about 6 KB, a model instance with every field of its type: up to
    about 300 MB per importing process).
    """

    def __init__(self, limit: int = 50_000, *, largest: int = 4096) -> None:
        self.limit = limit
        self.largest = largest  # bytes of JSON; a longer element is unlikely to come again
        self.known: dict[tuple[type, bytes], Any] = {}
        self.hits = 0
        self.misses = 0

    def validate(self, model: Any, data: dict[str, Any]) -> None:
        fields = _complex_fields(model)
        given = dict(data)
        learn: list[tuple[str, int | None, tuple[type, bytes]]] = []
        for key, value in data.items():
            spec = fields.get(key)
            if spec is None:
                continue
            element_model = spec[1]
            if isinstance(value, list):
                items: list[Any] = []
                for index, item in enumerate(value):
                    items.append(self._known_or_learn(element_model, item, key, index, learn))
                given[key] = items
            elif isinstance(value, dict):
                given[key] = self._known_or_learn(element_model, value, key, None, learn)
        validated = model.model_validate(given)
        if len(self.known) + len(learn) > self.limit:
            self.known.clear()
        for key, position, memo_key in learn:
            element = getattr(validated, fields[key][0])
            self.known[memo_key] = element if position is None else element[position]

    def _known_or_learn(
        self,
        element_model: type,
        value: Any,
        key: str,
        index: int | None,
        learn: list[tuple[str, int | None, tuple[type, bytes]]],
    ) -> Any:
        if not isinstance(value, dict):
            return value
        text = dumps(value)
        if len(text) > self.largest:
            return value
        memo_key = (element_model, text)
        known = self.known.get(memo_key)
        if known is not None:
            self.hits += 1
            return known
        self.misses += 1
        learn.append((key, index, memo_key))
        return value


@cache
def _complex_fields(model: Any) -> dict[str, tuple[str, type]]:
    """JSON key -> (model field name, element model) for ``model``'s complex-typed elements
    (contained resources left out: their model depends on their own resourceType)."""
    fields: dict[str, tuple[str, type]] = {}
    for name, field in model.model_fields.items():
        element_type = _element_type(field.annotation)
        if element_type is None:
            continue
        element_model = element_type.get_model_klass()
        if element_model.__name__ in ("Resource", "DomainResource"):
            continue
        fields[field.alias or name] = (name, element_model)
    return fields


def _element_type(annotation: Any) -> Any:
    if hasattr(annotation, "get_model_klass"):
        return annotation
    for argument in typing.get_args(annotation):
        found = _element_type(argument)
        if found is not None:
            return found
    return None


def validate_resource(
    resource: Mapping[str, Any],
    *,
    stored_types: frozenset[str] = STORED_TYPES,
    memo: ElementMemo | None = None,
) -> None:
    """Raise ``Invalid`` with one issue per problem (with its FHIRPath) unless ``resource`` is
    a valid FHIR R4 resource of a type this server stores. ``memo``: elements a bulk load
    has already validated (see ``ElementMemo``)."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or resource_type not in stored_types:
        raise Invalid(
            f"Resource type '{resource_type}' is not supported by this server",
            issues=(
                Issue(
                    code="not-supported",
                    diagnostics=f"Resource type '{resource_type}' is not supported by this server",
                    expression=("resourceType",),
                ),
            ),
        )
    text = orjson.dumps(resource, default=str)
    problems = [
        Issue(code="structure", diagnostics=message, expression=(f"{resource_type}.{path}",))
        for path, message in r4compat.r4_only_rejections(resource, text)
    ]
    problems.extend(
        Issue(code=code, diagnostics=message, expression=(path,))
        for path, message, code in r4rules.binding_problems(resource, text)
    )
    try:
        prepared = r4compat.prepare_for_r4b_validation(dict(resource))
        if memo is None:
            _model(resource_type).model_validate(prepared)
        else:
            memo.validate(_model(resource_type), prepared)
    except ValidationError as exc:
        issues = [_issue(resource_type, err) for err in exc.errors(include_url=False)]
        raise _failed(resource_type, issues + problems) from None
    except (ValueError, TypeError, KeyError) as exc:  # raised by some validators directly
        if problems:  # the likelier cause (a contained resource of no known type, say)
            raise _failed(resource_type, problems) from None
        raise Invalid(f"{resource_type} failed validation: {exc}") from None
    if problems:
        raise _failed(resource_type, problems)


def _failed(resource_type: str, issues: list[Issue]) -> Invalid:
    return Invalid(
        f"{resource_type} failed validation with {len(issues)} problem(s)", issues=tuple(issues)
    )


def _issue(resource_type: str, error: Mapping[str, Any]) -> Issue:
    path = fhirpath_of(resource_type, error.get("loc", ()))
    message = str(error.get("msg", "invalid"))
    kind = str(error.get("type", ""))
    code = {"missing": "required", "extra_forbidden": "structure"}.get(kind, "value")
    if kind == "missing":
        message = f"{path} is required"
    elif kind == "extra_forbidden":
        message = f"{path} is not an element of {resource_type}"
    else:
        message = f"{path}: {message}"
    return Issue(code=code, diagnostics=message, expression=(path,))


def fhirpath_of(resource_type: str, loc: Sequence[Any]) -> str:
    """``('code', 'coding', 0, 'system')`` -> ``Observation.code.coding[0].system``."""
    path = resource_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("resource_type", "__root__"):
            continue
        else:
            name = str(part)
            if name.endswith("__ext"):  # fhir.resources' name for a primitive's extension
                name = "_" + name[: -len("__ext")]
            path += f".{name}"
    return path


def agent_who(who: str) -> dict[str, str]:
    """A Provenance/AuditEvent ``who``: a reference for a FHIR actor, else a display name."""
    head, slash, tail = who.partition("/")
    if slash and tail and head in ("Practitioner", "PractitionerRole", "Patient", "Device"):
        return {"reference": who}
    return {"display": who}

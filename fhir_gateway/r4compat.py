"""What differs between FHIR R4 (4.0.1, which UK Core profiles) and R4B (4.3.0, the models
fhir.resources ships) for the resources carejoin stores, and how validation bridges it.

The differences were found by comparing every element (name, type, cardinality, reference
targets) of fhir.resources 6.4.0 (R4 4.0.1) with fhir.resources 8.3.0 (R4B 4.3.0) for all
stored types and the data types they use; ``docs/r4-r4b.md`` lists them. Only three matter
here:

1. ``Extension.value[x]``: R4 allows ``valueMeta``; R4B does not. R4B adds
   ``valueCodeableReference`` and ``valueRatioRange``, which R4 does not have. Extensions can
   sit anywhere in a resource, so the whole tree is checked.
2. ``Observation.subject`` and ``DiagnosticReport.subject``: R4 allows
   ``Reference(Patient | Group | Device | Location)``; R4B widens this to Organization,
   Practitioner, Procedure, Medication and Substance.
3. Reference target types in general: fhir.resources does not check them at all, so the R4
   target lists of each resource's own (top-level) reference elements are checked here, from
   the models' ``enum_reference_types`` with the R4 lists of point 2 laid over them.

Everything else the R4B models accept for these types is valid R4 and the reverse.
"""

from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

R4_ONLY_EXTENSION_VALUES = frozenset({"valueMeta"})
R4B_ONLY_EXTENSION_VALUES = frozenset({"valueCodeableReference", "valueRatioRange"})

R4_REFERENCE_TARGETS: Mapping[tuple[str, str], frozenset[str]] = {
    ("Observation", "subject"): frozenset({"Patient", "Group", "Device", "Location"}),
    ("DiagnosticReport", "subject"): frozenset({"Patient", "Group", "Device", "Location"}),
}

Rejection = tuple[str, str]  # (path below the resource, message)


def r4_only_rejections(resource: Mapping[str, Any]) -> list[Rejection]:
    """Problems that make ``resource`` invalid R4 although the R4B models would accept it,
    and problems in the R4-only elements the R4B models cannot check."""
    rejections: list[Rejection] = []
    found = _extension_values(resource, "") if _carries(resource, _VERSION_SPECIFIC) else ()
    for path, key, value in found:
        if key in R4B_ONLY_EXTENSION_VALUES:
            rejections.append(
                (f"{path}.{key}", f"Extension.{key} is FHIR R4B; R4 extensions cannot carry it")
            )
        elif key in R4_ONLY_EXTENSION_VALUES:
            rejections.extend(_meta_problems(f"{path}.{key}", value))
    resource_type = resource.get("resourceType")
    if isinstance(resource_type, str):
        rejections.extend(_reference_target_rejections(resource_type, resource))
        rejections.extend(_code_rejections(resource_type, resource))
    return rejections


def prepare_for_r4b_validation(resource: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``resource`` the R4B models can validate: R4-only ``valueMeta`` extension
    values (checked by ``r4_only_rejections``) are left out. Returns ``resource`` itself when
    nothing needs changing, which is almost always."""
    if not _carries(resource, R4_ONLY_EXTENSION_VALUES):
        return resource
    return _without_meta_values(resource)  # type: ignore[no-any-return]


def _without_meta_values(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _without_meta_values(v) for k, v in node.items() if k not in R4_ONLY_EXTENSION_VALUES
        }
    if isinstance(node, list):
        return [_without_meta_values(item) for item in node]
    return node


_VERSION_SPECIFIC = R4_ONLY_EXTENSION_VALUES | R4B_ONLY_EXTENSION_VALUES


def _carries(node: Any, wanted: frozenset[str]) -> bool:
    """Whether any extension under ``node`` carries a ``value[x]`` key in ``wanted``.

    The quick look every write takes (such values are rare): a key is in the serialised JSON
    as it is named (orjson escapes no letters), so a resource whose JSON does not contain the
    names is not walked at all."""
    text = orjson.dumps(node, default=str)
    if not any(name.encode() in text for name in wanted):
        return False
    return any(key in wanted for _path, key, _value in _extension_values(node, ""))


def _extension_values(node: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    """(path of the extension, value[x] key, value) for every extension under ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else key
            if key in ("extension", "modifierExtension") and isinstance(value, list):
                for index, extension in enumerate(value):
                    ext_path = f"{child}[{index}]"
                    if isinstance(extension, dict):
                        for ext_key, ext_value in extension.items():
                            if ext_key.startswith("value"):
                                yield ext_path, ext_key, ext_value
                    yield from _extension_values(extension, ext_path)
            elif isinstance(value, (dict, list)):
                yield from _extension_values(value, child)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _extension_values(item, f"{path}[{index}]")


def _meta_problems(path: str, value: Any) -> list[Rejection]:
    try:
        get_fhir_model_class("Meta").model_validate(value)
    except ValidationError as exc:
        return [(path, f"valueMeta is not a valid Meta: {err['msg']}") for err in exc.errors()]
    return []


@cache
def reference_targets(resource_type: str) -> Mapping[str, frozenset[str]]:
    """The allowed target types of each top-level Reference element of ``resource_type``
    in R4 (empty set: any type)."""
    targets: dict[str, frozenset[str]] = {}
    for name, field in get_fhir_model_class(resource_type).model_fields.items():
        extra = field.json_schema_extra
        if not isinstance(extra, dict) or "enum_reference_types" not in extra:
            continue
        allowed = frozenset(str(t) for t in extra["enum_reference_types"])  # type: ignore[union-attr]
        alias = field.alias or name
        allowed = R4_REFERENCE_TARGETS.get((resource_type, alias), allowed)
        if "Resource" in allowed or not allowed:
            continue
        targets[alias] = allowed
    return targets


def _reference_target_rejections(
    resource_type: str, resource: Mapping[str, Any]
) -> Iterator[Rejection]:
    targets = reference_targets(resource_type)
    for alias, allowed in targets.items():
        value = resource.get(alias)
        if value is None:
            continue
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            target = _target_type(item.get("reference"))
            if target is None or target in allowed:
                continue
            path = f"{alias}[{index}]" if isinstance(value, list) else alias
            yield (
                f"{path}.reference",
                f"{resource_type}.{alias} cannot refer to a resource of type {target}; R4 allows "
                + ", ".join(sorted(allowed)),
            )


def _target_type(reference: Any) -> str | None:
    """The resource type a literal reference names, if it names one."""
    if not isinstance(reference, str) or reference.startswith(("#", "urn:")):
        return None
    parts = reference.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2:
        return None
    candidate = parts[-2]
    if candidate[:1].isupper() and candidate.isalpha():
        return candidate
    return None


@cache
def required_codes(resource_type: str) -> Mapping[str, frozenset[str]]:
    """The allowed values of each top-level ``code`` element of ``resource_type`` whose
    required binding the models list in full (a list ending in ``+`` is a partial list and is
    not enforced)."""
    codes: dict[str, frozenset[str]] = {}
    for name, field in get_fhir_model_class(resource_type).model_fields.items():
        extra = field.json_schema_extra
        if not isinstance(extra, dict):
            continue
        values = extra.get("enum_values")
        if not isinstance(values, list) or not values or "+" in values:
            continue
        codes[field.alias or name] = frozenset(str(v) for v in values)
    return codes


def _code_rejections(resource_type: str, resource: Mapping[str, Any]) -> Iterator[Rejection]:
    for alias, allowed in required_codes(resource_type).items():
        value = resource.get(alias)
        if value is None:
            continue
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if isinstance(item, str) and item not in allowed:
                path = f"{alias}[{index}]" if isinstance(value, list) else alias
                yield (
                    path,
                    f"'{item}' is not a valid {resource_type}.{alias}; expected one of "
                    + ", ".join(sorted(allowed)),
                )

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
   Practitioner, Procedure, Medication and Substance. fhir.resources does not check reference
   targets at all; ``fhir_gateway.r4rules`` checks them with R4's lists.

Everything else the R4B models accept for these types is valid R4 and the reverse. The rules
neither package's models check (required code bindings, reference targets, empty elements)
are in ``fhir_gateway.r4rules``.
"""

from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

R4_ONLY_EXTENSION_VALUES = frozenset({"valueMeta"})
R4B_ONLY_EXTENSION_VALUES = frozenset({"valueCodeableReference", "valueRatioRange"})

Rejection = tuple[str, str]  # (path below the resource, message)


def r4_only_rejections(resource: Mapping[str, Any], text: bytes | None = None) -> list[Rejection]:
    """Problems that make ``resource`` invalid R4 although the R4B models would accept it,
    and problems in the R4-only elements the R4B models cannot check."""
    rejections: list[Rejection] = []
    carries = _carries(resource, _VERSION_SPECIFIC, text)
    found = _extension_values(resource, "") if carries else ()
    for path, key, value in found:
        if key in R4B_ONLY_EXTENSION_VALUES:
            rejections.append(
                (f"{path}.{key}", f"Extension.{key} is FHIR R4B; R4 extensions cannot carry it")
            )
        elif key in R4_ONLY_EXTENSION_VALUES:
            rejections.extend(_meta_problems(f"{path}.{key}", value))
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


def _carries(node: Any, wanted: frozenset[str], text: bytes | None = None) -> bool:
    """Whether any extension under ``node`` carries a ``value[x]`` key in ``wanted``.

    The quick look every write takes (such values are rare): a key is in the serialised JSON
    as it is named (orjson escapes no letters), so a resource whose JSON does not contain the
    names is not walked at all. ``text``: ``node`` serialised, if the caller has it."""
    if text is None:
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

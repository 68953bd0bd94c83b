"""The rules of FHIR R4 that fhir.resources' models do not check, at every depth of a
resource: required code bindings, reference target types, and the JSON format's ban on
empty objects, empty arrays and nulls.

- **Required bindings** (R4 4.0.1, "Terminology binding"): a ``code`` element bound with
  strength *required* holds a code of its value set (``Observation.status``,
  ``Patient.telecom.system``, ``Observation.valueQuantity.comparator`` ...); a required
  ``CodeableConcept`` (``Condition.clinicalStatus`` ...) holds at least one coding of its
  value set and no coding of the value set's code systems that the value set leaves out.
- **Reference targets**: a literal reference names a resource type the element allows
  (``Encounter.participant.individual`` cannot point at an Organization); a local one
  (``#id``) names a contained resource (``ref-1``) of such a type.
- **Contained resources** name an R4 resource type, contain none of their own (``dom-2``),
  and are referred to from elsewhere in the resource or refer to it (``dom-3``).
- **JSON format** (R4 2.6.2 and ``ele-1``): an element has a value or children; arrays are
  never empty; ``null`` appears only inside an array of primitives whose ``_`` twin carries
  the extension for that position.

Where each rule applies comes from ``fhir_gateway/data/r4_structure.json``, written from the
R4 definitions by ``scripts/make_r4_structure.py`` (its ``about`` says how, and which value
sets cannot be enumerated and are not checked). Only elements under which something is checked
are listed, so a resource's walk visits what matters and skips the rest.
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import orjson

STRUCTURE_FILE = Path(__file__).parent / "data" / "r4_structure.json"
LISTED_CODES = 20  # a message lists the allowed codes of a value set up to this many

Problem = tuple[str, str, str]  # (path below the resource, message, OperationOutcome issue code)


@dataclass(frozen=True, slots=True)
class Binding:
    url: str
    codes: frozenset[str]  # every code of the value set (a code element holds one of these)
    systems: Mapping[str, frozenset[str]]  # by code system, where known (for codings)

    def describe(self) -> str:
        codes = sorted(self.codes)
        if len(codes) <= LISTED_CODES:
            return "expected one of " + ", ".join(codes)
        return f"expected a code of the value set {self.url}"


# An element's rule: ("type", name) walk into it; ("code", Binding); ("concept", Binding);
# ("reference", allowed types, empty for any); ("contained",)
Entry = tuple[Any, ...]


@cache
def _document() -> Mapping[str, Any]:
    return json.loads(STRUCTURE_FILE.read_text())  # type: ignore[no-any-return]


@cache
def structure() -> Mapping[str, Mapping[str, Entry]]:
    document = _document()
    bindings: dict[str, Binding] = {}
    for url, value_set in document["valueSets"].items():
        systems = {s: frozenset(codes) for s, codes in value_set.get("systems", {}).items()}
        codes = frozenset(value_set["codes"]) if "codes" in value_set else frozenset()
        bindings[url] = Binding(url, codes.union(*systems.values()), systems)
    types: dict[str, dict[str, Entry]] = {}
    for name, entries in document["types"].items():
        compiled: dict[str, Entry] = {}
        for key, (kind, *rest) in entries.items():
            if kind in ("code", "concept"):
                compiled[key] = (kind, bindings[rest[0]])
            elif kind == "reference":
                compiled[key] = (kind, frozenset(rest[0]))
            else:
                compiled[key] = (kind, *rest)
        types[name] = compiled
    return types


@cache
def resource_types() -> frozenset[str]:
    """Every resource type R4 defines."""
    return frozenset(_document()["resourceTypes"])


def binding_problems(resource: Mapping[str, Any], text: bytes | None = None) -> list[Problem]:
    """Every required-binding, reference-target and JSON-format problem in ``resource``, each
    with its FHIRPath (``Patient.telecom[0].system``). ``text``: the resource's serialised
    JSON if the caller has it (the format check looks there first)."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return []
    found = _Found(_local_resources(resource))
    _walk(structure(), resource_type, resource, f"{resource_type}.", found)
    problems = found.problems
    if text is None:
        text = orjson.dumps(resource, default=str)
    if found.local:
        _unreferenced(resource, resource_type, text, problems)
    if b"{}" in text or b"[]" in text or b"null" in text:  # a quick look: almost never
        _format_problems(resource, resource_type, problems)
    return problems


@dataclass(slots=True)
class _Found:
    local: Mapping[str, str]  # contained resources: id -> resourceType
    problems: list[Problem] = field(default_factory=list)


def _local_resources(resource: Mapping[str, Any]) -> dict[str, str]:
    contained = resource.get("contained")
    local: dict[str, str] = {}
    if isinstance(contained, list):
        for item in contained:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                local[item["id"]] = str(item.get("resourceType"))
    return local


def _unreferenced(
    resource: Mapping[str, Any], resource_type: str, text: bytes, problems: list[Problem]
) -> None:
    """dom-3: a contained resource is referred to from elsewhere in the resource (``#id``)
    or refers to its container (``#``)."""
    contained = resource.get("contained")
    assert isinstance(contained, list)
    for index, item in enumerate(contained):
        if not isinstance(item, dict):
            continue
        local_id = item.get("id")
        if not isinstance(local_id, str):
            problems.append(
                (
                    f"{resource_type}.contained[{index}].id",
                    "a contained resource needs an id, for the references to it (dom-3)",
                    "structure",
                )
            )
            continue
        if orjson.dumps(f"#{local_id}") in text or b'"#"' in orjson.dumps(item):
            continue
        problems.append(
            (
                f"{resource_type}.contained[{index}]",
                f"contained resource '{local_id}' is referred to from nowhere in the resource "
                "(dom-3: refer to it as '#" + local_id + "', or leave it out)",
                "structure",
            )
        )


def _walk(
    types: Mapping[str, Mapping[str, Entry]],
    type_name: str,
    node: Mapping[str, Any],
    path: str,
    found: _Found,
) -> None:
    rules = types.get(type_name)
    if rules is None:
        return
    for key, value in node.items():
        entry = rules.get(key)
        if entry is None:
            if key[:1] == "_":
                _walk_primitive_extensions(types, value, f"{path}{key}", found)
            continue
        child = f"{path}{key}"
        if isinstance(value, list):
            for index, item in enumerate(value):
                _check(types, entry, item, f"{child}[{index}]", found)
        else:
            _check(types, entry, value, child, found)


def _check(
    types: Mapping[str, Mapping[str, Entry]],
    entry: Entry,
    value: Any,
    path: str,
    found: _Found,
) -> None:
    problems = found.problems
    kind = entry[0]
    if kind == "code":
        binding: Binding = entry[1]
        if isinstance(value, str) and value not in binding.codes:
            problems.append((path, _not_in(binding, value, path), "code-invalid"))
        return
    if not isinstance(value, dict):
        return  # the models report an element of the wrong kind
    if kind == "type":
        _walk(types, entry[1], value, f"{path}.", found)
    elif kind == "concept":
        _concept_problems(entry[1], value, path, problems)
        _walk(types, "CodeableConcept", value, f"{path}.", found)
    elif kind == "reference":
        allowed: frozenset[str] = entry[1]
        reference = value.get("reference")
        target = target_type(reference)
        if isinstance(reference, str) and reference[:1] == "#" and len(reference) > 1:
            target = found.local.get(reference[1:])
            if target is None:
                problems.append(
                    (
                        f"{path}.reference",
                        f"no contained resource has the id '{reference[1:]}' (ref-1)",
                        "structure",
                    )
                )
            elif target not in resource_types():
                target = None  # the contained resource's own problem is reported
        if allowed and target is not None and target not in allowed:
            problems.append(
                (
                    f"{path}.reference",
                    f"{_element(path)} cannot refer to a resource of type {target}; R4 allows "
                    + ", ".join(sorted(allowed)),
                    "structure",
                )
            )
        _walk(types, "Reference", value, f"{path}.", found)
    elif kind == "contained":
        contained_type = value.get("resourceType")
        if not isinstance(contained_type, str) or contained_type not in resource_types():
            problems.append(
                (
                    f"{path}.resourceType",
                    f"a contained resource needs a resourceType naming an R4 resource type; "
                    f"{json.dumps(contained_type)} is not one",
                    "structure",
                )
            )
            return
        if "contained" in value:
            problems.append(
                (
                    f"{path}.contained",
                    "a contained resource cannot contain resources of its own (dom-2)",
                    "structure",
                )
            )
        _walk(types, contained_type, value, f"{path}.", found)


def _concept_problems(
    binding: Binding, concept: Mapping[str, Any], path: str, problems: list[Problem]
) -> None:
    codings = concept.get("coding")
    found = False
    if isinstance(codings, list):
        for index, coding in enumerate(codings):
            if not isinstance(coding, dict):
                continue
            system = coding.get("system")
            codes = binding.systems.get(system) if isinstance(system, str) else None
            if codes is None:
                continue
            if coding.get("code") in codes:
                found = True
            else:
                problems.append(
                    (
                        f"{path}.coding[{index}].code",
                        _not_in(binding, coding.get("code"), path),
                        "code-invalid",
                    )
                )
                found = True  # reported once, at the coding
    if not found:
        systems = ", ".join(sorted(binding.systems))
        problems.append(
            (
                path,
                f"{_element(path)} must carry a coding from the value set {binding.url} "
                f"(required binding; code system {systems}); {binding.describe()}",
                "code-invalid",
            )
        )


def _not_in(binding: Binding, value: Any, path: str) -> str:
    return (
        f"'{value}' is not a valid {_element(path)} (required binding {binding.url}); "
        + binding.describe()
    )


def _walk_primitive_extensions(
    types: Mapping[str, Mapping[str, Entry]], value: Any, path: str, found: _Found
) -> None:
    """A primitive's ``_element`` (a list of them, with nulls, for a repeating one) carries
    extensions."""
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        where = f"{path}[{index}]" if isinstance(value, list) else path
        extensions = item.get("extension")
        if isinstance(extensions, list):
            for position, extension in enumerate(extensions):
                _check(
                    types,
                    ("type", "Extension"),
                    extension,
                    f"{where}.extension[{position}]",
                    found,
                )


def _format_problems(node: Any, path: str, problems: list[Problem]) -> None:
    if isinstance(node, dict):
        if not node:
            problems.append(
                (
                    path,
                    f"{_element(path)} is empty: an element must have a value or children (ele-1)",
                    "structure",
                )
            )
            return
        for key, value in node.items():
            child = f"{path}.{key}"
            if value is None:
                problems.append(
                    (
                        child,
                        f"{_element(child)} is null: JSON null is not a FHIR "
                        "value (leave the element out)",
                        "structure",
                    )
                )
            elif isinstance(value, list):
                if not value:
                    problems.append(
                        (
                            child,
                            f"{_element(child)} is an empty array: leave the element out instead",
                            "structure",
                        )
                    )
                    continue
                twin = node.get(f"_{key}") if not key.startswith("_") else node.get(key[1:])
                for index, item in enumerate(value):
                    if item is None:
                        if isinstance(twin, list) and index < len(twin) and twin[index] is not None:
                            continue  # a primitive array's placeholder for an extension
                        problems.append(
                            (
                                f"{child}[{index}]",
                                f"{_element(child)} holds a null that nothing stands for",
                                "structure",
                            )
                        )
                    else:
                        _format_problems(item, f"{child}[{index}]", problems)
            elif isinstance(value, dict):
                _format_problems(value, child, problems)


_INDEX = re.compile(r"\[\d+\]")


def _element(path: str) -> str:
    """``telecom[0].system`` -> ``telecom.system`` (the element, not the instance)."""
    return _INDEX.sub("", path)


def target_type(reference: Any) -> str | None:
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

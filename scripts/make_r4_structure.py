"""Write ``fhir_gateway/data/r4_structure.json``: where FHIR R4 (4.0.1) puts required code
bindings and reference target lists in the resources carejoin stores, at every depth.

The R4 definitions come from the npm package ``fhir`` (FHIR.js, 4.12.0), which ships R4's
StructureDefinitions and ValueSets in a parsed form (``profiles/types.json``,
``profiles/valuesets.json``); the codes of a value set come from fhir.resources' model
enumerations where those list it in full (they match fhir.resources 6.4.0, which is R4), and
otherwise from FHIR.js's expansion, which is refused if it repeats a code (FHIR.js expands a
value set that picks some codes of a code system as the whole system followed by the picked
codes). Run it again only to change what is covered::

    npm pack fhir@4.12.0 && tar xzf fhir-4.12.0.tgz
    .venv/bin/python scripts/make_r4_structure.py package/profiles
"""

import json
import sys
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from fhir_gateway.search.registry import SUPPORTED_TYPES
from fhir_gateway.validation import _element_type

OUT = Path(__file__).resolve().parent.parent / "fhir_gateway" / "data" / "r4_structure.json"
PRIMITIVES_WITH_CODES = {"code"}
REFERENCE = "Reference"
SKIP_TYPES = {"Resource", "Element", "BackboneElement", "xhtml"}


def main(profiles: Path) -> None:
    types: dict[str, Any] = json.loads((profiles / "types.json").read_text())
    value_sets: dict[str, Any] = json.loads((profiles / "valuesets.json").read_text())
    model_codes, model_targets = _model_enumerations()
    disagreements: list[str] = []
    out_types: dict[str, dict[str, list[Any]]] = {}
    used_sets: dict[str, Any] = {}
    unenumerable: set[str] = set()

    def codes_of(url: str, element: str) -> Any:
        if element in model_codes:
            return {"codes": model_codes[element]}
        vs = value_sets.get(url)
        if vs is None:
            unenumerable.add(url)
            return None
        systems: dict[str, list[str]] = {}
        for system in vs["systems"]:
            codes = [c["code"] for c in system.get("codes", [])]
            if len(codes) != len(set(codes)):
                raise SystemExit(f"{url}: FHIR.js's expansion repeats codes; list it by hand")
            systems.setdefault(system["uri"], []).extend(codes)
        if not any(systems.values()):
            unenumerable.add(url)
            return None
        return {"systems": systems}

    def describe(name: str, props: list[dict[str, Any]]) -> None:
        if name in out_types:
            return
        entries: dict[str, list[Any]] = {}
        out_types[name] = entries
        for prop in props:
            key = prop["_name"]
            if key.startswith("_"):
                continue
            kind = prop["_type"]
            element = f"{name}.{key}"
            if prop.get("_valueSetStrength") == "required" and kind in (
                "code",
                "CodeableConcept",
            ):
                url = prop["_valueSet"].split("|")[0]
                found = codes_of(url, _model_key(element))
                if found is not None:
                    used_sets[url] = found
                    entries[key] = ["code" if kind == "code" else "concept", url]
                    continue
            if kind in ("BackboneElement", "Element") and prop.get("_properties"):
                describe(element, prop["_properties"])
                entries[key] = ["type", element]
            elif kind.startswith("#"):  # the same content as another element (item.item)
                entries[key] = ["type", kind[1:]]
            elif kind == REFERENCE:
                targets = _targets(prop, element, model_targets, disagreements)
                entries[key] = ["reference", [] if "Resource" in targets else targets]
                describe(REFERENCE, types[REFERENCE]["_properties"])
            elif kind == "Resource" and key == "contained":
                entries[key] = ["contained"]
            elif (
                kind in types
                and kind not in SKIP_TYPES
                and types[kind]["_kind"] != "primitive-type"
            ):
                describe(kind, types[kind]["_properties"])
                entries[key] = ["type", kind]

    for resource_type in sorted(SUPPORTED_TYPES):
        describe(resource_type, types[resource_type]["_properties"])
    pruned = _prune(out_types)
    document = {
        "about": (
            "Required code bindings and reference targets of FHIR R4 4.0.1, at every depth, "
            "for the resource types carejoin stores; written by scripts/make_r4_structure.py "
            "from the npm package fhir 4.12.0 (R4 definitions) and fhir.resources 8.3.0's "
            "enumerations. Value sets that cannot be enumerated are not checked: "
            + ", ".join(sorted(unenumerable))
        ),
        "fhirVersion": "4.0.1",
        "resourceTypes": sorted(
            name
            for name, definition in types.items()
            if definition.get("_kind") == "resource" and name not in ("Resource", "DomainResource")
        ),
        "valueSets": {url: used_sets[url] for url in sorted(used_sets) if _used(url, pruned)},
        "types": pruned,
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"{OUT}: {len(pruned)} types, {len(document['valueSets'])} value sets")
    for line in disagreements:
        print(line)


def _targets(
    prop: dict[str, Any],
    element: str,
    model_targets: dict[str, list[str]],
    disagreements: list[str],
) -> list[str]:
    """A Reference element's R4 target types: FHIR.js lists them for a resource's own
    elements but not inside backbone elements, where fhir.resources' lists are used (they
    match R4 there: docs/r4-r4b.md). Where both list them, differences are printed."""
    listed = sorted(p.rsplit("/", 1)[1] for p in prop.get("_targetProfiles", []) if "/" in p)
    modelled = sorted(model_targets.get(_model_key(element), []))
    if listed and modelled and listed != modelled:
        disagreements.append(f"{element}: R4 {listed}, fhir.resources (R4B) {modelled}")
    return listed or modelled


def _model_key(element: str) -> str:
    """``Observation.component.valueQuantity`` style name -> fhir.resources class name."""
    parts = element.split(".")
    return "".join(p[:1].upper() + p[1:] for p in parts[:-1]) + "." + parts[-1]


def _model_enumerations() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """fhir.resources' complete enumerations (a list ending in ``+`` is partial, one holding
    ``etc.`` is an example) and reference target lists, by class name and element."""
    found: dict[str, list[str]] = {}
    targets: dict[str, list[str]] = {}
    seen: set[Any] = set()

    def walk(model: Any) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            values = extra.get("enum_values")
            if isinstance(values, list) and values and "+" not in values and "etc." not in values:
                found[f"{model.__name__}.{field.alias or name}"] = [str(v) for v in values]
            reference_types = extra.get("enum_reference_types")
            if isinstance(reference_types, list):
                targets[f"{model.__name__}.{field.alias or name}"] = [
                    str(t) for t in reference_types
                ]
            annotation = _element_type(field.annotation)
            if annotation is not None:
                walk(annotation.get_model_klass())

    for resource_type in SUPPORTED_TYPES:
        walk(get_fhir_model_class(resource_type))
    return found, targets


def _prune(types: dict[str, dict[str, list[Any]]]) -> dict[str, dict[str, list[Any]]]:
    """Leave out elements under which nothing is checked."""
    useful: set[str] = set()

    def checks(entry: list[Any]) -> bool:
        kind = entry[0]
        if kind in ("code", "concept", "contained"):
            return True
        if kind == "reference":
            return bool(entry[1]) or REFERENCE in useful
        return kind == "type" and entry[1] in useful

    changed = True
    while changed:
        changed = False
        for name, entries in types.items():
            if name not in useful and any(checks(entry) for entry in entries.values()):
                useful.add(name)
                changed = True
    pruned: dict[str, dict[str, list[Any]]] = {}
    for name in sorted(useful):
        kept = {
            key: entry
            for key, entry in types[name].items()
            if entry[0] != "type" or entry[1] in useful
        }
        pruned[name] = dict(sorted(kept.items()))
    return pruned


def _used(url: str, types: dict[str, dict[str, list[Any]]]) -> bool:
    return any(
        entry[0] in ("code", "concept") and entry[1] == url
        for entries in types.values()
        for entry in entries.values()
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))

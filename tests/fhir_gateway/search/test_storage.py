"""Derived search parameters: which they are, and that their rows lose nothing."""

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from carejoin.synthetic import person_bundles
from fhir_gateway.search import extract as extraction
from fhir_gateway.search.registry import SEARCH_PARAMS
from fhir_gateway.search.storage import DERIVED, Stored, has_own_rows, stored


def test_restrictions_and_unions_are_found_from_the_definitions() -> None:
    assert stored("Observation", "patient") == Stored(("subject",), ("Patient",))
    assert stored("Encounter", "practitioner") == Stored(("participant",), ("Practitioner",))
    assert stored("Person", "relatedperson") == Stored(("link",), ("RelatedPerson",))
    assert stored("Provenance", "patient") == Stored(("target",), ("Patient",))
    assert stored("Task", "patient") == Stored(("subject",), ("Patient",))  # both are Task.for
    assert set(stored("Observation", "combo-code").params) == {"code", "component-code"}
    assert set(stored("Observation", "combo-value-quantity").params) == {
        "value-quantity",
        "component-value-quantity",
    }
    # Parameters with rows of their own answer for themselves.
    assert stored("Observation", "subject") == Stored(("subject",))
    assert stored("Observation", "code") == Stored(("code",))
    # No unrestricted parameter shares AuditEvent.patient's paths; deceased's extraction
    # depends on its name; death-date shares its path but not its type.
    assert has_own_rows("AuditEvent", "patient")
    assert has_own_rows("Patient", "deceased")
    assert has_own_rows("Patient", "death-date")
    assert has_own_rows("Patient", "unknown-parameter")


def test_every_derived_parameter_reads_only_parameters_with_rows() -> None:
    for resource_type, derived in DERIVED.items():
        for code, rows in derived.items():
            param = SEARCH_PARAMS[resource_type][code]
            assert rows.params
            assert code not in rows.params
            for part in rows.params:
                assert has_own_rows(resource_type, part), (resource_type, code, part)
                assert SEARCH_PARAMS[resource_type][part].type is param.type
            assert rows.targets == param.targets


def _edge_cases() -> Iterator[dict[str, Any]]:
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "1"}]},
        "dataAbsentReason": {"coding": [{"code": "unknown"}]},
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                "valueQuantity": {"value": 1, "code": "mm[Hg]"},
            },
            {"code": {"text": "no coding"}, "dataAbsentReason": {"coding": [{"code": "asked"}]}},
        ],
    }
    for subject in (
        "Patient/p1",
        "Group/g1",
        "https://other.example/fhir/Patient/p9",
        "https://other.example/fhir/Patient/p9/_history/2",
        "urn:uuid:6d2b0b8e-5a5b-4c1e-9a57-1b1a3c8e2f10",
        "p-without-type",
    ):
        yield dict(observation, subject={"reference": subject})
    yield {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "participant": [
            {"individual": {"reference": "Practitioner/d1"}},
            {"individual": {"reference": "PractitionerRole/r1"}},
            {"individual": {"reference": "RelatedPerson/x"}},
        ],
    }
    yield {
        "resourceType": "Person",
        "link": [
            {"target": {"reference": "Patient/p1"}},
            {"target": {"reference": "Practitioner/d1"}},
            {"target": {"reference": "RelatedPerson/r1"}},
        ],
    }
    yield {
        "resourceType": "Provenance",
        "target": [{"reference": "Patient/p1"}, {"reference": "Observation/o1"}],
        "recorded": "2026-01-01T00:00:00Z",
        "agent": [{"who": {"reference": "Device/d"}}],
    }


def _population() -> Iterator[dict[str, Any]]:
    for _source, bundle in person_bundles(people=40, start=0, stop=40):
        for entry in bundle["entry"]:
            yield entry["resource"]


def _rows(index: Any) -> set[tuple[str, tuple[Any, ...]]]:
    """Every entry as (param, the rest of its values)."""
    found = set()
    for kind in ("tokens", "strings", "dates", "references", "quantities"):
        for entry in getattr(index, kind):
            values = tuple(getattr(entry, f) for f in entry.__slots__ if f != "param")
            found.add((entry.param, (kind, *values)))
    return found


def test_a_derived_parameters_rows_are_exactly_those_it_had_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resources = [*_edge_cases(), *_population()]
    # Extraction as it was before derived parameters: every parameter its own rows.
    with monkeypatch.context() as patched:
        patched.setattr(extraction, "has_own_rows", lambda _t, _c: True)
        extraction._compiled.cache_clear()
        before_all = [_rows(extraction.extract(r)) for r in resources]
    extraction._compiled.cache_clear()
    checked = 0
    for resource, before in zip(resources, before_all, strict=True):
        resource_type = resource["resourceType"]
        now = _rows(extraction.extract(resource))
        derived = DERIVED.get(resource_type, {})
        # Nothing else changed: the parameters with rows have the same rows.
        assert now == {(p, v) for p, v in before if p not in derived}
        for code, rows in derived.items():
            own = {v for p, v in before if p == code}
            through = {
                v for p, v in now if p in rows.params and (not rows.targets or v[1] in rows.targets)
            }
            assert through == own, (resource_type, code)
            checked += len(own)
    assert checked > 1_000  # the population exercises the derived parameters


def test_an_observations_rows_are_fewer() -> None:
    observation = next(r for r in _population() if r["resourceType"] == "Observation")
    index = extraction.extract(observation)
    params = {
        e.param for kind in ("tokens", "references", "quantities") for e in getattr(index, kind)
    }
    assert {"subject", "code"} <= params
    assert not params & {"patient", "combo-code", "combo-value-quantity"}


def test_a_changed_registry_is_derived_afresh() -> None:
    from fhir_gateway.search.storage import _derive

    params = dict(SEARCH_PARAMS["Observation"])
    params["subject"] = replace(params["subject"], paths=("subject", "focus"))
    derived = _derive(params)
    assert "patient" not in derived  # its paths are no longer subject's
    assert "combo-code" in derived

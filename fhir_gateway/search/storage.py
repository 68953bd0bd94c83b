"""Which index rows answer each search parameter.

Some R4 parameters select exactly what other parameters of the same resource type already
index, and are given no rows of their own:

- **a restriction**: ``Observation.patient`` is ``subject.where(resolve() is Patient)``, the
  ``subject`` rows whose target is a Patient (``Encounter.practitioner`` is ``participant``'s
  Practitioners, ``Person.patient`` is ``link``'s Patients, ``Provenance.patient`` is
  ``target``'s Patients ...);
- **a union**: ``Observation.combo-code`` is ``code | component.code``, the rows of ``code``
  and of ``component-code`` together (likewise ``combo-value-quantity``,
  ``combo-value-concept``, ``combo-data-absent-reason``).

Searches, ``:missing``, ``:not``, sorting, chains, ``_include`` and ``_revinclude`` on such a
parameter read the rows of the parameters it is made of (``fhir_gateway.search.query``), and
the extractor does not write it. Nothing is lost: an index entry depends only on the element
it comes from and the parameter's type, never on the parameter's name (the one exception,
``Patient.deceased``, is never derived). On the synthetic population this is a quarter of
the index rows (8.8 a resource instead of 11.7; four of an Observation's seventeen).

The table is worked out from the registry's definitions, not written by hand: a parameter
with the same type and paths as another that has no target restriction, plus a restriction
of its own, is that parameter restricted; a parameter whose paths are exactly the union of
other same-type parameters' (each with fewer paths and the same targets) is their union.
Every part has rows of its own (a test checks it: R4 derives nothing through a derived
parameter).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from fhir_gateway.search.model import SearchParam
from fhir_gateway.search.registry import SEARCH_PARAMS

# Parameters never derived: read from the resource table, or extracted in a way that depends
# on their name.
_OWN_ROWS = frozenset({"_id", "_lastUpdated", "deceased"})


@dataclass(frozen=True, slots=True)
class Stored:
    """The rows answering a parameter: those of ``params`` and, when ``targets`` is not
    empty, only those whose target type is one of them."""

    params: tuple[str, ...]
    targets: tuple[str, ...] = ()


def _derive(params: Mapping[str, SearchParam]) -> dict[str, Stored]:
    derived: dict[str, Stored] = {}
    for p in params.values():
        if p.code in _OWN_ROWS:
            continue
        peers = [
            q
            for q in params.values()
            if q.code != p.code and q.type == p.type and q.code not in _OWN_ROWS
        ]
        base = next((q for q in peers if q.paths == p.paths and p.targets and not q.targets), None)
        if base is not None:
            derived[p.code] = Stored((base.code,), p.targets)
            continue
        mine = set(p.paths)
        parts = [q for q in peers if q.targets == p.targets and set(q.paths) < mine]
        if len(parts) > 1 and set().union(*(q.paths for q in parts)) == mine:
            derived[p.code] = Stored(tuple(q.code for q in parts), p.targets)
    return derived


DERIVED: Mapping[str, Mapping[str, Stored]] = MappingProxyType(
    {
        resource_type: MappingProxyType(found)
        for resource_type, params in SEARCH_PARAMS.items()
        if (found := _derive(params))
    }
)


def stored(resource_type: str, code: str) -> Stored:
    """The rows answering ``resource_type``'s parameter ``code``."""
    found = DERIVED.get(resource_type, {}).get(code)
    return found if found is not None else Stored((code,))


def has_own_rows(resource_type: str, code: str) -> bool:
    """Whether the extractor writes rows for this parameter."""
    return code not in DERIVED.get(resource_type, {})

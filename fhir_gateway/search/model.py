"""The vocabulary of search: parameter definitions and the index entries a resource yields.

Pure data: the registry (``registry.py``) defines parameters, the extractor (``extract.py``)
turns a resource's JSON into index entries, and the store writes the entries into one index
table per kind (token, string, date, reference, quantity). ``uri`` parameters are indexed as
tokens without a system (exact match is what both need); ``number`` parameters are indexed as
quantities without a unit.
"""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class ParamType(StrEnum):
    TOKEN = "token"
    STRING = "string"
    DATE = "date"
    REFERENCE = "reference"
    QUANTITY = "quantity"
    NUMBER = "number"
    URI = "uri"
    SPECIAL = "special"
    COMPOSITE = "composite"


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One FHIR R4 search parameter of one resource type.

    ``paths`` are simple FHIRPath-like element paths from the resource root, without the
    resource type, for example ``("subject",)`` or ``("effective",)`` where ``effective`` is a
    choice element (``effectiveDateTime``, ``effectivePeriod`` ...), or ``("name.family",)``.
    ``targets`` restricts a reference parameter to target types (``Observation.patient`` is
    ``subject`` restricted to ``Patient``); empty means any type.
    ``code`` is the canonical parameter name, ``description`` what the spec says it matches.
    """

    code: str
    type: ParamType
    paths: tuple[str, ...]
    targets: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True, slots=True)
class TokenEntry:
    param: str
    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class StringEntry:
    param: str
    value: str  # normalised (fhir_gateway.search.text.normalize)
    exact: str  # as sent, for :exact


@dataclass(frozen=True, slots=True)
class DateEntry:
    param: str
    low: datetime  # UTC, inclusive
    high: datetime  # UTC, inclusive


@dataclass(frozen=True, slots=True)
class ReferenceEntry:
    param: str
    target_type: str | None  # "Patient" for "Patient/123"; None for an absolute URL we cannot split
    target_id: str | None
    url: str | None = None  # an absolute or canonical reference, kept as sent


@dataclass(frozen=True, slots=True)
class QuantityEntry:
    param: str
    value: Decimal
    system: str | None = None
    code: str | None = None
    unit: str | None = None


@dataclass(slots=True)
class IndexEntries:
    """Everything one resource contributes to the search index."""

    tokens: list[TokenEntry] = field(default_factory=list)
    strings: list[StringEntry] = field(default_factory=list)
    dates: list[DateEntry] = field(default_factory=list)
    references: list[ReferenceEntry] = field(default_factory=list)
    quantities: list[QuantityEntry] = field(default_factory=list)

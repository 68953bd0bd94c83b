"""Normalisation of text for FHIR string search.

FHIR R4 string search (spec 3.1.1.5.5) matches case- and accent-insensitively by default,
so both the indexed value and the searched value go through ``normalize``.
"""

import unicodedata


def normalize(value: str) -> str:
    """Lower-case, accent-free, whitespace-folded form of ``value``."""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())

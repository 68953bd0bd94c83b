"""Source feeds: HL7 v2 ADT, the social care extract, bulk NDJSON."""

from typing import Any

ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"


def source_uri(ods: str) -> str:
    """``meta.source`` of everything a source sends: ``urn:carejoin:source:<ODS code>``."""
    return f"urn:carejoin:source:{ods}"


def ods_of_source(source: str | None) -> str | None:
    """The ODS code a ``meta.source`` names (``urn:carejoin:source:<ODS>`` or ``urn:ods:<ODS>``,
    as the store labels it), else None."""
    for prefix in ("urn:carejoin:source:", "urn:ods:"):
        if source and source.startswith(prefix):
            code = source[len(prefix) :]
            return code if code.isalnum() and len(code) <= 32 else None
    return None


def organization(ods: str) -> dict[str, Any]:
    """A logical reference to the organisation with that ODS code."""
    return {"identifier": {"system": ODS_SYSTEM, "value": ods}}

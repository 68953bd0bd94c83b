"""Source feeds: HL7 v2 ADT, the social care extract, bulk NDJSON."""

from typing import Any

ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"


def source_uri(ods: str) -> str:
    """``meta.source`` of everything a source sends: ``urn:carejoin:source:<ODS code>``."""
    return f"urn:carejoin:source:{ods}"


def organization(ods: str) -> dict[str, Any]:
    """A logical reference to the organisation with that ODS code."""
    return {"identifier": {"system": ODS_SYSTEM, "value": ods}}

"""Writing test data through the FHIR API, as a source would."""

from typing import Any

from fastapi.testclient import TestClient


def write_as(client: TestClient, resource: dict[str, Any], source: str) -> str:
    """POST ``resource`` attributed to ``source`` (its ``meta.source``); its new id."""
    response = client.post(
        f"/fhir/{resource['resourceType']}", json={**resource, "meta": {"source": source}}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])

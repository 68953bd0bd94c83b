"""An unexpected error is answered with a 500 OperationOutcome, audited, and leaves the
client's connection usable, on both databases.

The failure is injected into the read's endpoint (``router.read_resource``), which both the
fast read path and the router call; nothing else is replaced.
"""

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from fhir_gateway.rest import router
from fhir_gateway.settings import AuthSettings
from tests.fhir_gateway.audit.records import events_asking
from tests.live_server import live_service


@pytest.fixture
def failing_read(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fails(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(router, "read_resource", fails)


def _is_internal_error(response: httpx.Response) -> None:
    assert response.status_code == 500, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "exception"
    diagnostics = body["issue"][0]["diagnostics"]
    assert diagnostics.startswith("An internal error occurred (request ")
    assert "fire" not in diagnostics  # what went wrong is logged, never sent


@pytest.mark.usefixtures("failing_read")
def test_an_unexpected_error_is_a_500_outcome_and_audited(
    client: TestClient, session: Session
) -> None:
    marker = f"boom-{uuid.uuid4().hex[:8]}"
    response = client.get(f"/fhir/Patient/{marker}")
    _is_internal_error(response)
    (event,) = events_asking(session, marker)
    assert event.outcome == "8"  # serious failure
    assert event.detail == response.json()["issue"][0]["diagnostics"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    auth_settings: AuthSettings,
    agreement_path: str,
) -> Iterator[tuple[str, str]]:
    with live_service(
        request.param,
        tmp_path_factory,
        auth_settings,
        agreement_path,
        name="errors",
        dispatch_events=False,
    ) as found:
        yield found


@pytest.mark.usefixtures("failing_read")
def test_the_connection_outlives_an_unexpected_error(live: tuple[str, str]) -> None:
    # The server used to close a connection whose request raised, after sending the 500:
    # a client keeping it alive then had its next request reset.
    url, token = live
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        for _ in range(3):
            _is_internal_error(client.get(f"{url}/Patient/boom"))
        # And an ordinary request on the same connection is answered as usual.
        assert client.get(f"{url}/metadata").status_code == 200

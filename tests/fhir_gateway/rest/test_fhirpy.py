"""A real FHIR client library (fhirpy) drives a real server over HTTP, on both databases.

The server runs in a thread with uvicorn against its own database (a new SQLite file or a new
PostgreSQL schema), so everything it writes is committed, as in production.
"""

import uuid
from collections.abc import Iterator

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

from fhir_gateway.settings import AuthSettings
from tests.factories import fhir
from tests.live_server import live_service


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    auth_settings: AuthSettings,
    agreement_path: str,
) -> Iterator[tuple[str, str]]:
    """A live server's base URL, and a system token for it."""
    with live_service(
        request.param, tmp_path_factory, auth_settings, agreement_path, name="live"
    ) as found:
        yield found


@pytest.fixture
def base_url(live: tuple[str, str]) -> str:
    return live[0]


@pytest.fixture
def client(live: tuple[str, str]) -> SyncFHIRClient:
    url, token = live
    return SyncFHIRClient(
        url,
        authorization=f"Bearer {token}",
        extra_headers={"Content-Type": "application/fhir+json"},
    )


def test_create_read_update_delete(client: SyncFHIRClient) -> None:
    family = f"Fhirpy{uuid.uuid4().hex[:8]}"
    patient = client.resource("Patient", **fhir.patient(family=family))
    patient.pop("id", None)
    patient.save()
    assert patient.id
    assert patient["meta"]["versionId"] == "1"

    found = client.resources("Patient").search(family=family).fetch()
    assert [p.id for p in found] == [patient.id]

    patient["gender"] = "male"
    patient.save()
    assert patient["meta"]["versionId"] == "2"
    assert client.reference("Patient", patient.id).to_resource()["gender"] == "male"

    patient.delete()
    with pytest.raises((ResourceNotFound, OperationOutcome)):
        client.reference("Patient", patient.id).to_resource()


def test_search_pages_through_every_result_once(client: SyncFHIRClient) -> None:
    family = f"Paged{uuid.uuid4().hex[:8]}"
    created = set()
    for i in range(23):
        p = client.resource("Patient", **fhir.patient(family=family, given=f"G{i:02d}"))
        p.pop("id", None)
        p.save()
        created.add(p.id)
    search = client.resources("Patient").search(family=family).sort("given").limit(5)
    everything = search.fetch_all()
    assert [p.id for p in everything] != []
    assert {p.id for p in everything} == created
    assert len(everything) == len(created)
    assert [p["name"][0]["given"][0] for p in everything] == sorted(f"G{i:02d}" for i in range(23))
    assert search.count() == 23


def test_observations_by_patient_with_include(client: SyncFHIRClient) -> None:
    patient = client.resource("Patient", **fhir.patient())
    patient.pop("id", None)
    patient.save()
    for value in (120, 135, 150):
        obs = client.resource("Observation", **fhir.observation(patient_id=patient.id, value=value))
        obs.pop("id", None)
        obs.save()
    results = (
        client.resources("Observation")
        .search(patient=patient.id, **{"value-quantity": "gt130"})
        .include("Observation", "patient")
        .fetch_raw()
    )
    kinds = sorted(e["resource"]["resourceType"] for e in results["entry"])
    assert kinds == ["Observation", "Observation", "Patient"]


def test_transaction_through_the_client(client: SyncFHIRClient, base_url: str) -> None:
    bundle = fhir.transaction(
        fhir.post_entry(fhir.patient(), full_url="urn:uuid:11111111-2222-3333-4444-555555555555"),
        fhir.post_entry(
            fhir.condition(
                patient_id="x",
                subject={"reference": "urn:uuid:11111111-2222-3333-4444-555555555555"},
            )
        ),
    )
    response = client.execute("", method="post", data=bundle)
    assert response["type"] == "transaction-response"
    locations = [e["response"]["location"].removeprefix(base_url + "/") for e in response["entry"]]
    condition = client.reference(*locations[1].split("/")[:2]).to_resource()
    assert condition["subject"]["reference"] == "/".join(locations[0].split("/")[:2])


def test_invalid_resource_raises_operation_outcome(client: SyncFHIRClient) -> None:
    bad = client.resource("Patient", birthDate="not-a-date")
    with pytest.raises(OperationOutcome):
        bad.save()

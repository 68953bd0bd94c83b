"""The FHIR RESTful interactions on single resources, on SQLite and PostgreSQL."""

import json

from fastapi.testclient import TestClient

from tests.factories import fhir


def _create(client: TestClient, resource: dict) -> dict:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_assigns_id_version_and_headers(client: TestClient) -> None:
    response = client.post("/fhir/Patient", json=fhir.patient(id="client-chosen"))
    assert response.status_code == 201
    body = response.json()
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert response.headers["Last-Modified"].endswith("GMT")
    assert response.headers["content-type"].startswith("application/fhir+json")


def test_read_returns_stored_json_exactly(client: TestClient) -> None:
    created = _create(client, fhir.patient())
    observation = fhir.observation(patient_id=created["id"])
    raw = json.dumps(observation).replace("72.5", "72.50")
    response = client.post("/fhir/Observation", content=raw)
    assert response.status_code == 201
    read = client.get(f"/fhir/Observation/{response.json()['id']}")
    assert read.status_code == 200
    assert '"value":72.50' in read.text  # decimal precision kept as sent
    assert read.headers["ETag"] == 'W/"1"'


def test_update_versions_and_vread(client: TestClient) -> None:
    created = _create(client, fhir.patient())
    changed = {**created, "gender": "male"}
    response = client.put(f"/fhir/Patient/{created['id']}", json=changed)
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"
    assert client.get(f"/fhir/Patient/{created['id']}/_history/1").json()["gender"] == "female"
    assert client.get(f"/fhir/Patient/{created['id']}/_history/2").json()["gender"] == "male"
    assert client.get(f"/fhir/Patient/{created['id']}/_history/3").status_code == 404


def test_update_as_create_and_identical_update_keeps_version(client: TestClient) -> None:
    patient = fhir.patient(id="gp-1")
    first = client.put("/fhir/Patient/gp-1", json=patient)
    assert first.status_code == 201
    again = client.put("/fhir/Patient/gp-1", json=patient)
    assert again.status_code == 200
    assert again.json()["meta"]["versionId"] == "1"


def test_if_match(client: TestClient) -> None:
    created = _create(client, fhir.patient())
    url = f"/fhir/Patient/{created['id']}"
    stale = client.put(url, json={**created, "gender": "male"}, headers={"If-Match": 'W/"7"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert client.get(url).json()["gender"] == "female"
    ok = client.put(url, json={**created, "gender": "male"}, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200


def test_delete_is_soft_and_read_answers_410(client: TestClient) -> None:
    created = _create(client, fhir.patient())
    url = f"/fhir/Patient/{created['id']}"
    assert client.delete(url).status_code == 204
    gone = client.get(url)
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    assert client.get(f"{url}/_history/1").status_code == 200
    assert client.delete(url).status_code == 204  # idempotent
    history = client.get(f"{url}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert client.get("/fhir/Patient", params={"_id": created["id"]}).json()["total"] == 0
    recreated = client.put(url, json=created)
    assert recreated.status_code == 201
    assert recreated.json()["meta"]["versionId"] == "3"


def test_prefer_return(client: TestClient) -> None:
    minimal = client.post(
        "/fhir/Patient", json=fhir.patient(), headers={"Prefer": "return=minimal"}
    )
    assert minimal.status_code == 201
    assert minimal.content == b""
    assert "Location" in minimal.headers
    oo = client.post(
        "/fhir/Patient", json=fhir.patient(), headers={"Prefer": "return=OperationOutcome"}
    )
    assert oo.json()["resourceType"] == "OperationOutcome"


def test_conditional_create(client: TestClient) -> None:
    headers = {"If-None-Exist": f"identifier={fhir.NHS}|9990001234"}
    first = client.post("/fhir/Patient", json=fhir.patient(), headers=headers)
    assert first.status_code == 201
    second = client.post("/fhir/Patient", json=fhir.patient(), headers=headers)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    client.post("/fhir/Patient", json=fhir.patient())
    ambiguous = client.post("/fhir/Patient", json=fhir.patient(), headers=headers)
    assert ambiguous.status_code == 412


def test_conditional_update_and_delete(client: TestClient) -> None:
    query = f"identifier={fhir.NHS}|9990004444"
    created = client.put(f"/fhir/Patient?{query}", json=fhir.patient(nhs_number="9990004444"))
    assert created.status_code == 201
    updated = client.put(
        f"/fhir/Patient?{query}", json=fhir.patient(nhs_number="9990004444", gender="male")
    )
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]
    assert client.delete(f"/fhir/Patient?{query}").status_code == 204
    assert client.get(f"/fhir/Patient/{created.json()['id']}").status_code == 410
    bad = client.put("/fhir/Patient?nonsense=1", json=fhir.patient())
    assert bad.status_code == 400


def test_history_type_and_system(client: TestClient) -> None:
    a = _create(client, fhir.patient())
    client.put(f"/fhir/Patient/{a['id']}", json={**a, "gender": "other"})
    history = client.get("/fhir/Patient/_history", params={"_count": 1})
    body = history.json()
    assert body["type"] == "history"
    assert len(body["entry"]) == 1
    assert body["entry"][0]["resource"]["gender"] == "other"
    next_url = next(link["url"] for link in body["link"] if link["relation"] == "next")
    second = client.get(next_url.replace("http://testserver", ""))
    assert second.json()["entry"][0]["resource"]["meta"]["versionId"] == "1"
    assert client.get("/fhir/_history").json()["type"] == "history"

"""Bad input gets a clear OperationOutcome with the right status, and nothing half-stored."""

from fastapi.testclient import TestClient

from tests.factories import fhir


def _issue(response) -> dict:  # type: ignore[no-untyped-def]
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post("/fhir/Patient", content=b'{"resourceType": "Patient",')
    assert response.status_code == 400
    assert "not valid JSON" in _issue(response)["diagnostics"]


def test_invalid_resource_reports_each_path(client: TestClient) -> None:
    bad = fhir.patient(birth_date="1941-13-45")
    bad["colour"] = "blue"
    response = client.post("/fhir/Patient", json=bad)
    assert response.status_code == 400
    expressions = {e for issue in response.json()["issue"] for e in issue.get("expression", [])}
    assert "Patient.birthDate" in expressions
    assert "Patient.colour" in expressions


def test_type_mismatch_and_unknown_type(client: TestClient) -> None:
    assert client.post("/fhir/Observation", json=fhir.patient()).status_code == 400
    assert client.get("/fhir/Spaceship/1").status_code == 404
    assert client.post("/fhir/Spaceship", json={"resourceType": "Spaceship"}).status_code == 404


def test_missing_is_404(client: TestClient) -> None:
    response = client.get("/fhir/Patient/does-not-exist")
    assert response.status_code == 404
    assert _issue(response)["code"] == "not-found"


def test_wrong_media_type_is_415(client: TestClient) -> None:
    response = client.post(
        "/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"}
    )
    assert response.status_code == 415
    assert (
        client.get("/fhir/metadata", headers={"Accept": "application/fhir+xml"}).status_code == 406
    )


def test_body_over_limit_is_413(client: TestClient) -> None:
    huge = fhir.patient()
    huge["text"] = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">' + "x" * 70000 + "</div>",
    }
    response = client.post("/fhir/Patient", json=huge)
    assert response.status_code == 413


def test_update_id_mismatch_is_400(client: TestClient) -> None:
    response = client.put("/fhir/Patient/abc", json=fhir.patient(id="xyz"))
    assert response.status_code == 400
    assert client.put("/fhir/Patient/abc", json=fhir.patient()).status_code == 400
    assert client.put("/fhir/Patient/bad id!", json=fhir.patient(id="bad id!")).status_code == 400


def test_unknown_route_and_method(client: TestClient) -> None:
    assert client.get("/fhir/Patient/1/_nonsense/2/3").json()["resourceType"] == "OperationOutcome"
    response = client.patch("/fhir/Patient/1", json={})
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"


def test_search_errors(client: TestClient) -> None:
    assert client.get("/fhir/Observation", params={"date": "gt2024-99"}).status_code == 400
    assert client.get("/fhir/Observation", params={"_count": "many"}).status_code == 400
    strict = client.get(
        "/fhir/Observation", params={"colour": "blue"}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400
    lenient = client.get("/fhir/Observation", params={"colour": "blue"})
    assert lenient.status_code == 200
    assert "colour" not in lenient.json()["link"][0]["url"]
    assert client.get("/fhir/Observation", params={"code:below": "x"}).status_code == 400
    assert client.get("/fhir/Observation", params={"_cursor": "garbage"}).status_code == 400

"""``Patient/$everything``: the joined-up record across linked source patients, both databases."""

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.factories import fhir
from tests.fhir_gateway.identity.test_flow import dispatch, put_patient
from tests.fhir_gateway.identity.test_scoring import NUMBER_A


def _post(client: TestClient, resource: dict[str, Any]) -> str:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _joined_up(app: FastAPI, client: TestClient) -> dict[str, str]:
    """A GP and a hospital record of one person, each with data, linked by identity."""
    put_patient(client, "gp1-ev", "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True)
    put_patient(client, "rh-ev", "urn:ods:Z9H", nhs_number=NUMBER_A, verified=True)
    practitioner = _post(
        client, {"resourceType": "Practitioner", "name": [{"family": "Example", "given": ["Gp"]}]}
    )
    ids = {
        "gp_obs": _post(
            client,
            fhir.observation(
                patient_id="gp1-ev",
                effective="2024-02-01T09:00:00Z",
                performer=[{"reference": f"Practitioner/{practitioner}"}],
            ),
        ),
        "rh_obs": _post(
            client, fhir.observation(patient_id="rh-ev", effective="2026-05-01T09:00:00Z")
        ),
        "rh_condition": _post(client, fhir.condition(patient_id="rh-ev")),
        "practitioner": practitioner,
    }
    dispatch(app)
    return ids


def _everything(client: TestClient, patient_id: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/fhir/Patient/{patient_id}/$everything", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _refs(bundle: dict[str, Any], mode: str = "match") -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == mode
    }


def test_everything_joins_every_linked_source(app: FastAPI, client: TestClient) -> None:
    ids = _joined_up(app, client)
    for start in ("gp1-ev", "rh-ev"):
        bundle = _everything(client, start, _count=100)
        matched = _refs(bundle)
        assert {
            "Patient/gp1-ev",
            "Patient/rh-ev",
            f"Observation/{ids['gp_obs']}",
            f"Observation/{ids['rh_obs']}",
            f"Condition/{ids['rh_condition']}",
        } <= matched
        assert bundle["total"] == len(matched)
        included = _refs(bundle, "include")
        assert f"Practitioner/{ids['practitioner']}" in included
        # The Person comes once: it is in its first patient's compartment (Person.link).
        persons = [
            e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Person"
        ]
        assert len(persons) == 1
        assert persons[0]["name"][0]["family"] == "Okafor"
        # Each item keeps the source it came from.
        sources = {
            e["resource"]["meta"].get("source")
            for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Patient"
        }
        assert sources == {"urn:ods:Z90001", "urn:ods:Z9H"}


def test_everything_pages_through_each_resource_once(app: FastAPI, client: TestClient) -> None:
    _joined_up(app, client)
    whole = _refs(_everything(client, "gp1-ev", _count=100))
    seen: list[str] = []
    bundle = _everything(client, "gp1-ev", _count=2)
    assert bundle["total"] == len(whole)
    while True:
        seen.extend(
            f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry", [])
            if e["search"]["mode"] == "match"
        )
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            break
        response = client.get(following[0].replace("http://testserver", ""))
        assert response.status_code == 200
        bundle = response.json()
    assert len(seen) == len(set(seen))
    assert set(seen) == whole


def test_everything_filters_by_type_and_care_date(app: FastAPI, client: TestClient) -> None:
    ids = _joined_up(app, client)
    only_observations = _refs(_everything(client, "gp1-ev", _type="Observation"))
    assert only_observations == {f"Observation/{ids['gp_obs']}", f"Observation/{ids['rh_obs']}"}
    recent = _refs(_everything(client, "gp1-ev", start="2025-01-01", _count=100))
    assert f"Observation/{ids['rh_obs']}" in recent
    assert f"Observation/{ids['gp_obs']}" not in recent
    # No care date: still in scope.
    assert "Patient/gp1-ev" in recent
    early = _refs(_everything(client, "gp1-ev", end="2024-12-31", _type="Observation"))
    assert early == {f"Observation/{ids['gp_obs']}"}


def test_an_unlinked_patient_has_only_its_own_record(client: TestClient) -> None:
    put_patient(client, "gp1-alone", "urn:ods:Z90001")
    obs = _post(client, fhir.observation(patient_id="gp1-alone"))
    bundle = _everything(client, "gp1-alone")
    assert _refs(bundle) == {"Patient/gp1-alone", f"Observation/{obs}"}


def test_everything_bad_input(client: TestClient) -> None:
    put_patient(client, "gp1-bad", "urn:ods:Z90001")
    cases = [
        ("/fhir/Patient/nobody/$everything", 404),
        ("/fhir/Patient/gp1-bad/$everything?_count=zero", 400),
        ("/fhir/Patient/gp1-bad/$everything?_type=Spaceship", 400),
        ("/fhir/Patient/gp1-bad/$everything?start=not-a-date", 400),
        ("/fhir/Patient/gp1-bad/$everything?_cursor=abc", 400),
    ]
    for url, status in cases:
        response = client.get(url)
        assert response.status_code == status, url
        assert response.json()["resourceType"] == "OperationOutcome"
    strict = client.get(
        "/fhir/Patient/gp1-bad/$everything?colour=blue", headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400
    assert client.get("/fhir/Patient/gp1-bad/$everything?colour=blue").status_code == 200
    assert client.delete("/fhir/Patient/gp1-bad").status_code in (200, 204)
    assert client.get("/fhir/Patient/gp1-bad/$everything").status_code == 410


def test_capability_statement_lists_everything(client: TestClient) -> None:
    statement = client.get("/fhir/metadata").json()
    (patient,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "Patient"]
    assert [op["name"] for op in patient["operation"]] == ["everything", "match"]


def _persons(bundle: dict[str, Any]) -> list[str]:
    return [
        e["search"]["mode"]
        for e in bundle.get("entry", [])
        if e["resource"]["resourceType"] == "Person"
    ]


def test_the_person_comes_with_the_first_page_whatever_its_size_or_filters(
    app: FastAPI, client: TestClient
) -> None:
    # When the first page is not the whole record (a small page, or filters that leave the
    # Person out of the matches), the Person is still read and included once.
    _joined_up(app, client)
    assert _persons(_everything(client, "gp1-ev", _count=100)) == ["match"]
    assert len(_persons(_everything(client, "gp1-ev", _count=1))) == 1
    assert _persons(_everything(client, "gp1-ev", _since="2999-01-01")) == ["include"]
    assert _persons(_everything(client, "rh-ev", _type="Observation,Person")) == ["match"]
    later = _everything(client, "gp1-ev", _count=1)
    following = [link["url"] for link in later["link"] if link["relation"] == "next"]
    second = client.get(following[0].replace("http://testserver", "")).json()
    assert "include" not in _persons(second)  # includes come with the first page only


def test_what_the_record_refers_to_comes_with_the_first_page_however_small(
    app: FastAPI, client: TestClient
) -> None:
    # The practitioner is referred to by an observation stored after both patients, so it is
    # not on a one-entry first page; the resources it refers to come with that page all the
    # same, and not again on later ones.
    ids = _joined_up(app, client)
    practitioner = f"Practitioner/{ids['practitioner']}"
    bundle = _everything(client, "gp1-ev", _count=1)
    assert f"Observation/{ids['gp_obs']}" not in _refs(bundle)
    assert practitioner in _refs(bundle, "include")
    following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
    later = client.get(following[0].replace("http://testserver", "")).json()
    assert practitioner not in _refs(later, "include")

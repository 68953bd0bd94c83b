"""``Patient/$match`` (R4 Patient-match) over identity's index, on both databases."""

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.fhir_gateway.identity.test_flow import dispatch, put_patient
from tests.fhir_gateway.identity.test_scoring import NUMBER_A, patient

GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"


def _match(client: TestClient, resource: dict[str, Any], **options: Any) -> Any:
    parameters: dict[str, Any] = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": resource}],
    }
    if "only_certain" in options:
        parameters["parameter"].append(
            {"name": "onlyCertainMatches", "valueBoolean": options["only_certain"]}
        )
    if "count" in options:
        parameters["parameter"].append({"name": "count", "valueInteger": options["count"]})
    return client.post("/fhir/Patient/$match", json=parameters)


def _graded(bundle: dict[str, Any]) -> list[tuple[str, str, float]]:
    return [
        (
            e["resource"]["id"],
            next(x["valueCode"] for x in e["search"]["extension"] if x["url"] == GRADE),
            e["search"]["score"],
        )
        for e in bundle.get("entry", [])
    ]


def _population(app: FastAPI, client: TestClient) -> None:
    put_patient(client, "gp1-m", "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True)
    put_patient(client, "rh-m", "urn:ods:Z9H", nhs_number=NUMBER_A, verified=True, given="Ada")
    put_patient(client, "gp1-twin", "urn:ods:Z90001", given="Chioma")
    put_patient(
        client,
        "gp1-stranger",
        "urn:ods:Z90001",
        family="Hughes",
        given="William",
        gender="male",
        birth="1950-01-01",
        postcode="M1 1AE",
    )
    dispatch(app)


def test_match_scores_and_grades_candidates(app: FastAPI, client: TestClient) -> None:
    _population(app, client)
    response = _match(client, patient(nhs_number=NUMBER_A, verified=True))
    assert response.status_code == 200, response.text
    graded = _graded(response.json())
    ids = [g[0] for g in graded]
    assert set(ids[:2]) == {"gp1-m", "rh-m"}
    assert {g[1] for g in graded[:2]} == {"certain"}
    assert "gp1-stranger" not in ids
    # twins (one birth date and home, another first name) are two people: not a candidate
    assert "gp1-twin" not in ids
    scores = [g[2] for g in graded]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= s <= 1 for s in scores)


def test_only_certain_matches_returns_one_record_of_one_person(
    app: FastAPI, client: TestClient
) -> None:
    _population(app, client)
    certain = _graded(
        _match(client, patient(nhs_number=NUMBER_A, verified=True), only_certain=True).json()
    )
    assert len(certain) == 1
    assert certain[0][0] in {"gp1-m", "rh-m"}
    # Without an NHS number nothing is certain.
    assert _graded(_match(client, patient(), only_certain=True).json()) == []


def test_count_limits_the_candidates(app: FastAPI, client: TestClient) -> None:
    _population(app, client)
    assert len(_graded(_match(client, patient(), count=1).json())) == 1


def test_match_bad_input(client: TestClient) -> None:
    not_parameters = client.post("/fhir/Patient/$match", json=patient())
    assert not_parameters.status_code == 400
    no_resource = client.post(
        "/fhir/Patient/$match", json={"resourceType": "Parameters", "parameter": []}
    )
    assert no_resource.status_code == 400
    invalid = _match(client, {"resourceType": "Patient", "gender": "sometimes"})
    assert invalid.status_code == 400
    assert invalid.json()["resourceType"] == "OperationOutcome"
    bad_count = _match(client, patient(), count=0)
    assert bad_count.status_code == 400

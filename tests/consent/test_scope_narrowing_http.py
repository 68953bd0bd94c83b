"""SMART v2 scopes narrowed by search parameters, enforced over HTTP on both databases.

A token with ``user/Condition.rs?category=...|problem-list-item`` sees a person's problem list
and nothing else of their Conditions, on every path (search and its total, ``_summary=count``,
read, vread, history, ``$everything``, ``_include``, ``_revinclude``, the record summary), its
own organisation's records included; what the scope did not ask for is not announced as
withheld, what consent withholds within it is; a narrowed scope grants no writes.

The world: a person registered at practice Z90002, a GP at Z90001 related to them through a
CareTeam, and the hospital's Conditions: hypertension on the problem list, asthma as an
encounter diagnosis, and (in some tests) HIV, which the demo agreement does not share with
GPs.
"""

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_gateway.auth.issuer import DevelopmentIssuer
from tests.conftest import bearer, user_claims
from tests.factories import fhir
from tests.factories.http import write_as

HOSPITAL = "urn:carejoin:source:Z9H"
PRACTICE = "urn:carejoin:source:Z90002"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
PROBLEMS = f"user/Condition.rs?category={CATEGORY}|problem-list-item"
OTHERS = "user/Patient.rs user/Encounter.rs user/CareTeam.rs"
GP = "gp-Z90001-0"


def _condition(patient: str, icd10: str, category: str) -> dict[str, Any]:
    return {
        **fhir.condition(patient_id=patient),
        "code": {"coding": [{"system": ICD10, "code": icd10}]},
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
    }


@dataclass(frozen=True)
class World:
    patient: str
    problem: str
    diagnosis: str
    encounter: str

    def gp(self, issuer: DevelopmentIssuer, scope: str) -> dict[str, str]:
        return bearer(issuer, user_claims(GP, organization="Z90001", scope=scope))


@pytest.fixture
def world(client: TestClient) -> World:
    patient = write_as(client, fhir.patient(family="Scoped"), PRACTICE)
    problem = write_as(client, _condition(patient, "I10", "problem-list-item"), HOSPITAL)
    diagnosis = write_as(client, _condition(patient, "J45", "encounter-diagnosis"), HOSPITAL)
    encounter = write_as(
        client, fhir.encounter(patient_id=patient, diagnoses=(problem, diagnosis)), HOSPITAL
    )
    write_as(client, fhir.care_team(patient_id=patient, member=f"Practitioner/{GP}"), PRACTICE)
    return World(patient, problem, diagnosis, encounter)


def _conditions(bundle: dict[str, Any]) -> set[str]:
    return {
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e["search"]["mode"] in ("match", "include")
        and e["resource"]["resourceType"] == "Condition"
    }


def _notices(bundle: dict[str, Any]) -> int:
    return sum(1 for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome")


def _seen(client: TestClient, w: World, headers: dict[str, str]) -> set[str]:
    """The Conditions the caller reaches, checked to be the same on every path."""
    search = client.get("/fhir/Condition", params={"patient": w.patient}, headers=headers)
    assert search.status_code == 200, search.text
    shown = _conditions(search.json())
    count = client.get(
        "/fhir/Condition", params={"patient": w.patient, "_summary": "count"}, headers=headers
    ).json()
    assert search.json()["total"] == count["total"] == len(shown)
    everything = client.get(f"/fhir/Patient/{w.patient}/$everything", headers=headers).json()
    assert _conditions(everything) == shown
    included = client.get(
        "/fhir/Encounter",
        params={"_id": w.encounter, "_include": "Encounter:diagnosis"},
        headers=headers,
    ).json()
    assert _conditions(included) == shown
    revincluded = client.get(
        "/fhir/Patient",
        params={"_id": w.patient, "_revinclude": "Condition:subject"},
        headers=headers,
    ).json()
    assert _conditions(revincluded) == shown
    for condition in (w.problem, w.diagnosis):
        expected = 200 if condition in shown else 404
        read = client.get(f"/fhir/Condition/{condition}", headers=headers)
        vread = client.get(f"/fhir/Condition/{condition}/_history/1", headers=headers)
        history = client.get(f"/fhir/Condition/{condition}/_history", headers=headers)
        assert (read.status_code, vread.status_code) == (expected, expected), condition
        versions = history.json().get("entry", []) if history.status_code == 200 else []
        assert len(versions) == (1 if condition in shown else 0), condition
    summary = client.get(f"/record/{w.patient}", headers=headers)
    assert summary.status_code == 200, summary.text
    return shown


def test_a_narrowed_scope_shows_only_what_matches_on_every_path(
    client: TestClient, issuer: DevelopmentIssuer, world: World
) -> None:
    everything_scoped = world.gp(issuer, "user/*.rs")
    assert _seen(client, world, everything_scoped) == {world.problem, world.diagnosis}
    narrowed = world.gp(issuer, f"{PROBLEMS} {OTHERS}")
    assert _seen(client, world, narrowed) == {world.problem}
    # The joined-up summary lists the problem list only.
    summary = client.get(f"/record/{world.patient}", headers=narrowed).json()
    assert "J45" not in str(summary)
    assert "I10" in str(summary)
    assert summary["withheld"] is False


def test_a_whole_type_scope_beside_it_lifts_the_narrowing(
    client: TestClient, issuer: DevelopmentIssuer, world: World
) -> None:
    both = world.gp(issuer, f"{PROBLEMS} user/Condition.rs {OTHERS}")
    assert _seen(client, world, both) == {world.problem, world.diagnosis}


@pytest.mark.parametrize(
    ("scope", "shown"),
    [
        # Any system, the code alone.
        ("user/Condition.rs?category=encounter-diagnosis", {"diagnosis"}),
        # Either value; and a second parameter that both meet.
        (
            "user/Condition.rs?category=problem-list-item,encounter-diagnosis"
            "&clinical-status=active",
            {"problem", "diagnosis"},
        ),
        # A second parameter neither meets.
        ("user/Condition.rs?category=problem-list-item&clinical-status=resolved", set()),
        # The code in another system, or with no system: no.
        ("user/Condition.rs?category=http://example.org/other|problem-list-item", set()),
        ("user/Condition.rs?category=|problem-list-item", set()),
        # Any code of the system.
        (f"user/Condition.rs?category={CATEGORY}|", {"problem", "diagnosis"}),
        # A parameter Condition does not have, or one that is not a token: nothing.
        ("user/Condition.rs?nonsense=problem-list-item", set()),
        ("user/Condition.rs?onset-date=2019", set()),
        # Quotes are data, not SQL.
        ("user/Condition.rs?category=problem-list-item'%20OR%20'1'='1", set()),
    ],
    ids=[
        "code-any-system",
        "or-values-and-params",
        "and-fails",
        "other-system",
        "no-system",
        "system-any-code",
        "unknown-param",
        "not-a-token",
        "quoted",
    ],
)
def test_the_query_is_read_as_a_token_search(
    client: TestClient, issuer: DevelopmentIssuer, world: World, scope: str, shown: set[str]
) -> None:
    expected = {getattr(world, name) for name in shown}
    assert _seen(client, world, world.gp(issuer, f"{scope} {OTHERS}")) == expected


def test_what_the_scope_did_not_ask_for_is_not_announced_as_withheld(
    client: TestClient, issuer: DevelopmentIssuer, world: World
) -> None:
    # HIV, not shared with GPs, recorded only as an encounter diagnosis: withheld from a GP
    # who may see every Condition, but not what a problem-list app asked for.
    write_as(client, _condition(world.patient, "B20.1", "encounter-diagnosis"), HOSPITAL)
    whole, narrowed = world.gp(issuer, "user/*.rs"), world.gp(issuer, f"{PROBLEMS} {OTHERS}")
    for headers, told in ((whole, 1), (narrowed, 0)):
        search = client.get(
            "/fhir/Condition", params={"patient": world.patient}, headers=headers
        ).json()
        everything = client.get(f"/fhir/Patient/{world.patient}/$everything", headers=headers)
        summary = client.get(f"/record/{world.patient}", headers=headers).json()
        assert (_notices(search), _notices(everything.json()), summary["withheld"]) == (
            told,
            told,
            bool(told),
        )


def test_what_consent_withholds_within_the_scope_is_announced(
    client: TestClient, issuer: DevelopmentIssuer, world: World
) -> None:
    write_as(client, _condition(world.patient, "B20.1", "problem-list-item"), HOSPITAL)
    narrowed = world.gp(issuer, f"{PROBLEMS} {OTHERS}")
    search = client.get("/fhir/Condition", params={"patient": world.patient}, headers=narrowed)
    assert _conditions(search.json()) == {world.problem}
    assert _notices(search.json()) == 1
    everything = client.get(f"/fhir/Patient/{world.patient}/$everything", headers=narrowed)
    assert _notices(everything.json()) == 1
    assert client.get(f"/record/{world.patient}", headers=narrowed).json()["withheld"] is True


def test_only_the_current_version_is_in_scope(
    client: TestClient, issuer: DevelopmentIssuer, world: World
) -> None:
    # The index holds the current version's values: an earlier version, whatever it said,
    # is not shown under a narrowed scope (it might not have matched).
    updated = {
        **_condition(world.patient, "I10", "problem-list-item"),
        "id": world.problem,
        "onsetDateTime": "2020-01-01",
    }
    response = client.put(
        f"/fhir/Condition/{world.problem}", json={**updated, "meta": {"source": HOSPITAL}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["meta"]["versionId"] == "2"
    narrowed = world.gp(issuer, f"{PROBLEMS} {OTHERS}")
    whole = world.gp(issuer, "user/*.rs")
    path = f"/fhir/Condition/{world.problem}/_history"
    assert client.get(f"{path}/2", headers=narrowed).status_code == 200
    assert client.get(f"{path}/1", headers=narrowed).status_code == 404
    assert client.get(f"{path}/1", headers=whole).status_code == 200
    assert len(client.get(path, headers=narrowed).json()["entry"]) == 1
    assert len(client.get(path, headers=whole).json()["entry"]) == 2


def test_a_narrowed_scope_grants_no_writes(
    client: TestClient, issuer: DevelopmentIssuer, world: World
) -> None:
    writer = bearer(
        issuer,
        user_claims(GP, organization="Z90001", scope=f"user/Condition.cruds?category={CATEGORY}|x"),
    )
    response = client.post(
        "/fhir/Condition",
        json=_condition(world.patient, "I10", "problem-list-item"),
        headers=writer,
    )
    assert response.status_code == 403
    assert response.json()["resourceType"] == "OperationOutcome"


def test_the_person_s_own_app_is_narrowed_too(
    client: TestClient, issuer: DevelopmentIssuer, world: World
) -> None:
    claims = {
        "sub": "person-1",
        "patient": world.patient,
        "scope": f"patient/Patient.rs patient/Condition.rs?category={CATEGORY}|problem-list-item",
    }
    headers = bearer(issuer, claims)
    search = client.get("/fhir/Condition", params={"patient": world.patient}, headers=headers)
    assert search.status_code == 200, search.text
    assert _conditions(search.json()) == {world.problem}
    assert client.get(f"/fhir/Condition/{world.diagnosis}", headers=headers).status_code == 404
    assert client.get(f"/fhir/Condition/{world.problem}", headers=headers).status_code == 200


def test_an_organisation_s_own_records_are_narrowed_too(
    client: TestClient, issuer: DevelopmentIssuer, world: World
) -> None:
    # The hospital's own user sees every record the hospital made, but its app asked for the
    # problem list only.
    headers = bearer(issuer, user_claims("doc-Z9H-1", organization="Z9H", scope=PROBLEMS))
    assert client.get(f"/fhir/Condition/{world.problem}", headers=headers).status_code == 200
    assert client.get(f"/fhir/Condition/{world.diagnosis}", headers=headers).status_code == 404


def test_match_needs_a_patient_scope_that_is_not_narrowed(
    client: TestClient, issuer: DevelopmentIssuer, world: World
) -> None:
    # $match answers from every source's demographics, outside the caller's predicate.
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": fhir.patient(family="Scoped")}],
    }
    claims = {"sub": "test-system", "client_id": "test-system"}
    narrowed = bearer(issuer, {**claims, "scope": "system/Patient.rs?gender=female"})
    whole = bearer(issuer, {**claims, "scope": "system/Patient.rs"})
    refused = client.post("/fhir/Patient/$match", json=parameters, headers=narrowed)
    assert refused.status_code == 403
    assert "narrowed" in refused.json()["issue"][0]["diagnostics"]
    assert client.post("/fhir/Patient/$match", json=parameters, headers=whole).status_code == 200

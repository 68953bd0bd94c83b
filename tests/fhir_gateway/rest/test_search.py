"""FHIR search semantics over the write-time index, on SQLite and PostgreSQL."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import fhir


def _create(client: TestClient, resource: dict[str, Any]) -> str:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _ids(client: TestClient, path: str, **params: Any) -> list[str]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return [
        e["resource"]["id"]
        for e in response.json().get("entry", [])
        if e["search"]["mode"] == "match"
    ]


@pytest.fixture
def people(client: TestClient) -> dict[str, str]:
    return {
        "okafor": _create(
            client, fhir.patient(family="Okafor", given="Adaeze", nhs_number="9990000018")
        ),
        "muller": _create(
            client,
            fhir.patient(
                family="Müller",
                given="Jürgen",
                gender="male",
                birth_date="1938-11-02",
                nhs_number="9990000026",
            ),
        ),
        "smith": _create(
            client,
            fhir.patient(family="Smith-Jones", given="Ann", birth_date="1950", nhs_number=None),
        ),
    }


def test_string_default_is_case_and_accent_insensitive_prefix(
    client: TestClient, people: dict[str, str]
) -> None:
    assert _ids(client, "/fhir/Patient", family="mul") == [people["muller"]]
    assert _ids(client, "/fhir/Patient", family="MÜLLER") == [people["muller"]]
    assert _ids(client, "/fhir/Patient", name="jurg") == [people["muller"]]
    assert _ids(client, "/fhir/Patient", **{"family:exact": "Müller"}) == [people["muller"]]
    assert _ids(client, "/fhir/Patient", **{"family:exact": "muller"}) == []
    assert _ids(client, "/fhir/Patient", **{"family:contains": "jones"}) == [people["smith"]]


def test_token_forms_and_modifiers(client: TestClient, people: dict[str, str]) -> None:
    assert _ids(client, "/fhir/Patient", identifier=f"{fhir.NHS}|9990000018") == [people["okafor"]]
    assert _ids(client, "/fhir/Patient", identifier="9990000026") == [people["muller"]]
    assert _ids(client, "/fhir/Patient", identifier="|9990000026") == []
    assert sorted(_ids(client, "/fhir/Patient", identifier=f"{fhir.NHS}|")) == sorted(
        [people["okafor"], people["muller"]]
    )
    assert sorted(_ids(client, "/fhir/Patient", **{"gender:not": "male"})) == sorted(
        [people["okafor"], people["smith"]]
    )
    assert _ids(client, "/fhir/Patient", **{"identifier:missing": "true"}) == [people["smith"]]
    assert len(_ids(client, "/fhir/Patient", **{"identifier:missing": "false"})) == 2
    # OR within a parameter, AND across repeats
    assert len(_ids(client, "/fhir/Patient", gender="male,female")) == 3
    assert _ids(client, "/fhir/Patient", gender="female", family="oka") == [people["okafor"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("1938", ["muller"]),
        ("1938-11", ["muller"]),
        ("eq1938-11-02", ["muller"]),
        ("ne1938-11-02", ["okafor", "smith"]),
        ("lt1941-03-12", ["muller"]),
        ("le1941-03-12", ["muller", "okafor"]),
        ("gt1941-03-12", ["smith"]),
        ("ge1941-03-12", ["okafor", "smith"]),
        ("sa1941-03-12", ["smith"]),
        ("eb1941-03-12", ["muller"]),
        ("1950-06", []),  # 1950 (a whole year) is not inside June 1950
        ("ap1950-06-15", ["smith"]),
    ],
)
def test_date_prefixes_and_precision(
    client: TestClient, people: dict[str, str], query: str, expected: list[str]
) -> None:
    assert sorted(_ids(client, "/fhir/Patient", birthdate=query)) == sorted(
        people[k] for k in expected
    )


def test_reference_forms_and_chains(client: TestClient, people: dict[str, str]) -> None:
    obs = _create(client, fhir.observation(patient_id=people["okafor"]))
    other = _create(client, fhir.observation(patient_id=people["muller"]))
    assert _ids(client, "/fhir/Observation", patient=f"Patient/{people['okafor']}") == [obs]
    assert _ids(client, "/fhir/Observation", patient=people["okafor"]) == [obs]
    assert _ids(
        client, "/fhir/Observation", subject=f"http://testserver/fhir/Patient/{people['muller']}"
    ) == [other]
    assert _ids(client, "/fhir/Observation", **{"subject:Patient": people["muller"]}) == [other]
    assert _ids(
        client, "/fhir/Observation", **{"subject:Patient.identifier": f"{fhir.NHS}|9990000018"}
    ) == [obs]
    assert _ids(client, "/fhir/Observation", **{"patient.family": "mül"}) == [other]
    ambiguous = client.get("/fhir/Observation", params={"subject.name": "x"})
    assert ambiguous.status_code == 400


def test_quantity_and_number(client: TestClient, people: dict[str, str]) -> None:
    light = _create(client, fhir.observation(patient_id=people["okafor"], value=61.2))
    heavy = _create(client, fhir.observation(patient_id=people["okafor"], value=100))
    assert _ids(client, "/fhir/Observation", **{"value-quantity": "100"}) == [heavy]
    assert _ids(client, "/fhir/Observation", **{"value-quantity": "100.4"}) == []
    assert _ids(client, "/fhir/Observation", **{"value-quantity": "lt70"}) == [light]
    assert _ids(
        client, "/fhir/Observation", **{"value-quantity": "gt70|http://unitsofmeasure.org|kg"}
    ) == [heavy]
    assert (
        _ids(client, "/fhir/Observation", **{"value-quantity": "gt70|http://unitsofmeasure.org|g"})
        == []
    )


def test_sort_paging_and_total(client: TestClient, people: dict[str, str]) -> None:
    made = [
        _create(
            client,
            fhir.observation(patient_id=people["okafor"], effective=f"2025-0{m}-01T10:00:00Z"),
        )
        for m in range(1, 8)
    ]
    first = client.get(
        "/fhir/Observation", params={"patient": people["okafor"], "_count": 3, "_sort": "-date"}
    ).json()
    assert first["total"] == 7
    seen = [e["resource"]["id"] for e in first["entry"]]
    url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    # Data changes during the traversal: a new, older observation and an update of a seen one.
    _create(client, fhir.observation(patient_id=people["okafor"], effective="2024-01-01T10:00:00Z"))
    while url:
        page = client.get(url.replace("http://testserver", "")).json()
        seen += [e["resource"]["id"] for e in page["entry"]]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert seen[:7] == list(reversed(made))
    assert len(seen) == len(set(seen)) == 8
    back = client.get(
        "/fhir/Observation", params={"patient": people["okafor"], "_count": 3, "_sort": "date,-_id"}
    ).json()
    assert [e["resource"]["effectiveDateTime"][:7] for e in back["entry"]] == [
        "2024-01",
        "2025-01",
        "2025-02",
    ]


def test_previous_link(client: TestClient, people: dict[str, str]) -> None:
    for m in range(1, 6):
        _create(client, fhir.observation(patient_id=people["okafor"], effective=f"2025-0{m}-01"))
    page1 = client.get("/fhir/Observation", params={"_count": 2, "_sort": "date"}).json()
    next_url = next(link["url"] for link in page1["link"] if link["relation"] == "next")
    page2 = client.get(next_url.replace("http://testserver", "")).json()
    prev_url = next(link["url"] for link in page2["link"] if link["relation"] == "previous")
    again = client.get(prev_url.replace("http://testserver", "")).json()
    assert [e["resource"]["id"] for e in again["entry"]] == [
        e["resource"]["id"] for e in page1["entry"]
    ]


def test_include_revinclude_summary_elements(client: TestClient, people: dict[str, str]) -> None:
    obs = _create(client, fhir.observation(patient_id=people["okafor"]))
    bundle = client.get(
        "/fhir/Observation", params={"_id": obs, "_include": "Observation:subject"}
    ).json()
    modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]}
    assert modes == {("Observation", "match"), ("Patient", "include")}
    rev = client.get(
        "/fhir/Patient", params={"_id": people["okafor"], "_revinclude": "Observation:subject"}
    ).json()
    assert {e["resource"]["id"] for e in rev["entry"]} == {people["okafor"], obs}
    count = client.get("/fhir/Patient", params={"_summary": "count"}).json()
    assert count["total"] == 3
    assert "entry" not in count
    summary = client.get(
        "/fhir/Patient", params={"_id": people["okafor"], "_summary": "true"}
    ).json()
    resource = summary["entry"][0]["resource"]
    assert resource["meta"]["tag"][-1]["code"] == "SUBSETTED"
    elements = client.get(
        "/fhir/Patient", params={"_id": people["okafor"], "_elements": "gender"}
    ).json()
    assert set(elements["entry"][0]["resource"]) == {"resourceType", "id", "meta", "gender"}
    none = client.get("/fhir/Patient", params={"_total": "none"}).json()
    assert "total" not in none


def test_post_search_and_last_updated(client: TestClient, people: dict[str, str]) -> None:
    response = client.post(
        "/fhir/Patient/_search",
        content="family=okafor",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert [e["resource"]["id"] for e in response.json()["entry"]] == [people["okafor"]]
    assert len(_ids(client, "/fhir/Patient", _lastUpdated="gt2000-01-01")) == 3
    assert _ids(client, "/fhir/Patient", _lastUpdated="lt2000-01-01") == []


def test_parameters_answered_by_other_parameters_rows(
    client: TestClient, people: dict[str, str]
) -> None:
    """``patient`` (subject's Patients) and ``combo-*`` (a value or a component's) have no index
    rows of their own; every way of searching by them reads the rows they are made of."""
    okafor, muller = people["okafor"], people["muller"]

    def mmhg(code: str, value: int) -> dict[str, Any]:
        quantity = {"value": value, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
        return {
            "code": {"coding": [{"system": fhir.LOINC, "code": code}]},
            "valueQuantity": quantity,
        }

    pressure = fhir.observation(patient_id=okafor, code="85354-9")
    del pressure["valueQuantity"]
    pressure["component"] = [mmhg("8480-6", 150), mmhg("8462-4", 95)]
    blood_pressure = _create(client, pressure)
    weight = _create(client, fhir.observation(patient_id=muller, value=150))
    of_a_group = fhir.observation(patient_id="x", value=40)
    of_a_group["subject"] = {"reference": "Group/ward-7"}
    group = _create(client, of_a_group)

    def obs(**params: Any) -> list[str]:
        return sorted(_ids(client, "/fhir/Observation", **params))

    assert obs(patient=okafor) == [blood_pressure]
    assert obs(subject="Group/ward-7") == [group]
    assert obs(**{"patient:missing": "true"}) == [group]
    assert obs(**{"patient:missing": "false"}) == sorted([blood_pressure, weight])
    assert obs(**{"patient.family": "okafor"}) == [blood_pressure]
    assert obs(**{"combo-code": f"{fhir.LOINC}|8462-4"}) == [blood_pressure]  # a component's
    assert obs(**{"combo-code": "85354-9"}) == [blood_pressure]  # the observation's own
    assert obs(**{"combo-code": "29463-7"}) == sorted([weight, group])
    assert obs(**{"combo-code:not": "29463-7"}) == [blood_pressure]
    assert obs(**{"combo-value-quantity": "gt120"}) == sorted([blood_pressure, weight])
    assert obs(**{"combo-value-quantity": "lt100"}) == sorted([blood_pressure, group])
    assert obs(**{"value-quantity": "lt100"}) == [group]
    ascending = _ids(client, "/fhir/Observation", _sort="combo-value-quantity")
    assert ascending == [group, blood_pressure, weight]  # lowest values 40, 95, 150
    included = client.get(
        "/fhir/Observation",
        params={"_id": f"{blood_pressure},{group}", "_include": "Observation:patient"},
    ).json()
    assert {(e["resource"]["resourceType"], e["resource"]["id"]) for e in included["entry"]} == {
        ("Observation", blood_pressure),
        ("Observation", group),
        ("Patient", okafor),
    }
    rev = client.get(
        "/fhir/Patient", params={"_id": f"{okafor},{muller}", "_revinclude": "Observation:patient"}
    ).json()
    assert {e["resource"]["id"] for e in rev["entry"]} == {okafor, muller, blood_pressure, weight}
    by_patient = _ids(client, "/fhir/Observation", patient=f"{okafor},{muller}", _sort="-patient")
    assert by_patient == sorted(
        [blood_pressure, weight],
        key=lambda i: okafor if i == blood_pressure else muller,
        reverse=True,
    )


def test_reverse_chaining(client: TestClient, people: dict[str, str]) -> None:
    weight = _create(client, fhir.observation(patient_id=people["okafor"], code="29463-7"))
    _create(client, fhir.observation(patient_id=people["muller"], code="8867-4"))
    _create(client, fhir.condition(patient_id=people["muller"], code="44054006"))
    encounter = _create(client, fhir.encounter(patient_id=people["smith"]))
    _create(
        client,
        fhir.observation(
            patient_id=people["smith"],
            code="8867-4",
            encounter={"reference": f"Encounter/{encounter}"},
        ),
    )

    def has(**params: str) -> list[str]:
        return sorted(_ids(client, "/fhir/Patient", **params))

    assert has(**{"_has:Observation:patient:code": "29463-7"}) == [people["okafor"]]
    assert has(**{"_has:Observation:subject:code": f"{fhir.LOINC}|8867-4"}) == sorted(
        [people["muller"], people["smith"]]
    )
    # Values ORed; several _has ANDed; a modifier on the inner parameter.
    assert has(**{"_has:Observation:patient:code": "29463-7,8867-4"}) == sorted(people.values())
    both = {
        "_has:Observation:patient:code": "8867-4",
        "_has:Condition:subject:code": "44054006",
    }
    assert has(**both) == [people["muller"]]
    assert has(**{"_has:Observation:patient:code:not": "8867-4"}) == [people["okafor"]]
    # Nested: the patients of an Encounter in which an Observation of that code was made...
    assert has(**{"_has:Encounter:patient:_has:Observation:encounter:code": "8867-4"}) == [
        people["smith"]
    ]
    # ...and a chain inside the reverse chain.
    assert has(**{"_has:Observation:patient:encounter:Encounter.status": "finished"}) == [
        people["smith"]
    ]
    # From the other side: the Encounters some Observation was recorded in.
    assert _ids(client, "/fhir/Encounter", **{"_has:Observation:encounter:code": "8867-4"}) == [
        encounter
    ]
    # A deleted Observation no longer refers to anyone.
    assert client.delete(f"/fhir/Observation/{weight}").status_code in (200, 204)
    assert has(**{"_has:Observation:patient:code": "29463-7"}) == []
    # The self link keeps the parameter (it was applied).
    bundle = client.get("/fhir/Patient", params={"_has:Observation:patient:code": "8867-4"}).json()
    assert "_has" in next(x["url"] for x in bundle["link"] if x["relation"] == "self")


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("_has", "x", "not a reverse chain"),
        ("_has:Observation:patient", "x", "not a reverse chain"),
        ("_has:Observation::code", "x", "not a reverse chain"),
        ("_has:Nonsense:patient:code", "x", "not a resource type this server stores"),
        ("_has:Observation:code:code", "x", "not a reference parameter of Observation"),
        ("_has:Person:practitioner:name", "x", "cannot refer to Patient"),
        ("_has:Observation:patient:nonsense", "x", "Unknown search parameter 'nonsense'"),
        ("_has:Observation:patient:_count", "1", "not a search parameter"),
        ("_has:Observation:patient:code", "", "empty value"),
        ("_has:Observation:patient:code:exact", "x", "not supported"),
        ("_has:Observation:patient:date", "not-a-date", "not-a-date"),
    ],
)
def test_a_malformed_reverse_chain_is_refused_even_leniently(
    client: TestClient, name: str, value: str, says: str
) -> None:
    # Ignoring any part of a _has would answer a broader search than the one asked.
    response = client.get("/fhir/Patient", params={name: value})
    assert response.status_code in (400, 501), response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert says in outcome["issue"][0]["diagnostics"]

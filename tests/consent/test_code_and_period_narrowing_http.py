"""Choices narrowed to a code or to a period of data are enforced over HTTP, on both
databases.

"Not my hypertension diagnosis" (``provision.code``) withholds every resource whose token
index holds that code (the diagnosis, wherever it is recorded), and nothing else; a permit
narrowed to a code lets only that data through a blanket objection. A resource recoded away
from the code is shown again, but its earlier version is not (its codes are not indexed:
a deny applies to what is not known); a deleted one answers 404, as for a resource that
never existed. ``provision.action`` naming what directives govern (access, use, disclose)
changes nothing; other actions, and codes without a system, are refused (422) and record
nothing.

"Not my records from 2010 to 2015" (``provision.dataPeriod``) withholds what the care dates
put in that period (a diagnosis by its onset), data of unknown date with it, and never the
person's demographics (a Patient records no care date).

The world: a person registered at practice Z90002, a GP at Z90001 related to them through a
CareTeam, and the hospital's diagnoses of hypertension (ICD-10 I10, onset March 2012) and
type 2 diabetes (E11, onset April 2019). The demo agreement shares problems with GPs for direct care.
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
HYPERTENSION = {"system": ICD10, "code": "I10"}
DIABETES = {"system": ICD10, "code": "E11"}
CONSENT_ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"


@dataclass(frozen=True)
class Record:
    patient: str
    hypertension: str
    diabetes: str
    gp: dict[str, str]
    hospital: dict[str, str]


def _diagnosis(
    patient: str, coding: dict[str, str], onset: str | None = "2019-04-02"
) -> dict[str, Any]:
    diagnosis = {**fhir.condition(patient_id=patient), "code": {"coding": [coding]}}
    if onset is None:
        del diagnosis["onsetDateTime"]
    else:
        diagnosis["onsetDateTime"] = onset
    return diagnosis


@pytest.fixture
def record(client: TestClient, issuer: DevelopmentIssuer) -> Record:
    patient = write_as(client, fhir.patient(family="Codewise"), PRACTICE)
    hypertension = write_as(client, _diagnosis(patient, HYPERTENSION, "2012-03-01"), HOSPITAL)
    diabetes = write_as(client, _diagnosis(patient, DIABETES), HOSPITAL)
    write_as(
        client, fhir.care_team(patient_id=patient, member="Practitioner/gp-Z90001-0"), PRACTICE
    )
    gp = bearer(issuer, user_claims("gp-Z90001-0", organization="Z90001"))
    hospital = bearer(issuer, user_claims("doc-Z9H-0", organization="Z9H"))
    return Record(patient, hypertension, diabetes, gp, hospital)


def _seen(client: TestClient, r: Record) -> set[str]:
    """The diagnoses the GP reaches, checking that reads, the search and its total agree."""
    search = client.get(
        "/fhir/Condition", params={"patient": r.patient, "_total": "accurate"}, headers=r.gp
    )
    assert search.status_code == 200, search.text
    found = {
        e["resource"]["id"]
        for e in search.json().get("entry", [])
        if e["resource"]["resourceType"] == "Condition"
    }
    assert search.json()["total"] == len(found)
    for condition in (r.hypertension, r.diabetes):
        read = client.get(f"/fhir/Condition/{condition}", headers=r.gp)
        assert (read.status_code == 200) == (condition in found), (condition, read.status_code)
    return found


def _withheld(client: TestClient, r: Record) -> bool:
    bundle = client.get("/fhir/Condition", params={"patient": r.patient}, headers=r.gp).json()
    return any(e.get("search", {}).get("mode") == "outcome" for e in bundle.get("entry", []))


def _singled_out_by_hypertension(client: TestClient, r: Record) -> bool:
    response = client.get(
        "/fhir/Patient",
        params={"_id": r.patient, "_has:Condition:subject:code": f"{ICD10}|I10"},
        headers=r.gp,
    )
    assert response.status_code == 200, response.text
    return r.patient in {e["resource"]["id"] for e in response.json().get("entry", [])}


def _record_choice(client: TestClient, r: Record, provision: dict[str, Any]) -> None:
    write_as(client, fhir.privacy_consent(r.patient, provision), PRACTICE)


def _recode(
    client: TestClient,
    r: Record,
    condition: str,
    coding: dict[str, str],
    onset: str | None = "2019-04-02",
) -> None:
    body = {**_diagnosis(r.patient, coding, onset), "id": condition, "meta": {"source": HOSPITAL}}
    response = client.put(f"/fhir/Condition/{condition}", json=body)
    assert response.status_code == 200, response.text


def test_an_objection_to_one_code_withholds_that_diagnosis_only(
    client: TestClient, record: Record
) -> None:
    assert _seen(client, record) == {record.hypertension, record.diabetes}
    assert not _withheld(client, record)
    assert _singled_out_by_hypertension(client, record)
    _record_choice(client, record, {"type": "deny", "code": [{"coding": [HYPERTENSION]}]})
    assert _seen(client, record) == {record.diabetes}
    # Nor can the withheld diagnosis single the person out by a reverse chain.
    assert not _singled_out_by_hypertension(client, record)
    # The GP is told something is withheld, not what.
    assert _withheld(client, record)
    # The organisation that recorded it still sees its own record.
    own = client.get(f"/fhir/Condition/{record.hypertension}", headers=record.hospital)
    assert own.status_code == 200


def test_the_same_code_under_another_system_is_another_concept(
    client: TestClient, record: Record
) -> None:
    snomed_i10 = {"system": "http://snomed.info/sct", "code": "I10"}
    _record_choice(client, record, {"type": "deny", "code": [{"coding": [snomed_i10]}]})
    assert _seen(client, record) == {record.hypertension, record.diabetes}


def test_a_permit_narrowed_to_a_code_lets_only_that_through_an_objection(
    client: TestClient, record: Record
) -> None:
    # "Share nothing, except my diabetes": the narrower permit wins for that code only.
    _record_choice(
        client,
        record,
        {"type": "deny", "provision": [{"type": "permit", "code": [{"coding": [DIABETES]}]}]},
    )
    assert _seen(client, record) == {record.diabetes}


def test_a_recoded_diagnosis_shows_again_but_not_its_earlier_version(
    client: TestClient, record: Record
) -> None:
    _record_choice(client, record, {"type": "deny", "code": [{"coding": [HYPERTENSION]}]})
    hyperlipidaemia = {"system": ICD10, "code": "E78"}
    _recode(client, record, record.hypertension, hyperlipidaemia)
    assert _seen(client, record) == {record.hypertension, record.diabetes}
    path = f"/fhir/Condition/{record.hypertension}"
    assert client.get(f"{path}/_history/2", headers=record.gp).status_code == 200
    # Version 1 carried the code; the index no longer says so, and the deny holds.
    assert client.get(f"{path}/_history/1", headers=record.gp).status_code == 404
    history = client.get(f"{path}/_history", headers=record.gp).json()
    assert [e["resource"]["meta"]["versionId"] for e in history.get("entry", [])] == ["2"]
    # And a diagnosis recoded *to* the code is withheld at once.
    _recode(client, record, record.diabetes, HYPERTENSION)
    assert _seen(client, record) == {record.hypertension}


def test_a_deleted_diagnosis_under_an_objection_answers_as_if_it_never_existed(
    client: TestClient, record: Record
) -> None:
    for condition in (record.hypertension, record.diabetes):
        deleted = client.delete(f"/fhir/Condition/{condition}")
        assert deleted.status_code in (200, 204), deleted.text
    # Without a choice, a deleted resource the GP could see answers 410 Gone...
    assert client.get(f"/fhir/Condition/{record.diabetes}", headers=record.gp).status_code == 410
    _record_choice(client, record, {"type": "deny", "code": [{"coding": [HYPERTENSION]}]})
    # ...but under a code objection its codes are not known any more: 404, as for nothing.
    for condition in (record.hypertension, record.diabetes):
        gone = client.get(f"/fhir/Condition/{condition}", headers=record.gp)
        assert gone.status_code == 404, (condition, gone.status_code)


@pytest.mark.parametrize("action", ["access", "disclose", "use"])
def test_an_action_directives_govern_changes_nothing(
    client: TestClient, record: Record, action: str
) -> None:
    provision = {
        "type": "deny",
        "code": [{"coding": [HYPERTENSION]}],
        "action": [{"coding": [{"system": CONSENT_ACTION, "code": action}]}],
    }
    _record_choice(client, record, provision)
    assert _seen(client, record) == {record.diabetes}


@pytest.mark.parametrize(
    ("narrowing", "named"),
    [
        pytest.param({"code": [{"coding": [{"code": "I10"}]}]}, "code", id="code-no-system"),
        pytest.param({"code": [{"text": "my blood pressure"}]}, "code", id="code-text-only"),
        pytest.param(
            {"action": [{"coding": [{"system": CONSENT_ACTION, "code": "collect"}]}]},
            "action",
            id="action-collect",
        ),
        pytest.param(
            {"dataPeriod": {"start": "2016-01-01", "end": "2010-01-01"}},
            "dataPeriod",
            id="data-period-backwards",
        ),
        pytest.param(
            {
                "dataPeriod": {"start": "2010-01-01"},
                "data": [{"meaning": "instance", "reference": {"reference": "Condition/x"}}],
            },
            "dataPeriod",
            id="data-period-with-an-item",
        ),
    ],
)
def test_what_cannot_be_enforced_is_refused_and_nothing_recorded(
    client: TestClient, record: Record, narrowing: dict[str, Any], named: str
) -> None:
    consent = fhir.privacy_consent(record.patient, {"type": "deny", **narrowing})
    response = client.post("/fhir/Consent", json={**consent, "meta": {"source": PRACTICE}})
    assert response.status_code == 422, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert named in response.json()["issue"][0]["diagnostics"]
    assert _seen(client, record) == {record.hypertension, record.diabetes}


BEFORE_2016 = {"start": "2010-01-01", "end": "2015-12-31"}


def test_an_objection_to_a_period_withholds_that_periods_data_only(
    client: TestClient, record: Record
) -> None:
    _record_choice(client, record, {"type": "deny", "dataPeriod": BEFORE_2016})
    assert _seen(client, record) == {record.diabetes}
    assert _withheld(client, record)
    # The person's demographics are no period's data.
    patient = client.get(f"/fhir/Patient/{record.patient}", headers=record.gp)
    assert patient.status_code == 200
    # $everything holds to it as the search does.
    everything = client.get(
        f"/fhir/Patient/{record.patient}/$everything", params={"_count": 500}, headers=record.gp
    ).json()
    conditions = {
        e["resource"]["id"]
        for e in everything.get("entry", [])
        if e["resource"]["resourceType"] == "Condition"
    }
    assert conditions == {record.diabetes}


def test_data_of_unknown_date_is_withheld_by_a_period_objection(
    client: TestClient, record: Record
) -> None:
    undated = write_as(client, _diagnosis(record.patient, DIABETES, onset=None), HOSPITAL)
    assert client.get(f"/fhir/Condition/{undated}", headers=record.gp).status_code == 200
    _record_choice(client, record, {"type": "deny", "dataPeriod": BEFORE_2016})
    assert client.get(f"/fhir/Condition/{undated}", headers=record.gp).status_code == 404


def test_a_permit_for_a_period_lets_through_only_what_is_known_to_lie_within_it(
    client: TestClient, record: Record
) -> None:
    # "Share nothing, except what is from 2018 on": the diabetes of 2019 only; not the 2012
    # hypertension, and not the undated diagnosis, which may be from any time.
    undated = write_as(client, _diagnosis(record.patient, DIABETES, onset=None), HOSPITAL)
    _record_choice(
        client,
        record,
        {"type": "deny", "provision": [{"type": "permit", "dataPeriod": {"start": "2018-01-01"}}]},
    )
    assert _seen(client, record) == {record.diabetes}
    assert client.get(f"/fhir/Condition/{undated}", headers=record.gp).status_code == 404


def test_a_redated_diagnosis_shows_again_but_not_its_earlier_version(
    client: TestClient, record: Record
) -> None:
    _record_choice(client, record, {"type": "deny", "dataPeriod": BEFORE_2016})
    _recode(client, record, record.hypertension, HYPERTENSION, onset="2018-05-01")
    assert _seen(client, record) == {record.hypertension, record.diabetes}
    path = f"/fhir/Condition/{record.hypertension}"
    assert client.get(f"{path}/_history/2", headers=record.gp).status_code == 200
    assert client.get(f"{path}/_history/1", headers=record.gp).status_code == 404

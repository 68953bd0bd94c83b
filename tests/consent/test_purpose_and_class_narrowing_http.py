"""Choices narrowed to a purpose of use or to a resource type are enforced over HTTP, on
both databases.

"Not for case-finding" (``provision.purpose``) withholds the person's data from callers who
declare case-finding, and from no one else; "not for direct care" the other way round. "Not
my care plans" (``provision.class``) withholds care plans and nothing else. What cannot be
enforced is still refused (422) and records nothing.

The world: a person registered at practice Z90002, a GP at Z90001 related to them through a
CareTeam, and the hospital's diagnosis of hypertension and care plan. The demo agreement
shares problems and care plans with GPs for direct care (TREAT), and problems for
case-finding (CASEFIND, role R8000).
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
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
CAREJOIN_PURPOSE = "https://fhir.carejoin.example/CodeSystem/purpose-of-use"
CASEFIND = {"system": CAREJOIN_PURPOSE, "code": "CASEFIND"}
TREAT = {"system": ACT_REASON, "code": "TREAT"}


@dataclass(frozen=True)
class Record:
    patient: str
    hypertension: str
    care_plan: str
    treating: dict[str, str]  # the GP, for direct care
    casefinding: dict[str, str]  # the same GP, case-finding


@pytest.fixture
def record(client: TestClient, issuer: DevelopmentIssuer) -> Record:
    patient = write_as(client, fhir.patient(family="Purposeful"), PRACTICE)
    hypertension = write_as(
        client,
        {
            **fhir.condition(patient_id=patient),
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}]},
        },
        HOSPITAL,
    )
    care_plan = write_as(
        client,
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": f"Patient/{patient}"},
            "addresses": [{"reference": f"Condition/{hypertension}"}],
        },
        HOSPITAL,
    )
    write_as(
        client, fhir.care_team(patient_id=patient, member="Practitioner/gp-Z90001-0"), PRACTICE
    )

    def gp(purpose: str) -> dict[str, str]:
        claims = user_claims("gp-Z90001-0", organization="Z90001", purpose_of_use=purpose)
        return bearer(issuer, claims)

    return Record(patient, hypertension, care_plan, gp("TREAT"), gp("CASEFIND"))


def _sees(client: TestClient, r: Record, headers: dict[str, str]) -> bool:
    """Whether the caller reaches the diagnosis, checking that read and search agree."""
    read = client.get(f"/fhir/Condition/{r.hypertension}", headers=headers)
    search = client.get(
        "/fhir/Condition", params={"patient": r.patient, "_total": "accurate"}, headers=headers
    )
    assert search.status_code == 200, search.text
    found = {e["resource"]["id"] for e in search.json().get("entry", [])}
    assert (read.status_code == 200) == (r.hypertension in found), (read.status_code, found)
    assert search.json()["total"] == len(found)
    return read.status_code == 200


def _record_choice(client: TestClient, r: Record, provision: dict[str, Any]) -> None:
    write_as(client, fhir.privacy_consent(r.patient, provision), PRACTICE)


def test_before_any_choice_both_purposes_see_the_diagnosis(
    client: TestClient, record: Record
) -> None:
    assert _sees(client, record, record.treating)
    assert _sees(client, record, record.casefinding)


def test_an_objection_to_case_finding_withholds_from_case_finding_only(
    client: TestClient, record: Record
) -> None:
    _record_choice(client, record, {"type": "deny", "purpose": [CASEFIND]})
    assert not _sees(client, record, record.casefinding)
    assert _sees(client, record, record.treating)


def test_an_objection_to_direct_care_withholds_from_direct_care_only(
    client: TestClient, record: Record
) -> None:
    _record_choice(client, record, {"type": "deny", "purpose": [TREAT]})
    assert not _sees(client, record, record.treating)
    assert _sees(client, record, record.casefinding)


def test_a_permit_for_direct_care_outweighs_a_blanket_objection_there_only(
    client: TestClient, record: Record
) -> None:
    # "Share nothing, except for my direct care": the narrower permit wins for TREAT.
    _record_choice(
        client,
        record,
        {"type": "deny", "provision": [{"type": "permit", "purpose": [TREAT]}]},
    )
    assert _sees(client, record, record.treating)
    assert not _sees(client, record, record.casefinding)


@pytest.mark.parametrize(
    "purpose",
    [
        {"system": ACT_REASON, "code": "HRESCH"},
        {"code": "TREAT"},
        {**CASEFIND, "system": ACT_REASON},
    ],
)
def test_a_purpose_that_cannot_be_enforced_is_refused_and_nothing_recorded(
    client: TestClient, record: Record, purpose: dict[str, str]
) -> None:
    consent = fhir.privacy_consent(record.patient, {"type": "deny", "purpose": [purpose]})
    response = client.post("/fhir/Consent", json={**consent, "meta": {"source": PRACTICE}})
    assert response.status_code == 422, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "purpose" in response.json()["issue"][0]["diagnostics"]
    assert _sees(client, record, record.treating)
    assert _sees(client, record, record.casefinding)


def _sees_care_plan(client: TestClient, r: Record) -> bool:
    read = client.get(f"/fhir/CarePlan/{r.care_plan}", headers=r.treating)
    search = client.get("/fhir/CarePlan", params={"patient": r.patient}, headers=r.treating)
    found = {
        e["resource"]["id"]
        for e in search.json().get("entry", [])
        if e["resource"]["resourceType"] == "CarePlan"
    }
    assert (read.status_code == 200) == (r.care_plan in found)
    return read.status_code == 200


def _revincluded(client: TestClient, r: Record) -> list[str]:
    """What a search for the diagnosis brings with the care plans addressing it."""
    bundle = client.get(
        "/fhir/Condition",
        params={"_id": r.hypertension, "_revinclude": "CarePlan:condition"},
        headers=r.treating,
    ).json()
    return sorted(e["resource"]["resourceType"] for e in bundle["entry"])


def test_an_objection_to_sharing_care_plans_withholds_care_plans_only(
    client: TestClient, record: Record
) -> None:
    assert _sees_care_plan(client, record)
    assert _revincluded(client, record) == ["CarePlan", "Condition"]
    care_plans = {"system": "http://hl7.org/fhir/resource-types", "code": "CarePlan"}
    _record_choice(client, record, {"type": "deny", "class": [care_plans]})
    assert not _sees_care_plan(client, record)
    assert _sees(client, record, record.treating)
    # The diagnosis the plan addresses is still there, and the plan is not let in by it.
    assert _revincluded(client, record) == ["Condition"]


def test_a_class_that_is_not_a_resource_type_is_refused(client: TestClient, record: Record) -> None:
    consent = fhir.privacy_consent(
        record.patient,
        {"type": "deny", "class": [{"system": "urn:ietf:bcp:13", "code": "application/pdf"}]},
    )
    response = client.post("/fhir/Consent", json={**consent, "meta": {"source": PRACTICE}})
    assert response.status_code == 422, response.text
    assert "resource types" in response.json()["issue"][0]["diagnostics"]
    assert _sees_care_plan(client, record)

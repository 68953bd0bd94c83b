"""A choice narrowed by security label is enforced over HTTP, on both databases.

"Not my mental health detail" (``provision.securityLabel``) withholds exactly the data
carrying that label, and nothing else, on every path: search and its total, read, vread,
``$everything``, ``_include`` and ``_revinclude``; a narrowed permit opens only that label's
data; the ordering is the documented one (a label counts as one more thing a directive
names); what cannot be enforced is still refused (422) and records nothing.

The world: a person registered at practice Z90002, a GP at Z90001 related to them through a
CareTeam (the demo agreement's direct-care rule shares mental health detail with GPs), and
the hospital's records: a depression diagnosis (ICD-10 F32, stored with the category
``mental_health``, ``PSY`` and confidentiality ``R``), a hypertension diagnosis (ordinary),
an Encounter naming both as diagnoses and a CarePlan addressing both.
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
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
PSY = {"system": ACT_CODE, "code": "PSY"}
MH = {"system": ACT_CODE, "code": "MH"}  # the newer HL7 code for the same category
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


def _actor(code: str, ods: str) -> dict[str, Any]:
    return {
        "role": {"coding": [{"system": PARTICIPATION, "code": code}]},
        "reference": {"identifier": {"system": ODS, "value": ods}},
    }


@dataclass(frozen=True)
class Record:
    patient: str
    depression: str
    hypertension: str
    encounter: str
    care_plan: str
    gp: dict[str, str]


@pytest.fixture
def record(client: TestClient, issuer: DevelopmentIssuer) -> Record:
    patient = write_as(client, fhir.patient(family="Narrowed"), PRACTICE)

    def diagnosis(code: str) -> str:
        condition = {
            **fhir.condition(patient_id=patient),
            "code": {"coding": [{"system": ICD10, "code": code}]},
        }
        return write_as(client, condition, HOSPITAL)

    depression, hypertension = diagnosis("F32.1"), diagnosis("I10")
    encounter = write_as(
        client, fhir.encounter(patient_id=patient, diagnoses=(depression, hypertension)), HOSPITAL
    )
    care_plan = write_as(
        client,
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": f"Patient/{patient}"},
            "addresses": [
                {"reference": f"Condition/{depression}"},
                {"reference": f"Condition/{hypertension}"},
            ],
        },
        HOSPITAL,
    )
    write_as(
        client, fhir.care_team(patient_id=patient, member="Practitioner/gp-Z90001-0"), PRACTICE
    )
    gp = bearer(issuer, user_claims("gp-Z90001-0", organization="Z90001"))
    return Record(patient, depression, hypertension, encounter, care_plan, gp)


def _matches(bundle: dict[str, Any], resource_type: str = "Condition") -> set[str]:
    return {
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e["search"]["mode"] in ("match", "include")
        and e["resource"]["resourceType"] == resource_type
    }


def _seen(client: TestClient, r: Record) -> dict[str, Any]:
    """Every way the GP can reach the person's Conditions."""
    search = client.get("/fhir/Condition", params={"patient": r.patient}, headers=r.gp).json()
    count = client.get(
        "/fhir/Condition", params={"patient": r.patient, "_summary": "count"}, headers=r.gp
    ).json()
    everything = client.get(f"/fhir/Patient/{r.patient}/$everything", headers=r.gp).json()
    included = client.get(
        "/fhir/Encounter",
        params={"_id": r.encounter, "_include": "Encounter:diagnosis"},
        headers=r.gp,
    ).json()
    plan = client.get(
        "/fhir/CarePlan",
        params={"_id": r.care_plan, "_include": "CarePlan:condition"},
        headers=r.gp,
    ).json()
    revincluded = client.get(
        "/fhir/Patient",
        params={"_id": r.patient, "_revinclude": "Condition:subject"},
        headers=r.gp,
    ).json()
    reads = {
        c: client.get(f"/fhir/Condition/{c}", headers=r.gp).status_code
        for c in (r.depression, r.hypertension)
    }
    vreads = {
        c: client.get(f"/fhir/Condition/{c}/_history/1", headers=r.gp).status_code
        for c in (r.depression, r.hypertension)
    }
    shown = _matches(search)
    assert search["total"] == len(shown) == count["total"]
    if everything.get("resourceType") == "Bundle":
        assert _matches(everything) == shown
    else:  # the Patient itself is hidden (a blanket objection): as if it did not exist
        assert client.get(f"/fhir/Patient/{r.patient}", headers=r.gp).status_code == 404
    for base, other in (
        ("Encounter", included),
        ("CarePlan", plan),
        ("Patient", revincluded),
    ):
        # Through a visible resource, the same Conditions; through a hidden one, none.
        expected = shown if _matches(other, base) else set()
        assert _matches(other) == expected, f"through {base}"
    assert {c for c, status in reads.items() if status == 200} == shown
    assert {c for c, status in vreads.items() if status == 200} == shown
    assert set(reads.values()) <= {200, 404}
    assert set(vreads.values()) <= {200, 404}
    return {"shown": shown, "everything": everything}


def _record_choice(client: TestClient, r: Record, provision: dict[str, Any]) -> str:
    return write_as(client, fhir.privacy_consent(r.patient, provision), PRACTICE)


BOTH = "both"


@pytest.mark.parametrize(
    ("provision", "shown"),
    [
        pytest.param(
            {"type": "deny", "securityLabel": [PSY]}, {"hypertension"}, id="label-only-objection"
        ),
        pytest.param(
            {"type": "deny", "securityLabel": [MH]}, {"hypertension"}, id="newer-code-same-category"
        ),
        pytest.param(
            {"type": "deny", "securityLabel": [{"system": CONFIDENTIALITY, "code": "R"}]},
            {"hypertension"},
            id="confidentiality-R",
        ),
        pytest.param(
            {"type": "deny", "securityLabel": [{"system": CONFIDENTIALITY, "code": "V"}]},
            {"depression", "hypertension"},
            id="confidentiality-V-is-not-R",
        ),
        pytest.param(
            {"type": "deny", "securityLabel": [{"system": ACT_CODE, "code": "HIV"}]},
            {"depression", "hypertension"},
            id="another-category",
        ),
        pytest.param(
            {"type": "deny", "actor": [_actor("IRCP", "Z90001")], "securityLabel": [PSY]},
            {"hypertension"},
            id="label-to-this-recipient",
        ),
        pytest.param(
            {"type": "deny", "actor": [_actor("IRCP", "Z9C01")], "securityLabel": [PSY]},
            {"depression", "hypertension"},
            id="label-to-another-recipient",
        ),
        pytest.param(
            {"type": "deny", "actor": [_actor("CST", "Z9H")], "securityLabel": [PSY]},
            {"hypertension"},
            id="label-from-this-source",
        ),
        pytest.param(
            {"type": "permit", "provision": [{"type": "deny", "securityLabel": [PSY]}]},
            {"hypertension"},
            id="nested-label-objection",
        ),
        pytest.param(
            # Level 2 (label and recipient) beats level 1 (recipient).
            {
                "type": "permit",
                "actor": [_actor("IRCP", "Z90001")],
                "provision": [
                    {"type": "deny", "actor": [_actor("IRCP", "Z90001")], "securityLabel": [PSY]}
                ],
            },
            {"hypertension"},
            id="label-objection-beats-recipient-permit",
        ),
        pytest.param(
            # A permit of the label to the recipient (level 2) beats a blanket objection (0):
            # it opens that label's data only.
            {
                "type": "deny",
                "provision": [
                    {
                        "type": "permit",
                        "actor": [_actor("IRCP", "Z90001")],
                        "securityLabel": [PSY],
                    }
                ],
            },
            {"depression"},
            id="label-permit-beats-blanket-objection",
        ),
        pytest.param(
            # Level 1 each (a label; a recipient): deny wins.
            {
                "type": "deny",
                "securityLabel": [PSY],
                "provision": [{"type": "permit", "actor": [_actor("IRCP", "Z90001")]}],
            },
            {"hypertension"},
            id="equal-level-deny-wins",
        ),
    ],
)
def test_a_label_narrowed_choice_withholds_exactly_that_label_everywhere(
    client: TestClient, record: Record, provision: dict[str, Any], shown: set[str]
) -> None:
    before = _seen(client, record)
    assert before["shown"] == {record.depression, record.hypertension}
    _record_choice(client, record, provision)
    names = {"depression": record.depression, "hypertension": record.hypertension}
    after = _seen(client, record)
    assert after["shown"] == {names[n] for n in shown}
    # The Encounter and the CarePlan that name a hidden diagnosis stay visible (they do not
    # carry its label); only the diagnosis itself is withheld. (A blanket objection hides
    # them too.)
    others = {
        e["resource"]["resourceType"]
        for e in after["everything"].get("entry", [])
        if e["search"]["mode"] == "match"
    }
    assert ({"Encounter", "CarePlan"} <= others) is (
        provision["type"] == "permit" or record.hypertension in after["shown"]
    )


def test_withdrawing_the_choice_shows_the_data_again(client: TestClient, record: Record) -> None:
    consent = _record_choice(client, record, {"type": "deny", "securityLabel": [PSY]})
    assert _seen(client, record)["shown"] == {record.hypertension}
    body = {
        **fhir.privacy_consent(record.patient, {"type": "deny", "securityLabel": [PSY]}),
        "id": consent,
        "status": "inactive",
        "meta": {"source": PRACTICE},
    }
    assert client.put(f"/fhir/Consent/{consent}", json=body).status_code == 200
    assert _seen(client, record)["shown"] == {record.depression, record.hypertension}


def test_the_person_still_sees_their_own_labelled_data(
    client: TestClient, issuer: DevelopmentIssuer, record: Record
) -> None:
    _record_choice(client, record, {"type": "deny", "securityLabel": [PSY]})
    person = bearer(
        issuer,
        {"sub": record.patient, "patient": record.patient, "scope": "patient/*.rs"},
    )
    search = client.get("/fhir/Condition", params={"patient": record.patient}, headers=person)
    assert search.status_code == 200, search.text
    assert _matches(search.json()) == {record.depression, record.hypertension}


@pytest.mark.parametrize(
    ("provision", "says"),
    [
        pytest.param(
            {"type": "deny", "securityLabel": [{"system": ACT_CODE, "code": "NOSUCH"}]},
            "not a sensitivity label",
            id="unknown-label",
        ),
        pytest.param(
            {"type": "deny", "securityLabel": [{"code": "PSY"}]},
            "securityLabel[0]",
            id="label-without-system",
        ),
        pytest.param(
            {"type": "deny", "securityLabel": [{"system": CONFIDENTIALITY, "code": "N"}]},
            "confidentiality",
            id="confidentiality-N",
        ),
        pytest.param(
            {
                "type": "permit",
                "provision": [
                    {
                        "type": "deny",
                        "securityLabel": [PSY],
                        "data": [
                            {"meaning": "instance", "reference": {"reference": "Condition/x"}}
                        ],
                    }
                ],
            },
            "not both",
            id="label-and-item",
        ),
    ],
)
def test_a_narrowing_that_cannot_be_enforced_is_refused_and_changes_nothing(
    client: TestClient, record: Record, provision: dict[str, Any], says: str
) -> None:
    before = _seen(client, record)
    refused = client.post(
        "/fhir/Consent",
        json={**fhir.privacy_consent(record.patient, provision), "meta": {"source": PRACTICE}},
    )
    assert refused.status_code == 422, refused.text
    assert says in refused.text
    assert _seen(client, record)["shown"] == before["shown"]
    assert client.get("/fhir/Consent", params={"patient": record.patient}).json()["total"] == 0

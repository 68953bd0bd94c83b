"""Break-glass, self-claimed relationships and the agreement's administration, over HTTP on
both databases."""

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from fhir_gateway.access.models import BreakGlassGrantRow
from fhir_gateway.audit.models import AuditEventRow
from fhir_gateway.auth.issuer import DevelopmentIssuer
from tests.conftest import bearer, user_claims
from tests.factories import fhir
from tests.factories.agreement import test_agreement
from tests.factories.http import write_as

GP_PRACTICE = "urn:carejoin:source:Z90002"


def _write(client: TestClient, resource: dict[str, Any], source: str = GP_PRACTICE) -> str:
    return write_as(client, resource, source)


def _world(client: TestClient) -> tuple[str, str]:
    """A person registered at Z90002 with a condition; nobody at the hospital knows them."""
    patient = _write(client, fhir.patient(family="Glass", nhs_number="9990011111"))
    condition = _write(client, fhir.condition(patient_id=patient))
    return patient, condition


def _doctor(issuer: DevelopmentIssuer, purpose: str = "TREAT", user: str = "hosp-doctor-1"):
    return bearer(
        issuer, user_claims(user, organization="Z9H", role="R8000", purpose_of_use=purpose)
    )


def _audit_count(connection: Connection, interaction: str) -> int:
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(AuditEventRow)
                .where(AuditEventRow.interaction == interaction)
            )
            or 0
        )


def test_break_glass_opens_one_record_to_one_user_with_purpose_btg(
    client: TestClient, issuer: DevelopmentIssuer, connection: Connection
) -> None:
    patient, condition = _world(client)
    treat, btg = _doctor(issuer), _doctor(issuer, "BTG")
    assert client.get(f"/fhir/Condition/{condition}", headers=treat).status_code == 404
    assert client.get(f"/fhir/Condition/{condition}", headers=btg).status_code == 404  # no grant

    granted = client.post(
        "/consent/break-glass",
        json={"patient": f"Patient/{patient}", "reason": "Unconscious in A&E, no history"},
        headers=btg,
    )
    assert granted.status_code == 201, granted.text
    expires = datetime.fromisoformat(granted.json()["expires"])
    assert timedelta(hours=3, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=4)
    assert _audit_count(connection, "break-glass") == 1

    assert client.get(f"/fhir/Condition/{condition}", headers=btg).status_code == 200
    everything = client.get(f"/fhir/Patient/{patient}/$everything", headers=btg).json()
    assert {e["resource"]["id"] for e in everything["entry"]} >= {patient, condition}
    # Only with purpose BTG, only for this user.
    assert client.get(f"/fhir/Condition/{condition}", headers=treat).status_code == 404
    colleague = _doctor(issuer, "BTG", user="hosp-doctor-2")
    assert client.get(f"/fhir/Condition/{condition}", headers=colleague).status_code == 404


def test_break_glass_never_lifts_a_sealed_item_or_a_never_share_category(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    patient, condition = _world(client)
    # Fertility treatment (never shared) and a sealed item.
    ivf = _write(client, {**fhir.condition(patient_id=patient), **_icd10()})
    sealed = fhir.privacy_consent(
        patient,
        {
            "type": "permit",
            "provision": [
                {
                    "type": "deny",
                    "data": [
                        {
                            "meaning": "instance",
                            "reference": {"reference": f"Condition/{condition}"},
                        }
                    ],
                }
            ],
        },
    )
    _write(client, sealed)
    btg = _doctor(issuer, "BTG")
    reason = {"patient": f"Patient/{patient}", "reason": "Collapsed, needs history now"}
    assert client.post("/consent/break-glass", json=reason, headers=btg).status_code == 201
    assert client.get(f"/fhir/Patient/{patient}", headers=btg).status_code == 200
    assert client.get(f"/fhir/Condition/{condition}", headers=btg).status_code == 404
    assert client.get(f"/fhir/Condition/{ivf}", headers=btg).status_code == 404
    # The recording practice still sees both.
    gp = bearer(issuer, user_claims("gp-Z90002-0", organization="Z90002"))
    assert client.get(f"/fhir/Condition/{condition}", headers=gp).status_code == 200
    assert client.get(f"/fhir/Condition/{ivf}", headers=gp).status_code == 200


def _icd10() -> dict[str, Any]:
    return {"code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "N97.9"}]}}


def test_break_glass_is_refused_without_the_role_the_purpose_or_a_reason(
    client: TestClient, issuer: DevelopmentIssuer, connection: Connection
) -> None:
    patient, _condition = _world(client)
    body = {"patient": f"Patient/{patient}", "reason": "Emergency, no history available"}
    nurse = bearer(
        issuer, user_claims("hosp-nurse-1", organization="Z9H", role="R8001", purpose_of_use="BTG")
    )
    assert client.post("/consent/break-glass", json=body, headers=nurse).status_code == 403
    treat = _doctor(issuer)
    assert client.post("/consent/break-glass", json=body, headers=treat).status_code == 403
    btg = _doctor(issuer, "BTG")
    short = client.post("/consent/break-glass", json={**body, "reason": "urgent"}, headers=btg)
    assert short.status_code == 400
    assert short.json()["resourceType"] == "OperationOutcome"
    unknown = client.post(
        "/consent/break-glass", json={**body, "patient": "Patient/nobody"}, headers=btg
    )
    assert unknown.status_code == 404
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        assert session.scalar(select(func.count()).select_from(BreakGlassGrantRow)) == 0
    assert _audit_count(connection, "break-glass") == 0


def test_an_expired_grant_opens_nothing(
    client: TestClient, issuer: DevelopmentIssuer, connection: Connection
) -> None:
    patient, condition = _world(client)
    now = datetime.now(UTC)
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        session.add(
            BreakGlassGrantRow(
                grant_id="expired-grant",
                practitioner="Practitioner/hosp-doctor-1",
                organisation="Z9H",
                role="R8000",
                patient_id=patient,
                reason="An emergency five hours ago",
                granted_at=now - timedelta(hours=5),
                expires_at=now - timedelta(hours=1),
            )
        )
        session.commit()
    assert (
        client.get(f"/fhir/Condition/{condition}", headers=_doctor(issuer, "BTG")).status_code
        == 404
    )


def test_privacy_officers_see_the_break_glass_queue_and_nobody_else_does(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    patient, _condition = _world(client)
    body = {"patient": f"Patient/{patient}", "reason": "Unconscious in A&E, no history"}
    assert (
        client.post("/consent/break-glass", json=body, headers=_doctor(issuer, "BTG")).status_code
        == 201
    )
    officer = bearer(issuer, user_claims("privacy-1", organization="Z9H", role="CJ0003"))
    queue = client.get("/consent/break-glass", headers=officer)
    assert queue.status_code == 200
    (grant,) = queue.json()["grants"]
    assert grant["practitioner"] == "Practitioner/hosp-doctor-1"
    assert grant["reason"] == "Unconscious in A&E, no history"
    assert grant["active"] is True
    assert client.get("/consent/break-glass", headers=_doctor(issuer)).status_code == 403
    audit = client.get("/fhir/AuditEvent", params={"purpose": "BTG"}, headers=officer)
    assert audit.status_code == 200
    assert any(
        e["resource"].get("outcomeDesc", "").startswith("Break-glass until")
        for e in audit.json().get("entry", [])
    )


def test_a_self_claimed_relationship_opens_the_record_for_its_hours(
    client: TestClient, issuer: DevelopmentIssuer, connection: Connection
) -> None:
    patient, condition = _world(client)
    doctor = _doctor(issuer)
    assert client.get(f"/fhir/Condition/{condition}", headers=doctor).status_code == 404
    claimed = client.post(
        "/consent/relationships",
        json={"patient": f"Patient/{patient}", "reason": "Referred to my clinic today"},
        headers=doctor,
    )
    assert claimed.status_code == 201, claimed.text
    assert client.get(f"/fhir/Condition/{condition}", headers=doctor).status_code == 200
    assert _audit_count(connection, "claim-relationship") == 1
    social_worker = bearer(issuer, user_claims("asc-sw-1", organization="Z9C01", role="CJ0001"))
    refused = client.post(
        "/consent/relationships",
        json={"patient": f"Patient/{patient}", "reason": "Assessment booked next week"},
        headers=social_worker,
    )
    assert refused.status_code == 403  # the agreement does not allow this role to claim


def test_privacy_officers_load_a_new_agreement_which_applies_at_once(
    client: TestClient, issuer: DevelopmentIssuer, connection: Connection
) -> None:
    patient, condition = _world(client)
    officer = bearer(issuer, user_claims("privacy-1", organization="Z9H", role="CJ0003"))
    gp = bearer(issuer, user_claims("gp-Z90001-0", organization="Z90001"))
    assert (
        client.put("/admin/agreement", json=test_agreement(version="t2"), headers=gp).status_code
        == 403
    )
    bad = test_agreement(version="t2", never_share=["astrology"])
    refused = client.put("/admin/agreement", json=bad, headers=officer)
    assert refused.status_code == 422
    assert "never_share" in refused.json()["issue"][0]["diagnostics"]
    # A version that stops sharing problems with GP practices.
    narrower = test_agreement(version="t3")
    narrower["access"][0]["categories"] = ["demographics"]
    # Give the GP at Z90001 a relationship, so only the agreement decides.
    _write(
        client,
        {
            "resourceType": "CareTeam",
            "status": "active",
            "subject": {"reference": f"Patient/{patient}"},
            "participant": [{"member": {"reference": "Practitioner/gp-Z90001-0"}}],
        },
    )
    assert client.get(f"/fhir/Condition/{condition}", headers=gp).status_code == 200
    loaded = client.put("/admin/agreement", json=narrower, headers=officer)
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["inForce"] == "t3"
    assert client.get(f"/fhir/Condition/{condition}", headers=gp).status_code == 404
    assert client.get(f"/fhir/Patient/{patient}", headers=gp).status_code == 200
    again = client.put("/admin/agreement", json=narrower, headers=officer)
    assert again.status_code == 422  # a version is loaded once
    assert _audit_count(connection, "agreement-load") == 1
    versions = client.get("/admin/agreement", headers=officer).json()
    assert versions["inForce"] == "t3"
    assert [v["version"] for v in versions["versions"]] == ["t3"]


def test_a_relationship_with_one_person_opens_no_other_person(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    known, known_condition = _world(client)
    stranger = _write(client, fhir.patient(family="Stranger", nhs_number="9990022222"))
    stranger_condition = _write(client, fhir.condition(patient_id=stranger))
    doctor = _doctor(issuer)
    claimed = client.post(
        "/consent/relationships",
        json={"patient": f"Patient/{known}", "reason": "Referred to my clinic today"},
        headers=doctor,
    )
    assert claimed.status_code == 201
    assert client.get(f"/fhir/Condition/{known_condition}", headers=doctor).status_code == 200
    assert client.get(f"/fhir/Condition/{stranger_condition}", headers=doctor).status_code == 404
    found = client.get("/fhir/Condition", params={"_total": "accurate"}, headers=doctor).json()
    assert found["total"] == 1

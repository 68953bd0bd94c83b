"""Bearer tokens over HTTP: who may call, with what scopes, on both databases."""

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from pydantic import ValidationError

from carejoin.settings import Settings
from fhir_gateway.auth.issuer import DevelopmentIssuer
from fhir_gateway.settings import AuthSettings, GatewaySettings
from tests.conftest import BASE_URL, ISSUER, SYSTEM_CLAIMS, bearer, user_claims
from tests.factories import fhir


def _own(resource: dict[str, Any]) -> dict[str, Any]:
    """Recorded by the test user's own practice, so consent lets them see it."""
    return {**resource, "meta": {"source": "urn:carejoin:source:Z90001"}}


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _without_token(client: TestClient) -> TestClient:
    client.headers.pop("Authorization", None)
    return client


def _assert_401(response: object, words: str) -> None:
    assert response.status_code == 401  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "login"
    assert words in body["issue"][0]["diagnostics"]
    assert response.headers["www-authenticate"].startswith('Bearer realm="carejoin"')  # type: ignore[attr-defined]


def test_metadata_and_smart_configuration_are_public(client: TestClient) -> None:
    anonymous = _without_token(client)
    assert anonymous.get("/fhir/metadata").status_code == 200
    smart = anonymous.get("/fhir/.well-known/smart-configuration")
    assert smart.status_code == 200
    config = smart.json()
    assert config["issuer"] == ISSUER
    assert config["jwks_uri"] == f"{ISSUER}/jwks.json"
    assert "permission-v2" in config["capabilities"]
    keys = anonymous.get("/auth/jwks.json").json()["keys"]
    assert keys[0]["kty"] == "RSA"
    assert "d" not in keys[0]  # the public half only


@pytest.mark.parametrize(
    "path",
    ["/fhir/Patient", "/fhir/Patient/x", "/fhir/_history", "/identity/reviews", "/record/x"],
)
def test_no_token_is_401_everywhere_else(client: TestClient, path: str) -> None:
    _assert_401(_without_token(client).get(path), "needs an access token")


def test_a_token_that_is_not_bearer_is_401(client: TestClient) -> None:
    response = client.get("/fhir/Patient", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    _assert_401(response, "Bearer")


def test_a_token_signed_by_another_key_is_401(client: TestClient, tmp_path: Path) -> None:
    forger = DevelopmentIssuer(issuer=ISSUER, audience=BASE_URL, key_path=tmp_path / "k.pem")
    _assert_401(client.get("/fhir/Patient", headers=bearer(forger, SYSTEM_CLAIMS)), "signature")


def test_an_expired_token_is_401(client: TestClient, issuer: DevelopmentIssuer) -> None:
    expired = issuer.issue(SYSTEM_CLAIMS, lifetime=-120)  # past the 30 s leeway
    response = client.get("/fhir/Patient", headers={"Authorization": f"Bearer {expired}"})
    _assert_401(response, "expired")


def test_a_token_for_another_server_is_401(client: TestClient, issuer: DevelopmentIssuer) -> None:
    other = issuer.issue({**SYSTEM_CLAIMS, "aud": "https://elsewhere.example/fhir"})
    response = client.get("/fhir/Patient", headers={"Authorization": f"Bearer {other}"})
    _assert_401(response, "audience")


def test_a_token_from_another_issuer_is_401(client: TestClient, issuer: DevelopmentIssuer) -> None:
    other = issuer.issue({**SYSTEM_CLAIMS, "iss": "https://idp.elsewhere.example"})
    response = client.get("/fhir/Patient", headers={"Authorization": f"Bearer {other}"})
    _assert_401(response, "issuer")


def test_unsigned_and_symmetric_tokens_are_401(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    now = int(time.time())
    claims = {**SYSTEM_CLAIMS, "iss": ISSUER, "aud": BASE_URL, "iat": now, "exp": now + 60}
    unsigned = jwt.encode(claims, None, algorithm="none")
    # The public key used as an HMAC secret: the classic algorithm-confusion forgery.
    pem = issuer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = b".".join(
        _b64(json.dumps(part).encode()) for part in ({"alg": "HS256", "typ": "JWT"}, claims)
    )
    signature = _b64(hmac.new(pem, signing_input, hashlib.sha256).digest())
    confused = (signing_input + b"." + signature).decode()
    for token in (unsigned, confused, "not.a.jwt", "garbage"):
        response = client.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token


def test_claims_that_describe_no_caller_are_401(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    token = issuer.issue(user_claims(role=None))
    response = client.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
    _assert_401(response, "role")


def test_insufficient_scope_is_403_and_writes_nothing(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    reader = bearer(issuer, user_claims(scope="user/Patient.rs user/Observation.rs"))
    patient = _own(fhir.patient(family="Scoped"))
    created = client.post("/fhir/Patient", json=patient, headers=reader)
    assert created.status_code == 403
    assert created.json()["issue"][0]["code"] == "forbidden"
    assert "create on Patient" in created.json()["issue"][0]["diagnostics"]
    made = client.post("/fhir/Patient", json=patient)  # the system client may
    assert made.status_code == 201
    patient_id = made.json()["id"]
    assert client.get(f"/fhir/Patient/{patient_id}", headers=reader).status_code == 200
    assert client.get("/fhir/Condition", headers=reader).status_code == 403
    assert client.get("/fhir/_history", headers=reader).status_code == 403  # needs every type
    assert client.delete(f"/fhir/Patient/{patient_id}", headers=reader).status_code == 403
    assert client.get(f"/fhir/Patient/{patient_id}").status_code == 200  # still there
    everything = client.get(
        f"/fhir/Patient/{patient_id}/$everything", params={"_type": "Condition"}, headers=reader
    )
    assert everything.status_code == 403


def test_a_bundle_is_refused_whole_when_one_entry_is_out_of_scope(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    writer = bearer(issuer, user_claims(scope="user/Patient.cruds"))
    patient = fhir.patient(family="Bundled")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient, "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": fhir.observation(patient_id="x"),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = client.post("/fhir", json=bundle, headers=writer)
    assert response.status_code == 403
    assert "Observation" in response.json()["issue"][0]["diagnostics"]
    found = client.get("/fhir/Patient", params={"family": "Bundled"}).json()
    assert found["total"] == 0


def test_included_resources_of_unreadable_types_are_left_out(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    patient_id = client.post("/fhir/Patient", json=_own(fhir.patient(family="Incl"))).json()["id"]
    client.post("/fhir/Observation", json=_own(fhir.observation(patient_id=patient_id)))
    params = {"patient": patient_id, "_include": "Observation:patient"}
    everything_allowed = client.get("/fhir/Observation", params=params).json()
    assert {e["resource"]["resourceType"] for e in everything_allowed["entry"]} == {
        "Observation",
        "Patient",
    }
    observations_only = bearer(issuer, user_claims(scope="user/Observation.rs"))
    narrowed = client.get("/fhir/Observation", params=params, headers=observations_only).json()
    assert {e["resource"]["resourceType"] for e in narrowed["entry"]} == {"Observation"}


def test_identity_decisions_name_the_signed_in_steward_and_need_person_update(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    reader = bearer(issuer, user_claims(scope="user/Person.rs", role="R8008"))
    assert client.get("/identity/reviews", headers=reader).status_code == 200
    refused = client.post(
        "/identity/unlink", json={"patient": "Patient/x", "reason": "r"}, headers=reader
    )
    assert refused.status_code == 403  # a steward, but without Person update in scope
    clinician = bearer(issuer, user_claims(scope="user/*.cruds", role="R8000"))
    assert client.get("/identity/reviews", headers=clinician).status_code == 403


def test_feeds_need_patient_and_encounter_write_scopes(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    reader = bearer(issuer, {"sub": "pas", "scope": "system/Patient.cru"})
    response = client.post(
        "/feeds/hl7v2",
        content=b"MSH|^~\\&|PAS|Z9H|CJ|CJ|20261101120000||ADT^A01|1|P|2.4\r",
        headers={**reader, "Content-Type": "x-application/hl7-v2+er7"},
    )
    assert response.status_code == 403
    assert "Encounter" in response.json()["issue"][0]["diagnostics"]


def test_a_valid_token_is_remembered_until_it_expires(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    headers = bearer(issuer, SYSTEM_CLAIMS)
    for _ in range(3):
        assert client.get("/fhir/Patient", headers=headers).status_code == 200


def test_production_refuses_the_development_issuer() -> None:
    with pytest.raises(ValidationError, match="identity provider"):
        Settings(environment="production", database_url="postgresql+psycopg://db/carejoin")
    with pytest.raises(ValidationError, match="not both"):
        AuthSettings(jwks_url="https://idp.example/jwks")
    with pytest.raises(ValidationError, match="asymmetric"):
        AuthSettings(algorithms=("HS256",))
    production = Settings(
        environment="production",
        database_url="postgresql+psycopg://db/carejoin",
        auth=AuthSettings(
            development_issuer=False,
            jwks_url="https://idp.example/jwks",
            issuer="https://idp.example",
        ),
    )
    assert production.auth_settings().expected_audience == "http://127.0.0.1:8080/fhir"
    with pytest.raises(ValidationError, match="issuer must name"):
        GatewaySettings(auth=AuthSettings(development_issuer=False, jwks_url="https://i/jwks"))

"""SMART Backend Services against the development issuer: a registered system signs an
assertion, gets a token for the scopes it is registered for, and uses it; on both databases."""

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm

from fhir_gateway.auth.clients import ASSERTION_TYPE, register_client
from fhir_gateway.settings import AuthSettings, GatewaySettings
from tests.conftest import ISSUER

TOKEN_URL = f"{ISSUER}/token"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def gateway_settings(
    auth_settings: AuthSettings, agreement_path: str, tmp_path: Path
) -> GatewaySettings:
    clients = tmp_path / "clients.json"
    jwk = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
    jwk.update({"kid": "pas-1", "alg": "RS384"})
    register_client(
        str(clients),
        client_id="hospital-pas",
        organisation="Z9H",
        scope="system/Patient.cru system/Encounter.cru system/Patient.rs",
        jwks={"keys": [jwk]},
    )
    return GatewaySettings(
        database_url="sqlite://",
        base_url="http://testserver/fhir",
        dispatch_events=False,
        auth=auth_settings.model_copy(update={"development_clients_path": str(clients)}),
        agreement_path=agreement_path,
    )


def _assertion(key: Any = KEY, **changes: Any) -> str:
    claims = {
        "iss": "hospital-pas",
        "sub": "hospital-pas",
        "aud": TOKEN_URL,
        "exp": int(time.time()) + 120,
        "jti": uuid.uuid4().hex,
        **changes,
    }
    return jwt.encode(claims, key, algorithm="RS384", headers={"kid": "pas-1"})


def _ask(client: TestClient, assertion: str, scope: str = "system/Patient.rs") -> Any:
    return client.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": scope,
        },
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


def test_a_registered_system_gets_a_token_and_uses_it(client: TestClient) -> None:
    answer = _ask(client, _assertion())
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["token_type"] == "bearer"
    assert body["scope"] == "system/Patient.rs"
    token = body["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["organization"] == "Z9H"  # it acts for its organisation
    listed = client.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200
    written = client.post(
        "/fhir/Encounter",
        json={"resourceType": "Encounter"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert written.status_code == 403  # only the scopes it asked for


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"aud": "https://elsewhere.example/token"}, 401, "invalid_client"),
        ({"exp": int(time.time()) - 120}, 401, "invalid_client"),
        ({"exp": int(time.time()) + 3600}, 401, "invalid_client"),
        ({"iss": "stranger", "sub": "stranger"}, 401, "invalid_client"),
        ({"sub": "someone-else"}, 401, "invalid_client"),
    ],
    ids=["wrong-audience", "expired", "lives-too-long", "unregistered", "sub-not-iss"],
)
def test_bad_assertions_are_refused_in_oauth_terms(
    client: TestClient, change: dict[str, Any], status: int, error: str
) -> None:
    answer = _ask(client, _assertion(**change))
    assert answer.status_code == status
    assert answer.json()["error"] == error


def test_a_forged_signature_a_replay_and_an_unregistered_scope_are_refused(
    client: TestClient,
) -> None:
    assert _ask(client, _assertion(OTHER_KEY)).json()["error"] == "invalid_client"
    once = _assertion()
    assert _ask(client, once).status_code == 200
    replayed = _ask(client, once)
    assert replayed.status_code == 401
    assert "used before" in replayed.json()["error_description"]
    greedy = _ask(client, _assertion(), scope="system/*.cruds")
    assert greedy.status_code == 400
    assert greedy.json()["error"] == "invalid_scope"
    wrong_grant = client.post(
        "/auth/token",
        data={"grant_type": "password", "username": "x", "password": "y"},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert wrong_grant.json()["error"] == "unsupported_grant_type"

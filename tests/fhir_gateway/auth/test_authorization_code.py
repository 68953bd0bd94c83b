"""The development issuer's authorization-code flow with PKCE, through HTTP as a public
client and a browser use it, on both databases."""

import hashlib
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, select

from consent.context import context_from_claims
from fhir_gateway.auth.issuer import DevelopmentIssuer
from fhir_gateway.auth.models import AuthCodeRow
from tests.conftest import BASE_URL, ISSUER
from tests.factories import fhir
from tests.fhir_gateway.auth.browser import (
    APP_CLIENT,
    APP_REDIRECT,
    FakeClock,
    authorize_query,
    code_for,
    exchange,
    forms,
    offered,
    params,
    persona_form,
    pkce,
    submit,
)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}


def _claims(token: str, issuer: DevelopmentIssuer) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(
        token, issuer.public_key(), algorithms=["RS256"], audience=BASE_URL, issuer=ISSUER
    )
    return decoded


def _assert_error_page(response: Any, words: str) -> None:
    assert response.status_code in (400, 403), response.text
    assert "location" not in response.headers  # never sent anywhere
    assert response.headers["content-type"].startswith("text/html")
    assert words in response.text


def test_authorize_pick_exchange_and_read_the_record(
    browser: TestClient, issuer: DevelopmentIssuer
) -> None:
    verifier, challenge = pkce()
    query = authorize_query(challenge)
    page = browser.get("/auth/authorize", params=query)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    # People, not systems; each with the roles and purposes they may pick.
    assert offered(page.text) == ["gp", "reader", "patient"]
    gp = persona_form(page.text, "gp")
    assert gp.selects["role"] == ["R8000", "R8008"]
    assert gp.selects["purpose"] == ["TREAT", "BTG", "CASEFIND"]
    assert "role" not in persona_form(page.text, "patient").selects

    picked = submit(browser, page, persona="gp", role="R8000", purpose="TREAT")
    assert picked.status_code == 303
    assert picked.headers["location"].startswith(f"{APP_REDIRECT}?")
    answer = params(picked)
    assert answer["state"] == query["state"]  # echoed
    assert answer["iss"] == ISSUER  # RFC 9207

    token_response = exchange(browser, answer["code"], verifier)
    assert token_response.status_code == 200, token_response.text
    assert token_response.headers["cache-control"] == "no-store"
    body = token_response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "user/*.cruds"
    claims = _claims(body["access_token"], issuer)
    # What `carejoin token --persona gp --purpose TREAT` signs, plus who asked and the grant.
    assert {k: claims[k] for k in ("sub", "fhirUser", "organization", "role", "scope")} == {
        "sub": "gp-test-1",
        "fhirUser": "Practitioner/gp-test-1",
        "organization": "Z90001",
        "role": "R8000",
        "scope": "user/*.cruds",
    }
    assert claims["purpose_of_use"] == "TREAT"
    assert claims["azp"] == APP_CLIENT
    assert claims["grant"]
    assert "client_id" not in claims  # a user's token: no system clause may apply

    headers = _bearer(body["access_token"])
    patient = {**fhir.patient(family="Codeflow"), "meta": {"source": "urn:carejoin:source:Z90001"}}
    created = browser.post(
        "/fhir/Patient", json=patient, headers={**headers, "Content-Type": "application/fhir+json"}
    )
    assert created.status_code == 201, created.text
    read = browser.get(f"/fhir/Patient/{created.json()['id']}", headers=headers)
    assert read.status_code == 200
    assert read.json()["name"][0]["family"] == "Codeflow"


def test_the_role_and_purpose_picked_are_the_tokens(
    browser: TestClient, issuer: DevelopmentIssuer
) -> None:
    code, verifier, _ = code_for(browser, persona="gp", role="R8008", purpose="BTG")
    claims = _claims(exchange(browser, code, verifier).json()["access_token"], issuer)
    context = context_from_claims(claims)
    assert (context.role, context.purpose.value, context.organisation) == ("R8008", "BTG", "Z90001")


def test_a_patient_gets_their_launch_context(
    browser: TestClient, issuer: DevelopmentIssuer
) -> None:
    code, verifier, _ = code_for(browser, persona="patient")
    body = exchange(browser, code, verifier).json()
    assert body["patient"] == "test-1"
    assert body["scope"] == "patient/*.rs"
    claims = _claims(body["access_token"], issuer)
    assert context_from_claims(claims).patient == "test-1"
    assert "purpose_of_use" not in claims
    assert "role" not in claims


def test_scopes_are_those_both_asked_for_and_held(
    browser: TestClient, issuer: DevelopmentIssuer
) -> None:
    verifier, challenge = pkce()
    narrow = authorize_query(challenge, scope="user/Patient.rs user/Observation.cruds")
    page = browser.get("/auth/authorize", params=narrow)
    assert offered(page.text) == ["gp", "reader"]  # the patient holds no user/ scope
    answer = params(submit(browser, page, persona="reader"))
    body = exchange(browser, answer["code"], verifier).json()
    assert body["scope"] == "user/Patient.rs user/Observation.rs"  # the reader cannot write

    nothing = browser.get(
        "/auth/authorize", params=authorize_query(challenge, scope="system/*.rs openid")
    )
    assert nothing.status_code == 302
    assert params(nothing)["error"] == "invalid_scope"


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request", "PKCE"),
        ({"code_challenge_method": "plain"}, "invalid_request", "S256"),
        ({"code_challenge_method": None}, "invalid_request", "plain"),
        ({"code_challenge": "too-short"}, "invalid_request", "S256"),
        ({"response_type": "token"}, "unsupported_response_type", "code"),
        ({"aud": "https://elsewhere.example/fhir"}, "invalid_request", "aud"),
        ({"aud": None}, "invalid_request", "aud"),
    ],
    ids=[
        "no-pkce",
        "plain",
        "no-method",
        "bad-challenge",
        "implicit",
        "other-audience",
        "no-audience",
    ],
)
def test_bad_requests_go_back_to_the_client_with_an_oauth_error(
    browser: TestClient, changes: dict[str, str | None], error: str, words: str
) -> None:
    _, challenge = pkce()
    query = authorize_query(challenge, **changes)
    response = browser.get("/auth/authorize", params=query)
    assert response.status_code == 302
    assert response.headers["location"].startswith(f"{APP_REDIRECT}?")
    answer = params(response)
    assert answer["error"] == error
    assert words in answer["error_description"]
    assert answer["state"] == query["state"]
    assert "code" not in answer


def test_a_request_without_state_is_refused(browser: TestClient) -> None:
    _, challenge = pkce()
    response = browser.get("/auth/authorize", params=authorize_query(challenge, state=None))
    assert params(response)["error"] == "invalid_request"
    assert "state" not in params(response)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"client_id": "stranger"}, "not registered"),
        ({"client_id": None}, "client_id"),
        ({"redirect_uri": "https://attacker.example/callback"}, "redirect_uri"),
        ({"redirect_uri": f"{APP_REDIRECT}/more"}, "redirect_uri"),
        ({"redirect_uri": None}, "redirect_uri"),
    ],
    ids=["unknown-client", "no-client", "other-redirect", "longer-redirect", "no-redirect"],
)
def test_an_unknown_client_or_redirect_is_never_redirected_to(
    browser: TestClient, changes: dict[str, str | None], words: str
) -> None:
    _, challenge = pkce()
    # Even with every other error present, nothing goes to an unchecked redirect URI.
    query = authorize_query(challenge, response_type="token", **changes)
    _assert_error_page(browser.get("/auth/authorize", params=query), words)


def test_a_forged_picker_post_is_refused_and_issues_no_code(
    browser: TestClient, connection: Connection
) -> None:
    _, challenge = pkce()
    page = browser.get("/auth/authorize", params=authorize_query(challenge))
    form = persona_form(page.text, "gp")
    data = {**dict(form.fields), "role": "R8000", "purpose": "TREAT", "decision": "allow"}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    wrong = browser.post("/auth/authorize", data={**data, "csrf_token": "x" * 43}, headers=headers)
    _assert_error_page(wrong, "start again")
    browser.cookies.clear()  # a cross-site form: the picker's cookie is not there
    forged = browser.post("/auth/authorize", data=data, headers=headers)
    _assert_error_page(forged, "start again")
    assert connection.execute(select(AuthCodeRow.pk)).all() == []


def test_the_picker_refuses_a_role_the_person_does_not_hold(browser: TestClient) -> None:
    _, challenge = pkce()
    page = browser.get("/auth/authorize", params=authorize_query(challenge))
    _assert_error_page(submit(browser, page, persona="gp", role="CJ0003"), "R8000")
    page = browser.get("/auth/authorize", params=authorize_query(challenge))
    # A system persona is not offered, and a form changed to name it is refused.
    fields = [(n, "feed" if n == "persona" else v) for n, v in persona_form(page.text, "gp").fields]
    tampered = browser.post(
        "/auth/authorize",
        data=dict([*fields, ("decision", "allow")]),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    _assert_error_page(tampered, "Pick one")


def test_declining_tells_the_client_access_denied(browser: TestClient) -> None:
    _, challenge = pkce()
    query = authorize_query(challenge)
    page = browser.get("/auth/authorize", params=query)
    declined = submit(browser, page, persona="gp", decision="deny")
    assert declined.status_code == 303
    assert params(declined) == {
        "error": "access_denied",
        "error_description": "The user declined to sign in",
        "state": query["state"],
        "iss": ISSUER,
    }


def test_a_wrong_or_missing_verifier_is_refused(browser: TestClient) -> None:
    code, verifier, _ = code_for(browser)
    other, _ = pkce()
    wrong = exchange(browser, code, other)
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert "code_verifier" in wrong.json()["error_description"]
    # A failed attempt spends the code.
    assert exchange(browser, code, verifier).json()["error"] == "invalid_grant"

    code, _, _ = code_for(browser)
    missing = exchange(browser, code, None)
    assert missing.json() == {
        "error": "invalid_request",
        "error_description": "PKCE is required: send the code_verifier",
    }


def test_a_replayed_code_is_refused_and_revokes_its_token(browser: TestClient) -> None:
    code, verifier, _ = code_for(browser)
    first = exchange(browser, code, verifier)
    assert first.status_code == 200
    token = first.json()["access_token"]
    assert browser.get("/fhir/Patient", headers=_bearer(token)).status_code == 200
    replayed = exchange(browser, code, verifier)
    assert replayed.status_code == 400
    assert replayed.json()["error"] == "invalid_grant"
    assert "revoked" in replayed.json()["error_description"]
    refused = browser.get("/fhir/Patient", headers=_bearer(token))
    assert refused.status_code == 401
    assert "revoked" in refused.json()["issue"][0]["diagnostics"]


def test_a_code_lives_sixty_seconds(browser: TestClient, clock: FakeClock) -> None:
    code, verifier, _ = code_for(browser)
    clock.advance(seconds=59)
    assert exchange(browser, code, verifier).status_code == 200
    code, verifier, _ = code_for(browser)
    clock.advance(seconds=61)
    late = exchange(browser, code, verifier)
    assert late.status_code == 400
    assert late.json()["error"] == "invalid_grant"
    assert "expired" in late.json()["error_description"]


def test_the_code_is_bound_to_its_client_and_redirect_uri(browser: TestClient) -> None:
    code, verifier, _ = code_for(browser)
    moved = exchange(browser, code, verifier, redirect_uri="https://app.example/other")
    assert moved.json()["error"] == "invalid_grant"
    assert "redirect_uri" in moved.json()["error_description"]

    code, verifier, _ = code_for(browser)
    other_client = exchange(
        browser, code, verifier, client_id="carejoin-web", redirect_uri=APP_REDIRECT
    )
    assert other_client.json()["error"] == "invalid_grant"
    assert "another client" in other_client.json()["error_description"]

    code, verifier, _ = code_for(browser)
    stranger = exchange(browser, code, verifier, client_id="stranger")
    assert stranger.status_code == 401
    assert stranger.json()["error"] == "invalid_client"


def test_codes_are_stored_only_as_hashes(browser: TestClient, connection: Connection) -> None:
    code, verifier, _ = code_for(browser)
    row = connection.execute(select(AuthCodeRow)).one()
    assert row.code_hash == hashlib.sha256(code.encode()).hexdigest()
    assert all(code not in str(value) for value in row)
    assert row.used_at is None
    exchange(browser, code, verifier)
    used = connection.execute(select(AuthCodeRow.used_at, AuthCodeRow.token_expires_at)).one()
    assert used.used_at is not None
    assert used.token_expires_at is not None


def test_a_parameter_given_twice_is_refused(browser: TestClient) -> None:
    _, challenge = pkce()
    query = [*authorize_query(challenge).items(), ("scope", "user/*.rs")]
    response = browser.get("/auth/authorize", params=query)
    assert params(response)["error"] == "invalid_request"
    twice = browser.post(
        "/auth/token",
        content="grant_type=authorization_code&code=a&code=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert twice.json()["error"] == "invalid_request"


def test_the_smart_configuration_offers_the_code_flow(browser: TestClient) -> None:
    config = browser.get("/fhir/.well-known/smart-configuration").json()
    assert config["authorization_endpoint"] == f"{ISSUER}/authorize"
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert "authorization_code" in config["grant_types_supported"]
    assert "client-public" in config["capabilities"]


def test_the_picker_page_escapes_what_the_request_carries(browser: TestClient) -> None:
    _, challenge = pkce()
    state = '"><script>alert(1)</script>'
    page = browser.get("/auth/authorize", params=authorize_query(challenge, state=state))
    assert "<script>" not in page.text
    assert persona_form(page.text, "gp").value("state") == state
    assert len(forms(page.text)) == 4  # three people and the cancel button

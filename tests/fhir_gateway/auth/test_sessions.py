"""The web pages' sign-in: the built-in client's code flow, the session cookie, CSRF, idle
timeout, lifetime and sign-out, through HTTP on both databases."""

import hashlib
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Connection, Engine, func, select

from consent.context import AccessContext
from fhir_gateway.auth.issuer import DevelopmentIssuer
from fhir_gateway.auth.models import AuthLoginRow, AuthSessionRow
from fhir_gateway.settings import AuthSettings, GatewaySettings
from fhir_gateway.validation import validate_resource
from tests.conftest import ISSUER, bearer, user_claims
from tests.factories import fhir
from tests.fhir_gateway.auth.browser import (
    FakeClock,
    code_for,
    exchange,
    forms,
    here,
    params,
    set_cookies,
    sign_in,
    submit,
)
from tests.fhir_gateway.auth.conftest import build_app

SESSION = "__Host-carejoin-session"
FHIR = {"Accept": "application/fhir+json"}
WRITE = {**FHIR, "Content-Type": "application/fhir+json"}


def _session_id(browser: TestClient) -> str:
    value = browser.cookies.get(SESSION)
    assert value
    return value


def _csrf(browser: TestClient) -> str:
    described = browser.get("/auth/session")
    assert described.status_code == 200, described.text
    token: str = described.json()["csrfToken"]
    return token


def _own_patient(family: str) -> dict[str, Any]:
    return {**fhir.patient(family=family), "meta": {"source": "urn:carejoin:source:Z90001"}}


def _count(connection: Connection, *where: Any) -> int:
    return int(
        connection.execute(
            select(func.count()).select_from(AuthSessionRow).where(*where)
        ).scalar_one()
    )


def test_signing_in_sets_a_secure_httponly_lax_cookie_and_lands_on_next(
    browser: TestClient,
) -> None:
    started = browser.get("/auth/login", params={"next": "/fhir/Patient?family=x"})
    login_cookie = set_cookies(started)["__Host-carejoin-login"]
    assert "HttpOnly" in login_cookie
    assert "Secure" in login_cookie
    authorize = params(started)
    assert authorize["client_id"] == "carejoin-web"
    assert authorize["code_challenge_method"] == "S256"
    assert authorize["redirect_uri"] == "http://testserver/auth/callback"

    finished = sign_in(browser, persona="gp", next_path="/fhir/Patient?family=x")
    assert finished.status_code == 303, finished.text
    assert finished.headers["location"] == "/fhir/Patient?family=x"
    cookie = set_cookies(finished)[SESSION]
    attributes = [part.strip() for part in cookie.split(";")]
    assert "HttpOnly" in attributes
    assert "Secure" in attributes
    assert "SameSite=Lax" in attributes
    assert "Path=/" in attributes
    assert not any(a.lower().startswith(("domain=", "max-age=", "expires=")) for a in attributes)
    session_id = _session_id(browser)
    assert len(session_id) >= 43
    assert "." not in session_id  # opaque random, not a JWT
    cleared = set_cookies(finished)["__Host-carejoin-login"]
    assert "Max-Age=0" in cleared

    page = browser.get(finished.headers["location"], headers=FHIR)
    assert page.status_code == 200
    assert page.json()["resourceType"] == "Bundle"


def test_the_cookie_gives_the_context_the_token_gives(
    browser: TestClient, contexts: list[AccessContext]
) -> None:
    sign_in(browser, persona="gp", role="R8008", purpose="CASEFIND")
    assert browser.get("/test/context").status_code == 204
    from_cookie = contexts[-1]

    code, verifier, _ = code_for(browser, persona="gp", role="R8008", purpose="CASEFIND")
    token = exchange(browser, code, verifier).json()["access_token"]
    browser.cookies.clear()
    headers = {"Authorization": f"Bearer {token}"}
    assert browser.get("/test/context", headers=headers).status_code == 204
    from_token = contexts[-1]

    def who(context: AccessContext) -> AccessContext:
        return replace(context, token_id=None, expires_at=0)

    assert who(from_cookie) == who(from_token)
    assert (from_cookie.role, from_cookie.purpose.value) == ("R8008", "CASEFIND")
    assert from_cookie.user == "Practitioner/gp-test-1"


def test_a_session_reads_and_with_its_csrf_token_writes(browser: TestClient) -> None:
    sign_in(browser, persona="gp")
    created = browser.post(
        "/fhir/Patient",
        json=_own_patient("Cookie"),
        headers={**WRITE, "X-CSRF-Token": _csrf(browser)},
    )
    assert created.status_code == 201, created.text
    read = browser.get(f"/fhir/Patient/{created.json()['id']}", headers=FHIR)
    assert read.status_code == 200
    described = browser.get("/auth/session").json()
    assert described["user"] == "Practitioner/gp-test-1"
    assert described["organization"] == "Z90001"
    assert described["scope"] == "user/*.cruds"


@pytest.mark.parametrize("token", [None, "", "not-the-token"], ids=["missing", "empty", "wrong"])
def test_without_the_csrf_token_a_cookie_writes_nothing(
    browser: TestClient, token: str | None
) -> None:
    sign_in(browser, persona="gp")
    headers = dict(WRITE)
    if token is not None:
        headers["X-CSRF-Token"] = token
    refused = browser.post("/fhir/Patient", json=_own_patient("Forged"), headers=headers)
    assert refused.status_code == 403
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "CSRF" in outcome["issue"][0]["diagnostics"]
    found = browser.get("/fhir/Patient", params={"family": "Forged"}, headers=FHIR).json()
    assert found["total"] == 0
    assert browser.delete("/fhir/Patient/anything", headers=headers).status_code == 403


def test_a_bearer_token_needs_no_csrf_token_even_beside_a_cookie(
    browser: TestClient, issuer: Any
) -> None:
    sign_in(browser, persona="reader")  # the cookie says: read only
    code, verifier, _ = code_for(browser, persona="gp")
    token = exchange(browser, code, verifier).json()["access_token"]
    created = browser.post(
        "/fhir/Patient",
        json=_own_patient("Bearer"),
        headers={**WRITE, "Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 201  # the token decides, and needs no CSRF token


def test_an_idle_session_ends(
    browser: TestClient, clock: FakeClock, connection: Connection
) -> None:
    sign_in(browser, persona="gp")
    for _ in range(3):  # busy for 42 minutes: each request keeps it alive
        clock.advance(minutes=14)
        assert browser.get("/fhir/Patient", headers=FHIR).status_code == 200
    clock.advance(minutes=15, seconds=1)
    refused = browser.get("/fhir/Patient", headers=FHIR)
    assert refused.status_code == 401
    assert refused.json()["issue"][0]["code"] == "login"
    assert "without activity" in refused.json()["issue"][0]["diagnostics"]
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert _count(connection) == 0  # the ended session is gone


def test_a_session_ends_after_its_lifetime_however_busy(
    browser: TestClient, clock: FakeClock, connection: Connection
) -> None:
    sign_in(browser, persona="gp")
    for _ in range(47):  # a request every ten minutes for 7 h 50 min
        clock.advance(minutes=10)
        assert browser.get("/fhir/Patient", headers=FHIR).status_code == 200
    clock.advance(minutes=10)
    refused = browser.get("/fhir/Patient", headers=FHIR)
    assert refused.status_code == 401
    assert "longest lifetime" in refused.json()["issue"][0]["diagnostics"]
    assert _count(connection) == 0


def test_the_timeouts_are_configurable(
    signin_settings: GatewaySettings,
    engine: Engine,
    connection: Connection,
    clock: FakeClock,
    contexts: list[AccessContext],
) -> None:
    auth = signin_settings.auth.model_copy(
        update={"session_idle_timeout": 120, "session_lifetime": 600}
    )
    app = build_app(
        signin_settings.model_copy(update={"auth": auth}), engine, connection, clock, contexts
    )
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as browser:
        sign_in(browser, persona="gp")
        clock.advance(seconds=119)
        assert browser.get("/auth/session").status_code == 200
        clock.advance(seconds=121)
        assert browser.get("/auth/session").status_code == 401


def test_pages_send_an_ended_session_to_sign_in(browser: TestClient, clock: FakeClock) -> None:
    sign_in(browser, persona="gp")
    page = browser.get("/auth/session", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "Practitioner/gp-test-1" in page.text
    clock.advance(minutes=16)
    ended = browser.get("/auth/session", headers={"Accept": "text/html"})
    assert ended.status_code == 303
    assert ended.headers["location"] == "/auth/login?next=%2Fauth%2Fsession"
    assert "Max-Age=0" in set_cookies(ended)[SESSION]
    assert browser.get("/auth/session").status_code == 401  # an API caller is told 401


def test_signing_out_ends_the_session(browser: TestClient, connection: Connection) -> None:
    sign_in(browser, persona="gp")
    old = _session_id(browser)
    page = browser.get("/auth/session", headers={"Accept": "text/html"})
    sign_out = next(f for f in forms(page.text) if f.action == "logout")
    refused = browser.post(
        "/auth/logout",
        data={"csrf_token": "forged"},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert browser.get("/fhir/Patient", headers=FHIR).status_code == 200  # still signed in

    out = browser.post(
        "/auth/logout",
        data=dict(sign_out.fields),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert out.status_code == 303
    assert out.headers["location"] == "/auth/signed-out"
    cleared = set_cookies(out)[SESSION]
    assert "Max-Age=0" in cleared
    assert "Secure" in cleared
    assert _count(connection) == 0
    assert browser.get("/auth/signed-out").status_code == 200

    browser.cookies.clear()
    browser.cookies.set(SESSION, old)  # a copy of the cookie kept from before
    after = browser.get("/fhir/Patient", headers=FHIR)
    assert after.status_code == 401
    # Signing out again, or with no session, just clears the cookie.
    assert browser.post("/auth/logout").status_code == 303


def test_the_session_id_is_stored_only_as_a_hash(
    browser: TestClient, connection: Connection
) -> None:
    sign_in(browser, persona="gp")
    session_id = _session_id(browser)
    row = connection.execute(select(AuthSessionRow)).one()
    assert row.session_hash == hashlib.sha256(session_id.encode()).hexdigest()
    assert all(session_id not in str(value) for value in row)
    assert row.client_id == "carejoin-web"
    assert row.subject == "gp-test-1"


def test_signing_in_again_replaces_the_session(browser: TestClient, connection: Connection) -> None:
    sign_in(browser, persona="gp")
    first = _session_id(browser)
    sign_in(browser, persona="reader")
    assert _session_id(browser) != first
    assert _count(connection) == 1
    browser.cookies.clear()
    browser.cookies.set(SESSION, first)
    assert browser.get("/fhir/Patient", headers=FHIR).status_code == 401


def test_a_callback_this_browser_did_not_start_makes_no_session(
    browser: TestClient, signin_app: Any
) -> None:
    started = browser.get("/auth/login")
    authorize = browser.get(here(started.headers["location"]))
    picked = submit(browser, authorize, persona="gp")
    # Another browser (no sign-in cookie) is sent to the callback with this code.
    with TestClient(signin_app, base_url="https://testserver", follow_redirects=False) as other:
        answer = other.get(here(picked.headers["location"]))
        assert answer.status_code == 400
        assert "not started in this browser" in answer.text
        assert SESSION not in set_cookies(answer)


def test_the_callback_reports_a_declined_sign_in(browser: TestClient) -> None:
    started = browser.get("/auth/login")
    state = params(started)["state"]
    answer = browser.get(
        "/auth/callback",
        params={"error": "access_denied", "error_description": "declined", "state": state},
    )
    assert answer.status_code == 400
    assert "declined" in answer.text
    assert SESSION not in set_cookies(answer)


def test_a_replayed_web_code_ends_the_session_made_from_it(browser: TestClient) -> None:
    started = browser.get("/auth/login")
    picked = submit(browser, browser.get(here(started.headers["location"])), persona="gp")
    code = params(picked)["code"]
    assert browser.get(here(picked.headers["location"])).status_code == 303
    assert browser.get("/fhir/Patient", headers=FHIR).status_code == 200
    # Someone who saw the code in the address bar tries it (without the verifier).
    stolen = exchange(
        browser,
        code,
        "x" * 43,
        client_id="carejoin-web",
        redirect_uri="http://testserver/auth/callback",
    )
    assert stolen.json()["error"] == "invalid_grant"
    assert browser.get("/fhir/Patient", headers=FHIR).status_code == 401


@pytest.mark.parametrize(
    "next_path", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"]
)
def test_sign_in_lands_only_on_this_site(browser: TestClient, next_path: str) -> None:
    finished = sign_in(browser, persona="gp", next_path=next_path)
    assert finished.headers["location"] == "/auth/session"


def test_sign_in_and_sign_out_are_audited(browser: TestClient, issuer: DevelopmentIssuer) -> None:
    sign_in(browser, persona="gp", role="R8008")
    browser.post("/auth/logout", headers={"X-CSRF-Token": _csrf(browser)})
    browser.cookies.clear()
    officer = bearer(
        issuer, user_claims("po-1", organization="Z9H", role="CJ0003", scope="user/*.rs")
    )
    found = browser.get(
        "/fhir/AuditEvent",
        params={"agent": "Practitioner/gp-test-1"},
        headers={**officer, **FHIR},
    )
    assert found.status_code == 200, found.text
    events = [entry["resource"] for entry in reversed(found.json()["entry"])]
    dicom = "http://dicom.nema.org/resources/ontology/DCM"
    assert [e["subtype"] for e in events] == [
        [{"system": dicom, "code": "110122", "display": "Login"}],
        [{"system": dicom, "code": "110123", "display": "Logout"}],
    ]
    for event in events:
        validate_resource(event)
        assert event["type"] == {
            "system": dicom,
            "code": "110114",
            "display": "User Authentication",
        }
        assert event["outcome"] == "0"
        assert event["action"] == "E"
        user = event["agent"][0]
        assert user["who"] == {"reference": "Practitioner/gp-test-1"}
        assert user["role"][0]["coding"][0]["code"] == "R8008"
        assert event["agent"][1]["who"]["identifier"]["value"] == "Z90001"
    assert "carejoin-web" in events[0]["outcomeDesc"]


def test_ended_sign_ins_and_sessions_are_swept(
    browser: TestClient, clock: FakeClock, connection: Connection
) -> None:
    sign_in(browser, persona="gp")
    browser.get("/auth/login")  # a sign-in nobody finishes
    assert _count(connection) == 1
    assert connection.execute(select(func.count()).select_from(AuthLoginRow)).scalar_one() == 1
    clock.advance(minutes=20)
    browser.cookies.clear()
    browser.get("/auth/login")  # the next sign-in sweeps
    assert _count(connection) == 0
    assert connection.execute(select(func.count()).select_from(AuthLoginRow)).scalar_one() == 1


def test_cookies_without_secure_only_where_configured(
    signin_settings: GatewaySettings,
    engine: Engine,
    connection: Connection,
    clock: FakeClock,
    contexts: list[AccessContext],
) -> None:
    auth = signin_settings.auth.model_copy(update={"session_cookie_secure": False})
    app = build_app(
        signin_settings.model_copy(update={"auth": auth}), engine, connection, clock, contexts
    )
    with TestClient(app, follow_redirects=False) as plain:  # http://testserver
        finished = sign_in(plain, persona="gp")
        cookie = set_cookies(finished)["carejoin-session"]
        assert "Secure" not in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        assert plain.get("/fhir/Patient", headers=FHIR).status_code == 200


def test_session_settings_default_safe_and_refuse_unsafe_combinations() -> None:
    defaults = AuthSettings()
    assert defaults.session_cookie_secure is True
    assert (defaults.session_idle_timeout, defaults.session_lifetime) == (15 * 60, 8 * 3600)
    with pytest.raises(ValidationError, match="Secure"):
        AuthSettings(
            development_issuer=False,
            jwks_url="https://idp.example/jwks",
            session_cookie_secure=False,
        )
    with pytest.raises(ValidationError, match="idle timeout"):
        AuthSettings(session_idle_timeout=3600, session_lifetime=1800)


def test_the_issuer_is_checked_on_the_callback(browser: TestClient) -> None:
    started = browser.get("/auth/login")
    picked = submit(browser, browser.get(here(started.headers["location"])), persona="gp")
    answer = params(picked)
    assert answer["iss"] == ISSUER
    mixed_up = browser.get(
        "/auth/callback", params={**answer, "iss": "https://other-issuer.example"}
    )
    assert mixed_up.status_code == 400
    assert "another issuer" in mixed_up.text

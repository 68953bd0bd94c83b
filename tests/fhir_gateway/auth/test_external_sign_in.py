"""The web pages signing in against an identity provider of their own, over real HTTP, as in
production: the service runs without the development issuer, sends the browser to the
provider's authorization endpoint, exchanges the code at its token endpoint (a POST from the
service) and checks the token with the provider's published keys (JWKS, fetched over HTTP).

The provider here is another carejoin running the development issuer, with its own key and
its own database, served by uvicorn on a port of the loopback interface; the web pages are a
public client registered with it. The service under test runs on both databases.
"""

import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, func, select

from consent.context import AccessContext
from fhir_gateway.app import create_app
from fhir_gateway.auth.authorize import register_public_client
from fhir_gateway.auth.dependencies import development_issuer
from fhir_gateway.auth.issuer import DevelopmentIssuer
from fhir_gateway.auth.models import AuthSessionRow
from fhir_gateway.auth.web import RemoteExchange, SignInFailed, nonce_for
from fhir_gateway.settings import AuthSettings, GatewaySettings
from tests.conftest import own_engine
from tests.fhir_gateway.auth.browser import PERSONAS, FakeClock, here, submit
from tests.fhir_gateway.auth.conftest import build_app
from tests.live_server import free_port, serving

SITE = "https://testserver"
SESSION = "__Host-carejoin-session"


class Provider:
    """The identity provider: its address, and its issuer (to sign tokens of its own)."""

    def __init__(self, url: str, issuer: DevelopmentIssuer) -> None:
        self.url = url
        self.issuer = issuer

    def auth(self, **changes: Any) -> AuthSettings:
        """The service's settings for trusting this provider."""
        settings: dict[str, Any] = {
            "development_issuer": False,
            "issuer": f"{self.url}/auth",
            "jwks_url": f"{self.url}/auth/jwks.json",
            "authorization_endpoint": f"{self.url}/auth/authorize",
            "token_endpoint": f"{self.url}/auth/token",
            **changes,
        }
        return AuthSettings(**settings)


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory, agreement_path: str) -> Iterator[Provider]:
    folder = tmp_path_factory.mktemp("provider")
    clients = folder / "clients.json"
    register_public_client(
        str(clients), client_id="carejoin-web", redirect_uris=[f"{SITE}/auth/callback"]
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    auth = AuthSettings(
        issuer=f"{url}/auth",
        audience=f"{SITE}/fhir",  # the provider issues tokens for the service
        development_key_path=str(folder / "key.pem"),
        development_clients_path=str(clients),
        web_client_id="provider-pages",  # its own pages; carejoin-web is the service's
        session_cookie_secure=False,  # the test's browser talks plain http to it
    )
    with own_engine("sqlite", tmp_path_factory, "provider") as engine:
        settings = GatewaySettings(
            database_url=str(engine.url),
            base_url=f"{url}/fhir",
            dispatch_events=False,
            auth=auth,
            agreement_path=agreement_path,
        )
        with serving(create_app(settings, engine=engine, personas=PERSONAS), port):
            yield Provider(url, development_issuer(auth))


def _service(
    provider: Provider,
    agreement_path: str,
    engine: Engine,
    connection: Connection,
    **changes: Any,
) -> TestClient:
    settings = GatewaySettings(
        database_url="sqlite://",
        base_url=f"{SITE}/fhir",
        dispatch_events=False,
        auth=provider.auth(**changes),
        agreement_path=agreement_path,
    )
    contexts: list[AccessContext] = []
    app: FastAPI = build_app(settings, engine, connection, FakeClock(), contexts)
    return TestClient(app, base_url=SITE, follow_redirects=False, raise_server_exceptions=False)


@pytest.fixture
def service(
    provider: Provider, agreement_path: str, engine: Engine, connection: Connection
) -> Iterator[TestClient]:
    with _service(provider, agreement_path, engine, connection) as client:
        yield client


@pytest.fixture
def at_provider(provider: Provider) -> Iterator[httpx.Client]:
    """The browser's side of the conversation with the provider (its own cookies)."""
    with httpx.Client(base_url=provider.url, follow_redirects=False, timeout=10) as client:
        yield client


def _to_provider(service: TestClient, at_provider: httpx.Client, provider: Provider) -> str:
    """Start signing in at the service and pick the GP at the provider: the callback URL."""
    started = service.get("/auth/login", params={"next": "/auth/session"})
    assert started.status_code == 302, started.text
    location = started.headers["location"]
    assert location.startswith(f"{provider.url}/auth/authorize?")
    page = at_provider.get(location)
    picked = submit(at_provider, page, persona="gp")  # type: ignore[arg-type]
    assert picked.status_code == 303, picked.text
    callback = picked.headers["location"]
    assert callback.startswith(f"{SITE}/auth/callback?")
    return callback


def _sessions(connection: Connection) -> int:
    return int(connection.execute(select(func.count()).select_from(AuthSessionRow)).scalar_one())


def test_the_pages_sign_in_at_the_identity_provider(
    service: TestClient, at_provider: httpx.Client, provider: Provider
) -> None:
    started = service.get("/auth/login")
    asked = dict(parse_qsl(urlsplit(started.headers["location"]).query))
    assert asked["client_id"] == "carejoin-web"
    assert asked["redirect_uri"] == f"{SITE}/auth/callback"
    assert asked["code_challenge_method"] == "S256"
    assert asked["aud"] == f"{SITE}/fhir"
    assert len(asked["nonce"]) == 64
    assert asked["nonce"] != asked["state"]

    finished = service.get(here(_to_provider(service, at_provider, provider)))
    assert finished.status_code == 303, finished.text
    assert finished.headers["location"] == "/auth/session"
    assert service.cookies.get(SESSION)
    who = service.get("/auth/session")
    assert who.status_code == 200, who.text
    assert who.json()["user"] == "Practitioner/gp-test-1"
    assert who.json()["organization"] == "Z90001"
    assert who.json()["client"] == "carejoin-web"
    # The session is the API's caller, as a token from the provider would be.
    bundle = service.get("/fhir/Patient", headers={"Accept": "application/fhir+json"})
    assert bundle.status_code == 200
    assert bundle.json()["resourceType"] == "Bundle"


def test_discovery_names_the_providers_endpoints(service: TestClient, provider: Provider) -> None:
    found = service.get("/fhir/.well-known/smart-configuration").json()
    assert found["issuer"] == f"{provider.url}/auth"
    assert found["authorization_endpoint"] == f"{provider.url}/auth/authorize"
    assert found["token_endpoint"] == f"{provider.url}/auth/token"
    assert found["jwks_uri"] == f"{provider.url}/auth/jwks.json"
    assert "authorization_code" in found["grant_types_supported"]


def test_a_code_is_exchanged_once(
    service: TestClient, at_provider: httpx.Client, provider: Provider, connection: Connection
) -> None:
    callback = here(_to_provider(service, at_provider, provider))
    assert service.get(callback).status_code == 303
    assert _sessions(connection) == 1
    # The same answer again: the browser's sign-in cookie is gone, and with it put back the
    # sign-in it belonged to is spent; either way no second session.
    again = service.get(callback)
    assert again.status_code == 400
    assert "not started in this browser" in again.text
    state = dict(parse_qsl(urlsplit(callback).query))["state"]
    service.cookies.set("__Host-carejoin-login", state)
    replayed = service.get(callback)
    assert replayed.status_code == 400
    assert "used or has expired" in replayed.text
    assert _sessions(connection) == 1


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        pytest.param(
            {"token_endpoint": f"http://127.0.0.1:{free_port()}/auth/token"},
            "could not be reached",
            id="provider-unreachable",
        ),
        # The provider knows the pages as a public client; one presenting a secret is not it.
        pytest.param(
            {"web_client_secret": "not-what-it-knows"},
            "Sign-in did not complete",
            id="provider-refuses",
        ),
        # A service that accepts only ES256 signatures refuses the provider's RS256 token.
        pytest.param(
            {"algorithms": ("ES256",)}, "access token was refused", id="token-not-verified"
        ),
    ],
)
def test_a_sign_in_that_fails_says_why_and_opens_nothing(
    provider: Provider,
    at_provider: httpx.Client,
    agreement_path: str,
    engine: Engine,
    connection: Connection,
    changes: dict[str, Any],
    says: str,
) -> None:
    with _service(provider, agreement_path, engine, connection, **changes) as service:
        failed = service.get(here(_to_provider(service, at_provider, provider)))
    assert failed.status_code == 400
    assert says in failed.text
    assert SESSION not in failed.headers.get("set-cookie", "")
    assert _sessions(connection) == 0


def test_an_answer_naming_another_issuer_is_refused(
    service: TestClient, at_provider: httpx.Client, provider: Provider, connection: Connection
) -> None:
    callback = _to_provider(service, at_provider, provider)
    query = dict(parse_qsl(urlsplit(callback).query))
    assert query["iss"] == f"{provider.url}/auth"
    query["iss"] = "https://evil.example/auth"
    failed = service.get("/auth/callback", params=query)
    assert failed.status_code == 400
    assert "another issuer" in failed.text
    assert _sessions(connection) == 0


# --- The exchange and the ID token, at their edges ------------------------------------------


def _answering(status: int, body: Any, seen: list[httpx.Request]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if isinstance(body, bytes):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body)

    return httpx.Client(transport=httpx.MockTransport(handler))


FORM = {
    "grant_type": "authorization_code",
    "code": "c0de",
    "redirect_uri": f"{SITE}/auth/callback",
    "client_id": "carejoin web",
    "code_verifier": "v" * 43,
}


def test_a_confidential_client_authenticates_with_basic_and_a_public_one_names_itself() -> None:
    seen: list[httpx.Request] = []
    answer = {"access_token": "t", "token_type": "Bearer"}
    confidential = RemoteExchange(
        token_url="https://idp.example/token",
        issuer="https://idp.example",
        client_secret="s3cret/+",
        http=_answering(200, answer, seen),
    )
    assert confidential.exchange(None, FORM)["access_token"] == "t"  # type: ignore[arg-type]
    sent = seen[-1]
    # RFC 6749 2.3.1: id and secret form-encoded, then Basic.
    expected = base64.b64encode(b"carejoin+web:s3cret%2F%2B").decode()
    assert sent.headers["authorization"] == f"Basic {expected}"
    assert "client_id" not in dict(parse_qsl(sent.content.decode()))
    public = RemoteExchange(
        token_url="https://idp.example/token",
        issuer="https://idp.example",
        http=_answering(200, answer, seen),
    )
    public.exchange(None, FORM)  # type: ignore[arg-type]
    assert "authorization" not in seen[-1].headers
    assert dict(parse_qsl(seen[-1].content.decode()))["client_id"] == "carejoin web"


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (400, {"error": "invalid_grant", "error_description": "The code has expired"}, "expired"),
        (401, {"error": "invalid_client"}, "invalid_client"),
        (200, {"token_type": "Bearer"}, "no access token"),
        (200, {"access_token": "t", "token_type": "mac"}, "not a bearer token"),
        (200, b"<html>maintenance</html>", "not understood"),
        (302, b"", "not understood"),
        (503, ["unexpected"], "not understood"),
    ],
)
def test_a_token_answer_that_is_not_a_bearer_token_fails_the_sign_in(
    status: int, body: Any, says: str
) -> None:
    remote = RemoteExchange(
        token_url="https://idp.example/token",
        issuer="https://idp.example",
        http=_answering(status, body, []),
    )
    with pytest.raises(SignInFailed, match=says):
        remote.exchange(None, FORM)  # type: ignore[arg-type]


class _Answer:
    """The token endpoint's answer, given without asking the provider: for ID tokens, which
    the development issuer does not issue. The access token and the ID token are signed with
    the provider's key, and the service checks them against its JWKS over HTTP as always."""

    def __init__(self, provider: Provider, **id_claims: Any) -> None:
        self.provider = provider
        self.id_claims = id_claims
        self.issuer = f"{provider.url}/auth"

    def exchange(self, session: Any, form: dict[str, str]) -> dict[str, Any]:
        claims = {
            "sub": "gp-test-1",
            "aud": "carejoin-web",
            "nonce": nonce_for(form["code_verifier"]),
            **self.id_claims,
        }
        gp = PERSONAS[0].claims
        return {
            "access_token": self.provider.issuer.issue(gp),
            "token_type": "Bearer",
            "id_token": self.provider.issuer.issue(claims),
        }

    def sweep(self, session: Any) -> None:
        pass


def _callback_with(service: TestClient, answer: _Answer) -> Any:
    service.app.state.web_client.exchange = answer  # type: ignore[attr-defined]
    started = service.get("/auth/login")
    state = dict(parse_qsl(urlsplit(started.headers["location"]).query))["state"]
    return service.get(
        "/auth/callback", params={"code": "c0de", "state": state, "iss": answer.issuer}
    )


def test_an_id_token_for_this_sign_in_opens_the_session(
    service: TestClient, provider: Provider, connection: Connection
) -> None:
    finished = _callback_with(service, _Answer(provider))
    assert finished.status_code == 303, finished.text
    assert _sessions(connection) == 1


@pytest.mark.parametrize(
    ("claims", "says"),
    [
        ({"nonce": "a-nonce-from-another-sign-in"}, "not issued for this sign-in"),
        ({"nonce": None}, "not issued for this sign-in"),
        ({"aud": "another-client"}, "not for this client"),
        ({"aud": ["carejoin-web", "another-client"]}, "azp"),
        ({"exp": 1_000_000_000}, "expired"),
        ({"iss": "https://evil.example/auth"}, "trusted issuer"),
    ],
)
def test_an_id_token_not_for_this_sign_in_opens_nothing(
    service: TestClient,
    provider: Provider,
    connection: Connection,
    claims: dict[str, Any],
    says: str,
) -> None:
    failed = _callback_with(service, _Answer(provider, **claims))
    assert failed.status_code == 400
    assert says in failed.text
    assert _sessions(connection) == 0


def test_openid_asked_for_means_an_id_token_is_required(
    provider: Provider, agreement_path: str, engine: Engine, connection: Connection
) -> None:
    answer = _Answer(provider)
    with _service(
        provider, agreement_path, engine, connection, web_scope="openid user/*.cruds"
    ) as service:
        service.app.state.web_client.exchange = answer  # type: ignore[attr-defined]
        started = service.get("/auth/login")
        state = dict(parse_qsl(urlsplit(started.headers["location"]).query))["state"]
        without = {
            "access_token": provider.issuer.issue(PERSONAS[0].claims),
            "token_type": "Bearer",
        }
        answer.exchange = lambda session, form: without  # type: ignore[method-assign]
        failed = service.get(
            "/auth/callback", params={"code": "c0de", "state": state, "iss": answer.issuer}
        )
    assert failed.status_code == 400
    assert "no ID token" in failed.text
    assert _sessions(connection) == 0


# --- Settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"token_endpoint": None}, "both"),
        ({"authorization_endpoint": None}, "both"),
        ({"token_endpoint": "http://idp.example/token"}, "https"),
        ({"jwks_url": "http://idp.example/jwks"}, "https"),
        ({"authorization_endpoint": "ftp://idp.example/a"}, "https"),
    ],
)
def test_the_providers_endpoints_are_checked(
    provider: Provider, changes: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        provider.auth(**changes)


def test_the_development_issuer_keeps_its_own_endpoints() -> None:
    with pytest.raises(ValueError, match="its own endpoints"):
        AuthSettings(token_endpoint="https://idp.example/token")
    with pytest.raises(ValueError, match="web_client_secret"):
        AuthSettings(
            development_issuer=False,
            issuer="https://idp.example",
            jwks_url="https://idp.example/jwks",
            web_client_secret="s",
        )


def test_without_the_providers_endpoints_there_is_no_browser_sign_in(
    provider: Provider, agreement_path: str, engine: Engine, connection: Connection
) -> None:
    with _service(
        provider,
        agreement_path,
        engine,
        connection,
        authorization_endpoint=None,
        token_endpoint=None,
    ) as service:
        refused = service.get("/auth/login")
        assert refused.status_code == 404
        assert "authorization_endpoint" in refused.text
        # Bearer tokens from the provider still work: the API does not need the pages.
        token = provider.issuer.issue(PERSONAS[0].claims)
        bundle = service.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
        assert bundle.status_code == 200

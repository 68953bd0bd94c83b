"""Driving sign-in the way a browser and a public client do: the picker page's forms, PKCE,
following redirects to this server, and a clock the tests move."""

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from fastapi.testclient import TestClient

from fhir_gateway.auth.personas import Persona
from tests.conftest import BASE_URL, ISSUER

APP_CLIENT = "test-app"
APP_REDIRECT = "https://app.example/callback"

GP = Persona(
    "gp",
    "GP at the test practice",
    {
        "sub": "gp-test-1",
        "fhirUser": "Practitioner/gp-test-1",
        "organization": "Z90001",
        "role": "R8000",
        "scope": "user/*.cruds",
    },
    roles=("R8000", "R8008"),
)
READER = Persona(
    "reader",
    "A nurse at the hospital who may only read",
    {
        "sub": "nurse-test-1",
        "fhirUser": "Practitioner/nurse-test-1",
        "organization": "Z9H",
        "role": "R8001",
        "scope": "user/*.rs",
    },
)
PATIENT = Persona(
    "patient",
    "The person, seeing their own record",
    {"sub": "patient-test-1", "patient": "test-1", "scope": "patient/*.rs"},
)
FEED = Persona(
    "feed",
    "A source system (client credentials only)",
    {"sub": "feed", "client_id": "feed", "scope": "system/*.cruds"},
)
PERSONAS = (GP, READER, PATIENT, FEED)


class FakeClock:
    """The time sign-in sees; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def pkce() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge (RFC 7636 4.1, 4.2), made independently of
    the code under test."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_query(challenge: str, **changes: str | None) -> dict[str, str]:
    """An authorization request of the test app; a change of None leaves the parameter out."""
    query: dict[str, str | None] = {
        "response_type": "code",
        "client_id": APP_CLIENT,
        "redirect_uri": APP_REDIRECT,
        "scope": "openid fhirUser user/*.cruds patient/*.rs",
        "state": "st-" + secrets.token_hex(6),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "aud": BASE_URL,
        **changes,
    }
    return {k: v for k, v in query.items() if v is not None}


@dataclass
class Form:
    action: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    selects: dict[str, list[str]] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)

    def value(self, name: str) -> str | None:
        return next((v for n, v in self.fields if n == name), None)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(action=a.get("action", "")))
        elif tag == "input" and self.forms:
            self.forms[-1].fields.append((a["name"], a.get("value", "")))
        elif tag == "select" and self.forms:
            self._select = a["name"]
            self.forms[-1].selects[self._select] = []
        elif tag == "option" and self._select is not None:
            self.forms[-1].selects[self._select].append(a["value"])
        elif tag == "button" and self.forms:
            self.forms[-1].buttons.append((a.get("name", ""), a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def forms(html: str) -> list[Form]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def persona_form(html: str, persona: str) -> Form:
    return next(f for f in forms(html) if f.value("persona") == persona)


def offered(html: str) -> list[str]:
    return [name for f in forms(html) if (name := f.value("persona")) is not None]


def here(url: str) -> str:
    """A URL on this server as a path, so the test client keeps its own scheme (https)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def params(response: httpx.Response) -> dict[str, str]:
    """The query parameters of a redirect's Location."""
    return dict(parse_qsl(urlsplit(response.headers["location"]).query))


def submit(
    client: TestClient,
    page: httpx.Response,
    *,
    persona: str,
    role: str | None = None,
    purpose: str | None = None,
    decision: str = "allow",
) -> httpx.Response:
    """Answer the picker on ``page`` as a browser would: that persona's form, as rendered."""
    assert page.status_code == 200, page.text
    if decision == "deny":
        form = next(f for f in forms(page.text) if ("decision", "deny") in f.buttons)
    else:
        form = persona_form(page.text, persona)
    data: list[tuple[str, str]] = list(form.fields)
    for name, chosen in (("role", role), ("purpose", purpose)):
        if name in form.selects:
            data.append((name, chosen or form.selects[name][0]))
        elif chosen is not None:
            data.append((name, chosen))
    data.append(("decision", decision))
    return client.post(
        f"/auth/{form.action}",
        content=urlencode(data),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


def code_for(
    client: TestClient, *, persona: str = "gp", **choice: Any
) -> tuple[str, str, dict[str, str]]:
    """A code for the test app: (code, verifier, the authorization request)."""
    verifier, challenge = pkce()
    query = authorize_query(challenge)
    picked = submit(client, client.get("/auth/authorize", params=query), persona=persona, **choice)
    assert picked.status_code == 303, picked.text
    answer = params(picked)
    assert answer["state"] == query["state"]
    return answer["code"], verifier, query


def exchange(
    client: TestClient, code: str, verifier: str | None, **changes: str | None
) -> httpx.Response:
    form: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": APP_REDIRECT,
        "client_id": APP_CLIENT,
        "code_verifier": verifier,
        **changes,
    }
    return client.post(
        "/auth/token",
        data={k: v for k, v in form.items() if v is not None},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


def sign_in(
    client: TestClient, *, persona: str = "gp", next_path: str | None = None, **choice: Any
) -> httpx.Response:
    """The web pages' sign-in, start to finish: the callback's response."""
    started = client.get("/auth/login", params={"next": next_path} if next_path else None)
    assert started.status_code == 302, started.text
    assert started.headers["location"].startswith(f"{ISSUER}/authorize?")
    page = client.get(here(started.headers["location"]))
    picked = submit(client, page, persona=persona, **choice)
    assert picked.status_code == 303, picked.text
    return client.get(here(picked.headers["location"]))


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Each Set-Cookie header of ``response``, by cookie name."""
    found = {}
    for header in response.headers.get_list("set-cookie"):
        found[header.split("=", 1)[0]] = header
    return found

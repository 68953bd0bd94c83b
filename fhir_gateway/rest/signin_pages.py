"""The sign-in pages, rendered on the server: the development issuer's persona and role
picker, the session page with its sign-out form, and the error and signed-out pages.

No script, no external resource; everything shown is escaped. The headers forbid framing
(clickjacking), caching and referrers.
"""

from collections.abc import Sequence
from datetime import datetime
from html import escape

from fastapi.responses import HTMLResponse

from fhir_gateway.auth.authorize import AuthorizationRequest, Choice, scope_text
from fhir_gateway.auth.sessions import CSRF_FIELD, ActiveSession

HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 46rem; padding: 0 1rem;
       color: #1d2125; }
.note { background: #fff4d6; border-left: 4px solid #d9a400; padding: .5rem 1rem; }
form.person { border: 1px solid #c8ccd0; border-radius: 6px; padding: .75rem 1rem;
              margin: .75rem 0; }
form.person h2 { font-size: 1.1rem; margin: 0 0 .25rem; }
.who, .scopes { color: #555; font-size: .9rem; margin: .2rem 0; }
label { margin-right: 1rem; }
button { margin-top: .5rem; }
dt { font-weight: 600; } dd { margin: 0 0 .5rem; }
"""


def page(title: str, body: str, *, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} - carejoin</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=HEADERS)


def _hidden(name: str, value: str) -> str:
    return f'<input type=hidden name="{escape(name)}" value="{escape(value)}">'


def _select(name: str, label: str, options: Sequence[str]) -> str:
    items = "".join(f'<option value="{escape(o)}">{escape(o)}</option>' for o in options)
    return f'<label>{escape(label)} <select name="{escape(name)}">{items}</select></label>'


def picker(request: AuthorizationRequest, choices: Sequence[Choice], csrf: str) -> HTMLResponse:
    """Who to sign in as, in which role, for which purpose (one form per persona)."""
    carried = "".join(_hidden(n, v) for n, v in request.fields()) + _hidden(CSRF_FIELD, csrf)
    forms = []
    for choice in choices:
        persona = choice.persona
        who = " - ".join(
            escape(persona.claims[k]) for k in ("fhirUser", "organization") if persona.claims.get(k)
        )
        controls = ""
        if persona.selectable_roles:
            controls += _select("role", "Role", persona.selectable_roles)
        if persona.purposes:
            controls += _select("purpose", "Purpose of use", [p.value for p in persona.purposes])
        forms.append(
            '<form class=person method=post action="authorize">'
            f"{carried}{_hidden('persona', persona.name)}"
            f"<h2>{escape(persona.description)}</h2>"
            f"<p class=who>{escape(persona.name)}{' - ' + who if who else ''}</p>"
            f"<p class=scopes>Scopes granted: {escape(choice.scope)}</p>"
            f"{controls}<br>"
            f"<button type=submit name=decision value=allow>Sign in as {escape(persona.name)}</button>"
            "</form>"
        )
    cancel = (
        '<form method=post action="authorize">'
        f"{carried}"
        "<button type=submit name=decision value=deny>Cancel</button></form>"
    )
    body = (
        "<p class=note>Development issuer: pick a synthetic demo person. Production signs "
        "people in with the partnership's identity provider instead.</p>"
        f"<p><strong>{escape(request.client_id)}</strong> asks to act for you "
        f"on <code>{escape(request.aud)}</code>.</p>" + "".join(forms) + cancel
    )
    return page("Sign in", body)


def error(message: str, *, status: int = 400, start_again: bool = False) -> HTMLResponse:
    link = '<p><a href="login">Sign in again</a></p>' if start_again else ""
    return page("Sign-in cannot continue", f"<p>{escape(message)}</p>{link}", status=status)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def session(active: ActiveSession) -> HTMLResponse:
    """Who is signed in, until when, and the sign-out button."""
    context = active.context
    rows = [
        ("Signed in as", context.user or context.subject),
        ("Organisation", context.organisation or ""),
        ("Role", context.role or ""),
        ("Purpose of use", context.purpose.value),
        ("Your own record", f"Patient/{context.patient}" if context.patient else ""),
        ("Scopes", " ".join(scope_text(s) for s in context.scopes)),
        ("Ends, if idle, at", _when(active.idle_expires_at)),
        ("Ends at the latest at", _when(active.expires_at)),
    ]
    listing = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows if v)
    body = (
        f"<dl>{listing}</dl>"
        '<form method=post action="logout">'
        f"{_hidden(CSRF_FIELD, active.csrf_token)}"
        "<button type=submit>Sign out</button></form>"
    )
    return page("Your session", body)


def signed_out() -> HTMLResponse:
    return page("Signed out", '<p>You have signed out.</p><p><a href="login">Sign in again</a></p>')

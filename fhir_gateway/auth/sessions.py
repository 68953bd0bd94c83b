"""Browser sessions: an opaque cookie mapped, in the database, to an access context.

A session is made when the built-in web client has exchanged an authorization code. The
cookie holds a random id (256 bits), never the token; the ``auth_session`` row holds the
SHA-256 of that id and the claims of the access token the code gave, so a request with the
cookie gets exactly the access context the token would have given (``expires_at`` aside,
which is the session's own).

A session ends at the first of: sign-out, ``idle_timeout`` without a request, or
``lifetime`` after sign-in. An ended session is refused and its row deleted; rows nobody
comes back for are swept when someone signs in or out.

Cross-site request forgery: every state-changing request authenticated by the cookie must
carry the session's CSRF token (header ``X-CSRF-Token``, or the form field ``csrf_token``
on the sign-in pages' own forms). The token is an HMAC of a fixed label keyed by the
session id: it is tied to the session, needs no storage, changes at each sign-in, and
reveals nothing of the id. Cookies are ``HttpOnly``, ``Secure`` (configurable off only for
the development issuer, for tests over http), ``SameSite=Lax`` and ``Path=/``; with
``Secure`` their names carry the ``__Host-`` prefix, so no other host can set them.
"""

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from consent.audit import Action, Outcome, record_for
from consent.context import AccessContext, context_from_claims
from fhir_gateway.audit.repository import add_events
from fhir_gateway.auth.authorize import secret_hash
from fhir_gateway.auth.clock import Clock
from fhir_gateway.auth.models import AuthSessionRow
from fhir_gateway.auth.verify import InvalidToken

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CSRF_LABEL = b"carejoin session csrf v1"
_ID = 32  # bytes of randomness in a session id


@dataclass(frozen=True, slots=True)
class CookieNames:
    """The cookies sign-in sets, and their attributes."""

    secure: bool = True

    def _name(self, base: str) -> str:
        return f"__Host-{base}" if self.secure else base

    @property
    def session(self) -> str:
        return self._name("carejoin-session")

    @property
    def login(self) -> str:
        """The web client's sign-in in progress (its ``state``), for ten minutes."""
        return self._name("carejoin-login")

    @property
    def picker(self) -> str:
        """The picker form's double-submit CSRF token."""
        return self._name("carejoin-picker")


def csrf_token(session_id: str) -> str:
    """The CSRF token of the session whose id is ``session_id``."""
    mac = hmac.new(session_id.encode(), _CSRF_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def csrf_matches(session_id: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(session_id), presented or "")


class SessionEnded(InvalidToken):
    """No session for the cookie, or it has ended (401)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error="")


@dataclass(frozen=True, slots=True)
class ActiveSession:
    """A session that was valid when the request arrived."""

    session_id: str
    context: AccessContext
    client_id: str
    created_at: datetime
    expires_at: datetime
    idle_expires_at: datetime

    @property
    def csrf_token(self) -> str:
        return csrf_token(self.session_id)


class SessionStore:
    def __init__(self, *, idle_timeout: timedelta, lifetime: timedelta, clock: Clock) -> None:
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime
        self.clock = clock
        # ``last_seen_at`` is written at most this often, so a busy page does not write on
        # every request; a session may so end up to this much before its idle timeout.
        self.touch_interval = min(timedelta(seconds=60), idle_timeout / 4)

    def create(
        self,
        session: Session,
        *,
        claims: Mapping[str, Any],
        client_id: str,
        replacing: str | None = None,
    ) -> ActiveSession:
        """A new session for the access token whose verified claims are ``claims``.

        A session the browser already had (``replacing``) ends: an id is never reused
        across sign-ins (session fixation)."""
        if replacing:
            self._delete(session, replacing)
        now = self.clock()
        session_id = secrets.token_urlsafe(_ID)
        stored = dict(claims)
        row = AuthSessionRow(
            session_hash=secret_hash(session_id),
            subject=str(stored.get("sub", ""))[:255],
            client_id=client_id[:128],
            grant_id=str(stored["grant"]) if stored.get("grant") else None,
            claims=json.dumps(stored, sort_keys=True),
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.lifetime,
        )
        session.add(row)
        session.flush()
        return self._active(session_id, row)

    def resolve(self, session: Session, session_id: str) -> ActiveSession | SessionEnded:
        """The session the cookie names, or why there is none.

        An ended session's row is deleted here; the refusal is returned, not raised, so that
        the caller's unit of work commits the deletion before the caller raises it."""
        now = self.clock()
        row = session.scalars(
            select(AuthSessionRow).where(AuthSessionRow.session_hash == secret_hash(session_id))
        ).one_or_none()
        if row is None:
            return SessionEnded("There is no session for this cookie; sign in again")
        if row.expires_at <= now or row.last_seen_at + self.idle_timeout <= now:
            why = "its longest lifetime" if row.expires_at <= now else "a time without activity"
            session.delete(row)
            session.flush()
            return SessionEnded(f"The session ended after {why}; sign in again")
        if now - row.last_seen_at >= self.touch_interval:
            row.last_seen_at = now  # written when the unit of work commits
        return self._active(session_id, row)

    def end(self, session: Session, session_id: str, *, query: str) -> AccessContext | None:
        """Sign out: delete the session and audit it; the context it had, if it was live."""
        active = self.resolve(session, session_id)
        if isinstance(active, SessionEnded):
            return None
        self._delete(session, session_id)
        self.sweep(session)
        add_events(
            session,
            [
                record_for(
                    active.context,
                    recorded_at=self.clock(),
                    action=Action.EXECUTE,
                    interaction="logout",
                    outcome=Outcome.SUCCESS,
                    query=query,
                    detail=f"Signed out of a session through {active.client_id}",
                )
            ],
        )
        return active.context

    def sweep(self, session: Session) -> None:
        """Delete every session that has ended."""
        now = self.clock()
        session.execute(
            delete(AuthSessionRow)
            .where(
                or_(
                    AuthSessionRow.expires_at <= now,
                    AuthSessionRow.last_seen_at <= now - self.idle_timeout,
                )
            )
            .execution_options(synchronize_session=False)
        )

    def _delete(self, session: Session, session_id: str) -> None:
        session.execute(
            delete(AuthSessionRow)
            .where(AuthSessionRow.session_hash == secret_hash(session_id))
            .execution_options(synchronize_session=False)
        )

    def _active(self, session_id: str, row: AuthSessionRow) -> ActiveSession:
        claims = json.loads(row.claims)
        context = replace(context_from_claims(claims), expires_at=int(row.expires_at.timestamp()))
        return ActiveSession(
            session_id=session_id,
            context=context,
            client_id=row.client_id,
            created_at=row.created_at,
            expires_at=row.expires_at,
            idle_expires_at=min(row.expires_at, row.last_seen_at + self.idle_timeout),
        )

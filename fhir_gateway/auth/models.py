"""The sign-in tables: authorization codes, sign-ins in progress, and browser sessions.

All three hold state that must be shared by every replica of the service (a browser's next
request may reach another one), so they live in the database, not in memory. Secrets that
a browser or a client presents (the authorization code, the login ``state``, the session
id) are stored only as SHA-256 hashes, so a copy of these tables lets nobody sign in.
"""

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fhir_gateway.db import Base
from fhir_gateway.store.models import BigId, UtcDateTime


class AuthCodeRow(Base):
    """An authorization code the development issuer gave out (one use, 60 seconds).

    ``grant_id`` is carried by every token issued from the code (claim ``grant``), so that
    presenting the code a second time revokes them (RFC 6749 10.5). The row is kept until
    those tokens have expired.
    """

    __tablename__ = "auth_code"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    grant_id: Mapped[str] = mapped_column(String(32), unique=True)
    client_id: Mapped[str] = mapped_column(String(128))
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    code_challenge: Mapped[str] = mapped_column(String(128))
    # The claims of the access token to issue (JSON): the persona, role and purpose picked.
    claims: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    token_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuthLoginRow(Base):
    """A sign-in the built-in web client has started: its PKCE verifier, kept against the
    hash of the ``state`` it sent, and where to go afterwards."""

    __tablename__ = "auth_login"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    code_verifier: Mapped[str] = mapped_column(String(128))
    next_path: Mapped[str] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class AuthSessionRow(Base):
    """A browser session: the hash of its cookie's value and the claims of the access token
    it was made from, which give the same access context as the token itself."""

    __tablename__ = "auth_session"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(String(255))
    client_id: Mapped[str] = mapped_column(String(128))
    grant_id: Mapped[str | None] = mapped_column(String(32), index=True)
    claims: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)

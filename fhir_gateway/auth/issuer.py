"""The development issuer: signs tokens with a key kept on disk, publishes its JWKS.

It exists so that a new user can try every persona on the embedded default. Production
never runs it (the settings refuse it): tokens there come from the partnership's identity
provider and are checked against its JWKS.
"""

import json
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ALGORITHM = "RS256"


class DevelopmentIssuer:
    """Issues RS256 tokens with the key at ``key_path`` (created, mode 0600, on first use)."""

    def __init__(self, *, issuer: str, audience: str, key_path: Path, lifetime: int = 3600):
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
        self._key = _load_or_create_key(key_path)
        self.key_id = _key_id(self._key.public_key())

    def public_key(self) -> rsa.RSAPublicKey:
        return self._key.public_key()

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.public_key()))
        jwk.update({"kid": self.key_id, "alg": ALGORITHM, "use": "sig"})
        return {"keys": [jwk]}

    def issue(self, claims: Mapping[str, object], *, lifetime: int | None = None) -> str:
        """A signed token with ``claims`` plus iss, aud, iat, exp and jti."""
        now = int(time.time())
        payload: dict[str, object] = {
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + (self.lifetime if lifetime is None else lifetime),
            "jti": uuid.uuid4().hex,
        }
        payload.update({k: v for k, v in claims.items() if v is not None})
        return jwt.encode(payload, self._key, algorithm=ALGORITHM, headers={"kid": self.key_id})


def _key_id(public_key: rsa.RSAPublicKey) -> str:
    import hashlib

    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def _load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path} does not hold an RSA private key")
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name and renamed, so two processes starting at once agree.
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    try:
        os.link(temporary, path)  # fails if another process won the race: use theirs
    except FileExistsError:
        temporary.unlink()
        return _load_or_create_key(path)
    temporary.unlink()
    return key

"""Who is calling: the access context built from a verified token, and SMART scopes.

Pure: no I/O. The gateway verifies the token and hands the claims to ``context_from_claims``;
everything consent decides starts from the ``AccessContext`` this returns.

Scopes follow SMART App Launch v2 (``patient/Observation.rs``, ``user/*.cruds``,
``system/*.r``), with the v1 forms (``.read``, ``.write``, ``.*``) read as their v2
equivalents so older clients keep working. Search narrowing (``?category=...`` inside a
scope) is not supported: a scope with a query part grants nothing, which fails closed.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

PERMISSIONS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}


class Purpose(StrEnum):
    """Purpose of use (HL7 v3 ActReason codes, plus case-finding of our own).

    Case-finding is direct care on behalf of the registered practice, narrower than
    population health (POPHLTH), so it has a code of its own (see docs/consent.md).
    """

    TREAT = "TREAT"
    BTG = "BTG"
    CASEFIND = "CASEFIND"
    PATRQT = "PATRQT"  # the person asks for their own record


class CallerKind(StrEnum):
    USER = "user"  # a member of staff, acting in one role at one organisation
    PATIENT = "patient"  # the person themselves
    SYSTEM = "system"  # a source or consuming system (client credentials)


class InvalidClaims(ValueError):
    """The token verified but its claims do not describe a caller we can serve."""


@dataclass(frozen=True, slots=True)
class Scope:
    """One SMART scope: ``{context}/{resource_type}.{permissions}``."""

    context: str  # patient | user | system
    resource_type: str  # a FHIR type or "*"
    permissions: frozenset[str]

    def grants(self, resource_type: str, permission: str) -> bool:
        return permission in self.permissions and self.resource_type in ("*", resource_type)


def parse_scope(text: str) -> Scope | None:
    """The SMART resource scope in ``text``, or None for other scopes (openid, launch...)."""
    context, slash, rest = text.partition("/")
    if not slash or context not in ("patient", "user", "system"):
        return None
    resource_type, dot, perms = rest.partition(".")
    if not dot or not resource_type or "?" in perms:
        return None
    letters = _V1.get(perms, perms)
    if (
        not letters
        or any(ch not in PERMISSIONS for ch in letters)
        or len(set(letters)) != len(letters)
    ):
        return None
    if list(letters) != sorted(letters, key=PERMISSIONS.index):
        return None  # v2 requires the letters in c, r, u, d, s order
    return Scope(context, resource_type, frozenset(letters))


def parse_scopes(text: str | Iterable[str]) -> tuple[Scope, ...]:
    words = text.split() if isinstance(text, str) else list(text)
    return tuple(scope for word in words if (scope := parse_scope(word)) is not None)


@dataclass(frozen=True, slots=True)
class AccessContext:
    """The caller of one request.

    ``subject`` is the token's ``sub``. For staff, ``user`` is their Practitioner reference
    (``fhirUser``), ``organisation`` the ODS code they work for in this session and ``role``
    the one role they selected (national RBAC). For the person themselves, ``patient`` is the
    id of their own source Patient. For a system, ``client_id`` names the client and
    ``organisation`` the organisation it acts for.
    """

    kind: CallerKind
    subject: str
    scopes: tuple[Scope, ...]
    purpose: Purpose = Purpose.TREAT
    user: str | None = None
    organisation: str | None = None
    role: str | None = None
    patient: str | None = None
    client_id: str | None = None
    token_id: str | None = None
    expires_at: int = 0

    def allows(self, resource_type: str, permission: str) -> bool:
        """Whether the scopes permit ``permission`` (one of c r u d s) on the type."""
        wanted = {
            CallerKind.USER: "user",
            CallerKind.PATIENT: "patient",
            CallerKind.SYSTEM: "system",
        }[self.kind]
        return any(
            scope.context == wanted and scope.grants(resource_type, permission)
            for scope in self.scopes
        )

    def readable_types(self, candidates: Iterable[str]) -> frozenset[str]:
        """The types among ``candidates`` the scopes let this caller read."""
        return frozenset(t for t in candidates if self.allows(t, "r"))


def _text(claims: Mapping[str, object], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidClaims(f"The token's '{name}' claim must be a non-empty string")
    return value.strip()


def context_from_claims(claims: Mapping[str, object]) -> AccessContext:
    """The access context for verified token claims.

    Claims beyond the JWT registered ones: ``scope`` (space separated), ``fhirUser``
    (``Practitioner/...`` for staff), ``organization`` (ODS code), ``role`` (the selected
    role), ``purpose_of_use`` (default TREAT), ``patient`` (SMART launch context: the
    person's own Patient id), ``client_id``. Which kind of caller this is follows from the
    scopes: ``system/`` scopes make a system client, ``patient/`` scopes the person
    themselves, ``user/`` scopes a member of staff; mixing them is refused.
    """
    subject = _text(claims, "sub")
    if subject is None:
        raise InvalidClaims("The token has no subject ('sub')")
    scope_claim = claims.get("scope", "")
    if not isinstance(scope_claim, str):
        raise InvalidClaims("The token's 'scope' claim must be a space-separated string")
    scopes = parse_scopes(scope_claim)
    contexts = {scope.context for scope in scopes}
    if len(contexts) > 1:
        raise InvalidClaims("A token may carry patient/, user/ or system/ scopes, not a mixture")
    purpose_text = _text(claims, "purpose_of_use") or Purpose.TREAT.value
    try:
        purpose = Purpose(purpose_text)
    except ValueError:
        raise InvalidClaims(f"Unknown purpose of use '{purpose_text}'") from None
    organisation = _text(claims, "organization")
    role = _text(claims, "role")
    fhir_user = _text(claims, "fhirUser")
    patient = _text(claims, "patient")
    client_id = _text(claims, "client_id")
    exp = claims.get("exp", 0)
    kind = (
        CallerKind.SYSTEM
        if contexts == {"system"}
        else CallerKind.PATIENT
        if contexts == {"patient"}
        else CallerKind.USER
    )
    if kind is CallerKind.USER:
        if organisation is None or role is None:
            raise InvalidClaims("A user's token must name their organisation and selected role")
        if purpose is Purpose.PATRQT:
            raise InvalidClaims("Staff cannot act with the patient's own purpose of use")
    elif kind is CallerKind.PATIENT:
        if patient is None:
            raise InvalidClaims("A patient token must carry the 'patient' launch context")
        purpose = Purpose.PATRQT
    else:
        if purpose is not Purpose.TREAT:
            raise InvalidClaims("A system client cannot declare this purpose of use")
        client_id = client_id or subject
    return AccessContext(
        kind=kind,
        subject=subject,
        scopes=scopes,
        purpose=purpose,
        user=fhir_user,
        organisation=organisation,
        role=role,
        patient=patient,
        client_id=client_id,
        token_id=_text(claims, "jti"),
        expires_at=int(exp) if isinstance(exp, int | float) else 0,
    )

r"""Who is calling: the access context built from a verified token, and SMART scopes.

Pure: no I/O. The gateway verifies the token and hands the claims to ``context_from_claims``;
everything consent decides starts from the ``AccessContext`` this returns.

Scopes follow SMART App Launch v2 (``patient/Observation.rs``, ``user/*.cruds``,
``system/*.r``), with the v1 forms (``.read``, ``.write``, ``.*``) read as their v2
equivalents so older clients keep working.

A scope may be narrowed by token search parameters (SMART v2 "finer-grained resource
constraints": ``patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/
observation-category|laboratory``): it then grants reading and searching only the resources
of its type that match the query (every parameter; any of a parameter's comma-separated
values; ``system|code``, ``code``, ``|code`` or ``system|`` as in a token search). Such a
scope grants nothing else: not writes (its ``c``, ``u`` and ``d`` letters are dropped), not a
wildcard type, not modifiers, chains or escapes (``\``), which make the whole scope grant
nothing. Several scopes are a union: a type any un-narrowed scope lets the caller both read
and search is not narrowed at all (``AccessContext.narrowed_reads``). Whether a parameter is
a token parameter of the type is the store's to know: it compiles one that is not to
"matches nothing" (docs/consent.md, "SMART scopes narrowed by search parameters").
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qsl

PERMISSIONS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_READS = frozenset("rs")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


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


Token = tuple[str | None, str | None]


@dataclass(frozen=True, slots=True)
class TokenCriterion:
    """One parameter of a narrowed scope: the resource has a value of token parameter
    ``param`` matching one of ``values``, each ``(system, code)`` as a token search reads
    ``system|code``: a system of None matches any system and ``""`` none; a code of None
    matches any code of the system."""

    param: str
    values: tuple[Token, ...]

    def matches(self, tokens: Iterable[tuple[str, str | None, str | None]]) -> bool:
        """Whether any of ``tokens`` (the resource's ``(param, system, code)`` index
        entries) matches: the plain reference the store's SQL is checked against."""
        return any(
            param == self.param and token_matches(value, system, code)
            for param, system, code in tokens
            for value in self.values
        )


def token_matches(value: Token, system: str | None, code: str | None) -> bool:
    want_system, want_code = value
    if want_code is not None and code != want_code:
        return False
    if want_system == "":
        return system is None
    return want_system is None or system == want_system


@dataclass(frozen=True, slots=True)
class Scope:
    """One SMART scope: ``{context}/{resource_type}.{permissions}[?{query}]``.

    ``query``: the token criteria narrowing it, all of which a resource must meet (empty for
    a scope over the whole type)."""

    context: str  # patient | user | system
    resource_type: str  # a FHIR type or "*"
    permissions: frozenset[str]
    query: tuple[TokenCriterion, ...] = ()

    def grants(self, resource_type: str, permission: str) -> bool:
        return permission in self.permissions and self.resource_type in ("*", resource_type)


def parse_scope(text: str) -> Scope | None:
    """The SMART resource scope in ``text``, or None for other scopes (openid, launch...)
    and for scopes this server cannot honour exactly (which therefore grant nothing)."""
    context, slash, rest = text.partition("/")
    if not slash or context not in ("patient", "user", "system"):
        return None
    resource_type, dot, perms = rest.partition(".")
    perms, question, query_text = perms.partition("?")
    if not dot or not resource_type:
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
    if not question:
        return Scope(context, resource_type, frozenset(letters))
    query = _parse_query(query_text)
    reads = frozenset(letters) & _READS
    if query is None or resource_type == "*" or not reads:
        return None
    return Scope(context, resource_type, reads, query)


def query_text(query: tuple[TokenCriterion, ...]) -> str:
    """A scope's criteria as the query part of its text (without the ``?``)."""

    def value(system: str | None, code: str | None) -> str:
        return code or "" if system is None else f"{system}|{code or ''}"

    return "&".join(
        f"{criterion.param}={','.join(value(*v) for v in criterion.values)}" for criterion in query
    )


def _parse_query(text: str) -> tuple[TokenCriterion, ...] | None:
    """The criteria of a scope's query, or None if any part is not a plain token criterion."""
    if not text or "\\" in text:
        return None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    criteria = []
    for name, raw in pairs:
        if not _PARAM_NAME.fullmatch(name) or not raw:
            return None
        values: list[Token] = []
        for value in raw.split(","):
            if not value or value == "|" or not value.isprintable():
                return None
            if "|" in value:
                system, _, code = value.partition("|")
                values.append((system, code or None))
            else:
                values.append((None, value))
        criteria.append(TokenCriterion(name, tuple(sorted(set(values), key=repr))))
    return tuple(sorted(set(criteria), key=repr))


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

    def narrowed_reads(self) -> tuple[tuple[str, tuple[tuple[TokenCriterion, ...], ...]], ...]:
        """The types whose reads the scopes narrow, each with its queries (a resource of the
        type must meet every criterion of one of them), sorted.

        A type is narrowed when a narrowed scope of this caller's context names it, unless
        un-narrowed scopes let the caller both read and search it (then the narrowed ones add
        nothing). The predicate is one for reads and searches alike, so where only one of the
        two is un-narrowed the narrowing holds for both: it shows less, never more."""
        wanted = self.kind.value
        mine = [s for s in self.scopes if s.context == wanted and s.permissions & _READS]
        queries: dict[str, set[tuple[TokenCriterion, ...]]] = {}
        for scope in mine:
            if scope.query:
                queries.setdefault(scope.resource_type, set()).add(scope.query)

        def whole(resource_type: str, permission: str) -> bool:
            return any(not s.query and s.grants(resource_type, permission) for s in mine)

        return tuple(
            (resource_type, tuple(sorted(found, key=repr)))
            for resource_type, found in sorted(queries.items())
            if not (whole(resource_type, "r") and whole(resource_type, "s"))
        )


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

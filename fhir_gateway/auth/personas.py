"""The people the development issuer lets a user sign in as.

The gateway does not know who they are: the composition root hands them over
(``create_app(..., personas=...)``). A persona is the claims of the tokens it gets, plus the
roles its holder may select at sign-in (a smartcard holder may hold several role profiles
and chooses one per session).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from consent.context import CallerKind, InvalidClaims, Purpose, context_from_claims

STAFF_PURPOSES = (Purpose.TREAT, Purpose.BTG, Purpose.CASEFIND)


@dataclass(frozen=True, slots=True)
class Persona:
    name: str
    description: str
    claims: Mapping[str, str]
    # Every role this person may act in; empty means only the role in ``claims``.
    roles: tuple[str, ...] = field(default=())

    @property
    def kind(self) -> CallerKind:
        return context_from_claims(self.claims).kind

    @property
    def selectable_roles(self) -> tuple[str, ...]:
        """The roles offered at sign-in, the one in ``claims`` first."""
        own = self.claims.get("role")
        ordered = ([own] if own else []) + [r for r in self.roles if r != own]
        return tuple(ordered)

    @property
    def purposes(self) -> tuple[Purpose, ...]:
        """The purposes of use offered at sign-in, the persona's own first (the person's own
        record has a purpose of its own, not chosen)."""
        if self.kind is not CallerKind.USER:
            return ()
        own = self.claims.get("purpose_of_use", Purpose.TREAT.value)
        return tuple(sorted(STAFF_PURPOSES, key=lambda purpose: purpose.value != own))


def sign_in_personas(personas: Iterable[Persona]) -> dict[str, Persona]:
    """The personas a person can sign in as, by name: staff and patients, not system clients
    (those use client credentials). A persona whose claims no token could carry, or a name
    given twice, is a configuration error."""
    offered: dict[str, Persona] = {}
    seen: set[str] = set()
    for persona in personas:
        if persona.name in seen:
            raise ValueError(f"Persona {persona.name!r} is given twice")
        seen.add(persona.name)
        try:
            kind = persona.kind
        except InvalidClaims as exc:
            raise ValueError(
                f"Persona {persona.name!r} has claims no token could carry: {exc}"
            ) from exc
        if kind is not CallerKind.SYSTEM:
            offered[persona.name] = persona
    return offered

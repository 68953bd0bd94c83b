"""Legitimate relationships, derived from the record itself.

A member of staff sees a person's shared record only if the person:

- is registered at the user's GP practice (the GP source's ``Patient``: its recording
  practice, and ``generalPractitioner`` organisations);
- has an open ``Encounter`` at the user's organisation (arrived, triaged, in progress or on
  leave, with no end in the past);
- has an active ``EpisodeOfCare`` at the user's organisation, or the user as its
  ``careManager``;
- has the user in an active ``CareTeam`` (or the team is managed by the user's organisation);
- or the user claimed a relationship themselves, with a reason, where the agreement allows
  it (time-limited; recorded by the gateway, not derived here).

Relationships belong to the source Patient they were derived from; the gateway joins them
through identity, so a relationship recorded against the GP's Patient opens the hospital's
and the council's records of the same person, and unlinking a wrong match closes it again.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import cast

OPEN_ENCOUNTER = frozenset({"arrived", "triaged", "in-progress", "onleave"})
ACTIVE_EPISODE = frozenset({"active", "waitlist", "onhold"})

OrganisationResolver = Callable[[str], str | None]  # "Organization/x" -> ODS code
InstantParser = Callable[[str, bool], datetime]


@dataclass(frozen=True, slots=True)
class Relationship:
    patient_id: str
    kind: str  # registered | encounter | episode | care-manager | care-team | self-claimed
    organisation: str | None = None  # ODS code: everyone in this organisation
    practitioner: str | None = None  # "Practitioner/x": this user only
    ends_at: datetime | None = None
    # Who recorded the fact it was derived from. Registration counts only when a GP practice
    # recorded it (the agreement says which parties are GP practices), so a hospital's copy
    # of old GP details cannot open the record to a practice the person has left.
    source_organisation: str | None = None

    def in_force(self, now: datetime) -> bool:
        return self.ends_at is None or self.ends_at > now

    def opens_to(
        self,
        *,
        organisation: str | None,
        practitioner: str | None,
        registering: frozenset[str],
    ) -> bool:
        """Whether this relationship is with ``organisation`` or ``practitioner``."""
        if self.kind == "registered" and self.source_organisation not in registering:
            return False
        return (self.organisation is not None and self.organisation == organisation) or (
            self.practitioner is not None and self.practitioner == practitioner
        )


def _map(value: object) -> Mapping[str, object]:
    return cast(Mapping[str, object], value) if isinstance(value, Mapping) else {}


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _reference(value: object) -> str | None:
    reference = _map(value).get("reference")
    return reference if isinstance(reference, str) else None


def _organisation(value: object, resolve: OrganisationResolver) -> str | None:
    identifier = _map(_map(value).get("identifier"))
    if identifier.get("system") == "https://fhir.nhs.uk/Id/ods-organization-code":
        code = identifier.get("value")
        return code if isinstance(code, str) and code else None
    reference = _reference(value)
    if reference and reference.startswith("Organization/"):
        return resolve(reference)
    return None


def _end(resource: Mapping[str, object], parse: InstantParser) -> datetime | None:
    end = _map(resource.get("period")).get("end")
    return parse(end, True) if isinstance(end, str) and end else None


def relationships_from(
    resource: Mapping[str, object],
    *,
    patient_id: str | None,
    source_organisation: str | None,
    resolve_organisation: OrganisationResolver,
    parse_instant: InstantParser,
    now: datetime,
) -> list[Relationship]:
    """The relationships ``resource`` establishes for its patient (none for other types).

    ``source_organisation`` is who recorded it; each relationship keeps it (see
    ``Relationship.source_organisation``).
    """
    if patient_id is None:
        return []
    kind = resource.get("resourceType")
    found: list[Relationship] = []
    if kind == "Patient":
        if resource.get("active") is not False:
            practices = {source_organisation} if source_organisation else set()
            for gp in _list(resource.get("generalPractitioner")):
                ods = _organisation(gp, resolve_organisation)
                if ods:
                    practices.add(ods)
            found.extend(Relationship(patient_id, "registered", organisation=o) for o in practices)
    elif kind == "Encounter":
        end = _end(resource, parse_instant)
        if resource.get("status") in OPEN_ENCOUNTER and (end is None or end > now):
            ods = _organisation(resource.get("serviceProvider"), resolve_organisation)
            ods = ods or source_organisation
            if ods:
                found.append(Relationship(patient_id, "encounter", organisation=ods, ends_at=end))
    elif kind == "EpisodeOfCare":
        end = _end(resource, parse_instant)
        if resource.get("status") in ACTIVE_EPISODE and (end is None or end > now):
            ods = _organisation(resource.get("managingOrganization"), resolve_organisation)
            ods = ods or source_organisation
            if ods:
                found.append(Relationship(patient_id, "episode", organisation=ods, ends_at=end))
            manager = _reference(resource.get("careManager"))
            if manager and manager.startswith("Practitioner/"):
                found.append(
                    Relationship(patient_id, "care-manager", practitioner=manager, ends_at=end)
                )
    elif kind == "CareTeam":
        end = _end(resource, parse_instant)
        if resource.get("status") == "active" and (end is None or end > now):
            for participant in _list(resource.get("participant")):
                member = _reference(_map(participant).get("member"))
                if member and member.startswith("Practitioner/"):
                    found.append(
                        Relationship(patient_id, "care-team", practitioner=member, ends_at=end)
                    )
            for managing in _list(resource.get("managingOrganization")):
                ods = _organisation(managing, resolve_organisation)
                if ods:
                    found.append(
                        Relationship(patient_id, "care-team", organisation=ods, ends_at=end)
                    )
    return [
        Relationship(
            r.patient_id, r.kind, r.organisation, r.practitioner, r.ends_at, source_organisation
        )
        for r in found
    ]

"""Setting up teams: the rows coordination queries and the FHIR resources others read, in one
transaction."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from coordination.settings import CoordinationSettings
from coordination.team import repository
from coordination.team.fhir import member_role, role_id, team_organization
from coordination.team.models import MemberRow, TeamRow
from coordination.team.schemas import MemberIn, TeamIn
from fhir_gateway.api import Conflict, NotFound, get_current, source_uri, update


@dataclass(frozen=True, slots=True)
class Member:
    practitioner: str
    role: str
    discipline: str
    capacity: int
    hours_per_week: float
    practitioner_role: str


@dataclass(frozen=True, slots=True)
class Team:
    team_id: str
    name: str
    host: str
    practices: tuple[str, ...]
    members: tuple[Member, ...]

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.team_id,
            "name": self.name,
            "host": self.host,
            "organization": f"Organization/{self.team_id}",
            "practices": list(self.practices),
            "members": [
                {
                    "practitioner": f"Practitioner/{m.practitioner}",
                    "practitionerRole": f"PractitionerRole/{m.practitioner_role}",
                    "role": m.role,
                    "discipline": m.discipline,
                    "capacity": m.capacity,
                    "hoursPerWeek": m.hours_per_week,
                }
                for m in self.members
            ],
        }


def capacity_of(member: MemberIn, settings: CoordinationSettings) -> int:
    """A coordinator's caseload capacity: as given, else the full-time figure pro rata; a lead
    carries no caseload unless given one."""
    if member.capacity is not None:
        return member.capacity
    if member.role == "lead":
        return 0
    share = min(member.hours_per_week / settings.full_time_hours, 1.0)
    return round(settings.default_capacity * share)


def put_team(
    session: Session,
    team_id: str,
    team: TeamIn,
    *,
    now: datetime,
    settings: CoordinationSettings,
) -> Team:
    """Create or replace a team. A practice belongs to one team; members who leave keep
    their PractitionerRole history (made inactive)."""
    aligned = repository.practice_teams(session)
    for practice in team.practices:
        other = aligned.get(practice)
        if other is not None and other != team_id:
            raise Conflict(f"Practice {practice} is already aligned with team {other}")
    row = repository.get_team(session, team_id)
    if row is None:
        row = TeamRow(team_id=team_id, name=team.name, host=team.host, updated_at=now)
        session.add(row)
    elif row.host != team.host:
        raise Conflict(f"Team {team_id} is hosted by {row.host}; a team cannot change host")
    else:
        row.name, row.updated_at = team.name, now
    session.flush()
    repository.replace_practices(session, team_id, team.practices)
    source = {"source": source_uri(team.host)}
    organisation = team_organization(team_id, team)
    update(session, "Organization", team_id, {**organisation, "meta": source}, now=now)
    current = {
        m.practitioner: m for m in repository.members_of(session, team_id, active_only=False)
    }
    wanted = {m.practitioner: m for m in team.members}
    for practitioner, member in wanted.items():
        capacity = capacity_of(member, settings)
        existing = current.get(practitioner)
        if existing is None:
            existing = MemberRow(team_id=team_id, practitioner=practitioner)
            session.add(existing)
        existing.role, existing.discipline = member.role, member.discipline
        existing.capacity, existing.hours_per_week = capacity, member.hours_per_week
        existing.active = True
        resource = member_role(
            team_id, practitioner, member.role, member.discipline, member.hours_per_week, capacity
        )
        update(session, "PractitionerRole", resource["id"], {**resource, "meta": source}, now=now)
    for practitioner, existing in current.items():
        if practitioner in wanted or not existing.active:
            continue
        existing.active = False
        stored = get_current(session, "PractitionerRole", role_id(team_id, practitioner))
        if stored is not None and stored.body is not None and not stored.deleted:
            resource = member_role(
                team_id,
                practitioner,
                existing.role,
                existing.discipline,
                existing.hours_per_week,
                existing.capacity,
            )
            resource["active"] = False
            update(
                session, "PractitionerRole", resource["id"], {**resource, "meta": source}, now=now
            )
    session.flush()
    return require_team(session, team_id)


def load_team(session: Session, team_id: str) -> Team | None:
    row = repository.get_team(session, team_id)
    if row is None:
        return None
    members = tuple(
        Member(
            m.practitioner,
            m.role,
            m.discipline,
            m.capacity,
            m.hours_per_week,
            role_id(team_id, m.practitioner),
        )
        for m in repository.members_of(session, team_id)
    )
    return Team(
        row.team_id, row.name, row.host, tuple(repository.practices_of(session, team_id)), members
    )


def require_team(session: Session, team_id: str) -> Team:
    team = load_team(session, team_id)
    if team is None:
        raise NotFound(f"There is no team '{team_id}'")
    return team


def all_teams(session: Session) -> list[Team]:
    return [
        team
        for row in repository.all_teams(session)
        if (team := load_team(session, row.team_id)) is not None
    ]


def practitioner_id(user: str | None) -> str | None:
    """The Practitioner id of a caller's ``user`` (``Practitioner/<id>``), if any."""
    if user is None or not user.startswith("Practitioner/"):
        return None
    return user.removeprefix("Practitioner/") or None


def teams_of(session: Session, user: str | None) -> list[str]:
    """The teams a signed-in user (``Practitioner/<id>``) works in, as coordinator or lead."""
    practitioner = practitioner_id(user)
    if practitioner is None:
        return []
    return sorted({m.team_id for m in repository.memberships(session, practitioner)})


def leads(session: Session, team_id: str, user: str | None) -> bool:
    practitioner = practitioner_id(user)
    return practitioner is not None and any(
        m.team_id == team_id and m.role == "lead"
        for m in repository.memberships(session, practitioner)
    )


def team_for_practice(session: Session, practice: str) -> str | None:
    return repository.team_of_practice(session, practice)


def load_team_members(session: Session, team_id: str) -> list[MemberRow]:
    return repository.members_of(session, team_id)

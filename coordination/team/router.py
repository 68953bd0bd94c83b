"""``/coordination/teams``: the integrated teams, their aligned practices and members."""

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from consent.audit import Action
from consent.context import CallerKind
from coordination.http import json_response
from coordination.settings import CoordinationSettings
from coordination.team import service
from coordination.team.schemas import ID, TeamIn
from fhir_gateway.api import (
    Forbidden,
    Invalid,
    access,
    add_events,
    audit_record,
    authenticate,
    require_scope,
    require_whole_scope,
)

router = APIRouter(
    prefix="/coordination", tags=["coordination"], dependencies=[Depends(authenticate)]
)


@router.get("/teams")
def list_teams(request: Request) -> Response:
    require_whole_scope(access(request), "Organization", "r")
    with request.app.state.unit_of_work() as session:
        teams = service.all_teams(session)
    return json_response({"teams": [t.as_json() for t in teams]})


@router.get("/teams/{team_id}")
def get_team(request: Request, team_id: str) -> Response:
    require_whole_scope(access(request), "Organization", "r")
    with request.app.state.unit_of_work() as session:
        team = service.require_team(session, team_id)
    return json_response(team.as_json())


@router.put("/teams/{team_id}")
def put_team(request: Request, team_id: str, team: TeamIn) -> Response:
    """Create or replace a team: by an administrator of its host organisation."""
    context = access(request)
    require_scope(context, "Organization", "u")
    require_scope(context, "PractitionerRole", "u")
    settings: CoordinationSettings = request.app.state.coordination_settings
    if not ID.match(team_id):
        raise Invalid("A team id is 1-64 letters, digits, '-' or '.'")
    if (
        context.kind is not CallerKind.USER
        or context.organisation != team.host
        or context.role not in settings.team_admin_roles
    ):
        raise Forbidden(
            "Only an administrator of the host organisation may set up its teams "
            f"(roles: {', '.join(sorted(settings.team_admin_roles))})"
        )
    now = datetime.now(UTC)
    with request.app.state.unit_of_work() as session:
        # Coordination writes the team's FHIR resources itself (attributed to the host), and
        # records the administrator's change in the audit, in the same transaction.
        created = service.load_team(session, team_id) is None
        saved = service.put_team(session, team_id, team, now=now, settings=settings)
        action = Action.CREATE if created else Action.UPDATE
        add_events(session, [audit_record(request, action=action, interaction="team", now=now)])
    return json_response(saved.as_json(), 201 if created else 200)

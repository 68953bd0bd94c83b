"""Tasks over HTTP: a team's tasks (the unassigned pool, or one owner's), creating a task,
claiming one from the pool, and moving it through the FHIR workflow (requested, accepted,
in-progress, completed, cancelled...). The FHIR Task is updated with every change."""

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.audit import Action
from consent.context import AccessContext
from coordination.caseload import service as caseload
from coordination.caseload.models import TaskRow
from coordination.http import json_response
from coordination.task import service
from coordination.task.fhir import KINDS, OPEN, TRANSITIONS
from coordination.team import service as teams
from fhir_gateway.api import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Unprocessable,
    access,
    add_events,
    audit_record,
    authenticate,
    per_person,
    require_scope,
    require_whole_scope,
)

router = APIRouter(
    prefix="/coordination", tags=["coordination"], dependencies=[Depends(authenticate)]
)


class NewTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    person: str = Field(pattern=r"^Person/[A-Za-z0-9\-.]{1,64}$")
    kind: str = "general"
    description: str = Field(min_length=3, max_length=2000)
    due: date | None = None
    owner: str | None = Field(default=None, pattern=r"^Practitioner/[A-Za-z0-9\-.]{1,64}$")


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str
    note: str | None = Field(default=None, max_length=2000)


def _me(context: AccessContext) -> str:
    me = teams.practitioner_id(context.user)
    if me is None:
        raise Forbidden("Tasks are worked by members of staff signed in as themselves")
    return me


def _task_json(row: TaskRow) -> dict[str, object]:
    return {
        "task": f"Task/{row.task_id}",
        "person": f"Person/{row.person_id}" if row.person_id else None,
        "team": f"Organization/{row.team_id}" if row.team_id else None,
        "owner": f"Practitioner/{row.owner}" if row.owner else None,
        "kind": row.code,
        "status": row.status,
        "due": row.due.isoformat() if row.due else None,
    }


def _member_of(session: Session, context: AccessContext, team_id: str | None) -> None:
    if team_id is None or team_id not in teams.teams_of(session, context.user):
        raise NotFound("There is no such task")


def _audit(
    request: Request, session: Session, persons: list[str | None], action: Action, now: datetime
) -> None:
    record = audit_record(request, action=action, interaction="task", now=now)
    add_events(session, per_person(record, (f"Person/{p}" for p in persons if p)))


@router.get("/teams/{team_id}/tasks")
def team_tasks(
    request: Request,
    team_id: str,
    owner: Annotated[
        str | None, Query(description="Practitioner/<id>, or 'none' for the pool")
    ] = None,
    status: Annotated[str, Query(pattern="^(open|closed|all)$")] = "open",
) -> Response:
    context = access(request)
    require_whole_scope(context, "Task", "r")
    _me(context)
    now = datetime.now(UTC)
    with request.app.state.unit_of_work() as session:
        teams.require_team(session, team_id)
        _member_of(session, context, team_id)
        t = TaskRow
        stmt = select(t).where(t.team_id == team_id)
        if owner == "none":
            stmt = stmt.where(t.owner.is_(None))
        elif owner:
            stmt = stmt.where(t.owner == owner.removeprefix("Practitioner/"))
        if status == "open":
            stmt = stmt.where(t.status.in_(sorted(OPEN)))
        elif status == "closed":
            stmt = stmt.where(t.status.not_in(sorted(OPEN)))
        rows = session.scalars(stmt.order_by(t.due.is_(None), t.due, t.created_at).limit(500)).all()
        _audit(request, session, [r.person_id for r in rows], Action.READ, now)
        body = {"team": f"Organization/{team_id}", "tasks": [_task_json(r) for r in rows]}
    return json_response(body)


@router.post("/tasks")
def create_task(request: Request, body: NewTask) -> Response:
    """A task for someone on the team's caseload: for a named coordinator of the team, or
    (no owner) into the team's pool."""
    context = access(request)
    require_scope(context, "Task", "c")
    _me(context)
    if body.kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(sorted(KINDS))}")
    now = datetime.now(UTC)
    person_id = body.person.removeprefix("Person/")
    with request.app.state.unit_of_work() as session:
        case_row = caseload.open_case_of(session, person_id)
        if case_row is None or case_row.team_id not in teams.teams_of(session, context.user):
            raise NotFound(f"{body.person} is not on a caseload of the caller's team")
        owner = body.owner.removeprefix("Practitioner/") if body.owner else None
        if owner is not None and owner not in {
            m.practitioner for m in teams.load_team_members(session, case_row.team_id)
        }:
            raise Unprocessable(f"{body.owner} is not in team {case_row.team_id}")
        task_id = service.raise_task(
            session,
            kind=body.kind,
            person_id=person_id,
            patient_id=case_row.patient_id,
            team_id=case_row.team_id,
            owner=owner,
            due=body.due,
            now=now,
            description=body.description,
        )
        row = session.get(TaskRow, task_id)
        assert row is not None
        _audit(request, session, [person_id], Action.CREATE, now)
        answer = _task_json(row)
    return json_response(answer, 201)


def _task_for(session: Session, context: AccessContext, task_id: str) -> TaskRow:
    row = session.get(TaskRow, task_id)
    if row is None:
        raise NotFound("There is no such task")
    _member_of(session, context, row.team_id)
    return row


@router.post("/tasks/{task_id}/claim")
def claim(request: Request, task_id: str) -> Response:
    """Take a task from the team's pool."""
    context = access(request)
    require_scope(context, "Task", "u")
    me = _me(context)
    now = datetime.now(UTC)
    with request.app.state.unit_of_work() as session:
        row = _task_for(session, context, task_id)
        if row.owner is not None:
            raise Conflict("This task already has an owner")
        if row.status not in OPEN:
            raise Conflict(f"This task is {row.status}")
        service.set_owner(session, row, me, now=now)
        _audit(request, session, [row.person_id], Action.UPDATE, now)
        answer = _task_json(row)
    return json_response(answer)


@router.post("/tasks/{task_id}/status")
def change_status(request: Request, task_id: str, body: StatusChange) -> Response:
    """Move a task on: only along the workflow, by its owner or the team lead (or, for the
    pool, any member of the team)."""
    context = access(request)
    require_scope(context, "Task", "u")
    me = _me(context)
    now = datetime.now(UTC)
    with request.app.state.unit_of_work() as session:
        row = _task_for(session, context, task_id)
        if row.owner not in (None, me) and not teams.leads(session, str(row.team_id), context.user):
            raise Forbidden("Only the task's owner or the team lead may change it")
        allowed = TRANSITIONS.get(row.status, frozenset())
        if body.status not in allowed:
            raise Conflict(
                f"A {row.status} task cannot become {body.status}"
                + (f"; it may become {', '.join(sorted(allowed))}" if allowed else "")
            )
        service.set_status(session, row, body.status, now=now, note=body.note)
        _audit(request, session, [row.person_id], Action.UPDATE, now)
        answer = _task_json(row)
    return json_response(answer)

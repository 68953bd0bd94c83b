"""Shared care plans over HTTP. Reading the plan, its versions and their Provenance is the
FHIR API's (``/fhir/CarePlan/<id>``, ``/_history``), under consent like everything else."""

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from consent.audit import Action
from consent.context import AccessContext
from coordination.care_plan import service
from coordination.caseload import service as caseload
from coordination.caseload.models import CaseRow
from coordination.team import service as teams
from fhir_gateway.api import (
    Forbidden,
    NotFound,
    StoredResource,
    access,
    add_events,
    audit_record,
    authenticate,
    etag,
    parse_if_match,
    per_person,
    require_scope,
    visible_patient,
)

router = APIRouter(
    prefix="/coordination", tags=["coordination"], dependencies=[Depends(authenticate)]
)


class NewPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    title: str = Field(min_length=3, max_length=200)
    description: str | None = Field(default=None, max_length=10000)
    review_date: date | None = Field(default=None, alias="reviewDate")


class PlanChange(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    title: str | None = Field(default=None, min_length=3, max_length=200)
    description: str | None = Field(default=None, max_length=10000)
    status: str | None = None
    review_date: date | None = Field(default=None, alias="reviewDate")


class Contribution(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: str = Field(pattern=r"^(Goal|Task|ServiceRequest)/[A-Za-z0-9\-.]{1,64}$")


def _answer(stored: StoredResource, status: int = 200) -> Response:
    return Response(
        stored.body or "{}",
        status_code=status,
        media_type="application/fhir+json",
        headers={"ETag": etag(stored.version_id), "Location": f"CarePlan/{stored.resource_id}"},
    )


def _author(context: AccessContext) -> service.Author:
    return service.Author(context.user, context.organisation)


def _team_member(session: Session, context: AccessContext, case_row: CaseRow) -> None:
    me = teams.practitioner_id(context.user)
    if case_row.coordinator != me and not teams.leads(session, case_row.team_id, context.user):
        raise Forbidden("Only the person's coordinator or the team lead changes the plan itself")


def _audit(request: Request, session: Session, person: str, action: Action, now: datetime) -> None:
    record = audit_record(request, action=action, interaction="care-plan", now=now)
    add_events(session, per_person(record, [f"Person/{person}"]))


@router.post("/cases/{case_id}/care-plan")
def create_plan(request: Request, case_id: str, body: NewPlan) -> Response:
    context = access(request)
    require_scope(context, "CarePlan", "c")
    now = datetime.now(UTC)
    with request.app.state.unit_of_work() as session:
        case_row = caseload.require_case(session, case_id)
        _team_member(session, context, case_row)
        stored = service.create(
            session,
            case_row,
            title=body.title,
            description=body.description,
            review_date=body.review_date,
            author=_author(context),
            now=now,
        )
        _audit(request, session, case_row.person_id, Action.CREATE, now)
    return _answer(stored, 201)


@router.patch("/care-plans/{plan_id}")
def revise_plan(
    request: Request,
    plan_id: str,
    body: PlanChange,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Response:
    context = access(request)
    require_scope(context, "CarePlan", "u")
    now = datetime.now(UTC)
    with request.app.state.unit_of_work() as session:
        _, _, case_row = service.require_plan(session, plan_id)
        _team_member(session, context, case_row)
        stored = service.revise(
            session,
            plan_id,
            if_match=parse_if_match(if_match),
            title=body.title,
            description=body.description,
            status=body.status,
            review_date=body.review_date,
            author=_author(context),
            now=now,
        )
        _audit(request, session, case_row.person_id, Action.UPDATE, now)
    return _answer(stored)


@router.post("/care-plans/{plan_id}/contributions")
def contribute(
    request: Request,
    plan_id: str,
    body: Contribution,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Response:
    """Any member of staff who may see the person adds their organisation's own Goal, Task or
    ServiceRequest to the plan."""
    context = access(request)
    require_scope(context, "CarePlan", "u")
    if teams.practitioner_id(context.user) is None or context.organisation is None:
        raise Forbidden("Contributions are made by members of staff for their organisation")
    now = datetime.now(UTC)
    with request.app.state.unit_of_work() as session:
        _, _, case_row = service.require_plan(session, plan_id)
        if visible_patient(request, session, case_row.patient_id, now=now) is None:
            raise NotFound(f"There is no shared care plan '{plan_id}'")
        stored = service.contribute(
            session,
            plan_id,
            if_match=parse_if_match(if_match),
            reference=body.reference,
            author=_author(context),
            now=now,
        )
        _audit(request, session, case_row.person_id, Action.UPDATE, now)
    return _answer(stored)

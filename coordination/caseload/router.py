"""Caseloads over HTTP: the team lead's offers (referrals, the queue, people found), opening,
assigning and closing coordination episodes, referrals by any clinician, and worklists.

Who may do what: the team lead runs the team's caseloads; a coordinator works their own
worklist (a lead may open any coordinator's in the team); any member of staff who may see
the person's record may refer them. Every list of people is audited person by person.
"""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from consent.audit import Action
from consent.case_finding import may_see_case_finding, why_not
from consent.context import AccessContext, CallerKind
from coordination.caseload import service, worklist
from coordination.caseload.models import CaseRow
from coordination.http import json_response
from coordination.team import service as teams
from coordination.team.schemas import ID
from fhir_gateway.api import (
    Forbidden,
    Invalid,
    NotFound,
    access,
    add_events,
    agreement_async,
    audit_record,
    authenticate,
    per_person,
    person_of,
    persons_with_objections,
    registrations,
    require_scope,
    visible_patient,
)

router = APIRouter(
    prefix="/coordination", tags=["coordination"], dependencies=[Depends(authenticate)]
)

PRACTITIONER = r"^Practitioner/[A-Za-z0-9\-.]{1,64}$"


class OpenCase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    person: str = Field(pattern=r"^Person/[A-Za-z0-9\-.]{1,64}$")
    coordinator: str | None = Field(default=None, pattern=PRACTITIONER)


class Assign(BaseModel):
    model_config = ConfigDict(extra="forbid")
    coordinator: str | None = Field(default=None, pattern=PRACTITIONER)


class Review(BaseModel):
    model_config = ConfigDict(extra="forbid")
    review_due: str = Field(alias="reviewDue", pattern=r"^\d{4}-\d{2}-\d{2}$")


class Referral(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patient: str = Field(pattern=r"^Patient/[A-Za-z0-9\-.]{1,64}$")
    reason: str = Field(min_length=3, max_length=2000)


def _staff(context: AccessContext) -> None:
    if context.kind is not CallerKind.USER or teams.practitioner_id(context.user) is None:
        raise Forbidden("Caseloads are worked by members of staff signed in as themselves")


def _require_lead(session: Session, context: AccessContext, team_id: str) -> None:
    _staff(context)
    teams.require_team(session, team_id)
    if not teams.leads(session, team_id, context.user):
        raise Forbidden(f"Only the lead of team {team_id} may do this")


def _practitioner(reference: str | None) -> str | None:
    return reference.removeprefix("Practitioner/") if reference else None


def _audit(
    request: Request, session: Session, persons: list[str], action: Action, what: str, now: datetime
) -> None:
    record = audit_record(request, action=action, interaction=what, now=now)
    add_events(session, per_person(record, (f"Person/{p}" for p in persons)))


@router.get("/teams/{team_id}/offers")
async def team_offers(
    request: Request, team_id: str, count: int = Query(default=20, alias="_count", ge=1, le=200)
) -> Response:
    """For the team lead: referrals and the queue, then the people case-finding found, each
    with the coordinator proposed and why. Shown under the case-finding purpose."""
    context = access(request)
    agreement = await agreement_async(request)

    def answer() -> dict[str, object]:
        now = datetime.now(UTC)
        with request.app.state.unit_of_work() as session:
            _require_lead(session, context, team_id)
            if not may_see_case_finding(context, agreement, in_team=True):
                raise Forbidden(why_not(context, agreement, in_team=True))
            listed = service.offers(session, team_id, limit=count * 2, exclude=frozenset())
            objecting = persons_with_objections(session, [o.person_id for o in listed], now=now)
            shown = [o for o in listed if o.person_id not in objecting or o.case_id][:count]
            _audit(request, session, [o.person_id for o in shown], Action.READ, "offers", now)
            loads = service.loads(session, team_id)
        return {
            "team": f"Organization/{team_id}",
            "coordinators": [
                {
                    "practitioner": f"Practitioner/{c.practitioner}",
                    "discipline": c.discipline,
                    "caseload": c.caseload,
                    "capacity": c.capacity,
                }
                for c in loads
            ],
            "offers": [o.as_json() for o in shown],
        }

    return json_response(await run_in_threadpool(answer))


@router.post("/teams/{team_id}/cases")
def open_case(request: Request, team_id: str, body: OpenCase) -> Response:
    """The team lead takes on a person case-finding found: with the coordinator named, or the
    one proposed, or into the queue when nobody has room."""
    context = access(request)
    require_scope(context, "EpisodeOfCare", "c")
    now = datetime.now(UTC)
    person_id = body.person.removeprefix("Person/")
    with request.app.state.unit_of_work() as session:
        _require_lead(session, context, team_id)
        finding = service.session_finding(session, person_id)
        if finding is None or finding.team_id != team_id or finding.patient_id is None:
            raise NotFound(
                f"{body.person} is not registered at a practice aligned with team {team_id}"
            )
        row = service.open_case(
            session,
            person_id=person_id,
            patient_id=finding.patient_id,
            team_id=team_id,
            coordinator=_practitioner(body.coordinator),
            route="case-finding",
            now=now,
        )
        _audit(request, session, [person_id], Action.CREATE, "case", now)
        answer = service.case_json(row)
    return json_response(answer, 201)


def _case_for_lead(session: Session, context: AccessContext, case_id: str) -> CaseRow:
    row = service.require_case(session, case_id)
    _require_lead(session, context, row.team_id)
    return row


@router.get("/cases/{case_id}")
def get_case(request: Request, case_id: str) -> Response:
    context = access(request)
    _staff(context)
    now = datetime.now(UTC)
    with request.app.state.unit_of_work() as session:
        row = service.require_case(session, case_id)
        if row.team_id not in teams.teams_of(session, context.user):
            raise NotFound(f"There is no coordination episode '{case_id}'")
        _audit(request, session, [row.person_id], Action.READ, "case", now)
        answer = service.case_json(row)
    return json_response(answer)


@router.post("/cases/{case_id}/assign")
def assign(request: Request, case_id: str, body: Assign) -> Response:
    """Confirm the proposal (no coordinator named), override it, or hand over to another."""
    context = access(request)
    require_scope(context, "EpisodeOfCare", "u")
    now = datetime.now(UTC)
    with request.app.state.unit_of_work() as session:
        row = _case_for_lead(session, context, case_id)
        service.assign(session, row, _practitioner(body.coordinator), now=now)
        _audit(request, session, [row.person_id], Action.UPDATE, "case", now)
        answer = service.case_json(row)
    return json_response(answer)


@router.post("/cases/{case_id}/review")
def set_review(request: Request, case_id: str, body: Review) -> Response:
    context = access(request)
    require_scope(context, "EpisodeOfCare", "u")
    now = datetime.now(UTC)
    from datetime import date

    try:
        due = date.fromisoformat(body.review_due)
    except ValueError as exc:
        raise Invalid("reviewDue must be a date, YYYY-MM-DD") from exc
    with request.app.state.unit_of_work() as session:
        row = service.require_case(session, case_id)
        me = teams.practitioner_id(context.user)
        if row.coordinator != me:
            _require_lead(session, context, row.team_id)
        service.set_review(session, row, due, now=now)
        _audit(request, session, [row.person_id], Action.UPDATE, "case", now)
        answer = service.case_json(row)
    return json_response(answer)


@router.post("/cases/{case_id}/close")
def close_case(request: Request, case_id: str) -> Response:
    context = access(request)
    require_scope(context, "EpisodeOfCare", "u")
    now = datetime.now(UTC)
    with request.app.state.unit_of_work() as session:
        row = service.require_case(session, case_id)
        if row.coordinator != teams.practitioner_id(context.user):
            _require_lead(session, context, row.team_id)
        service.close(session, row, now=now)
        _audit(request, session, [row.person_id], Action.UPDATE, "case", now)
        answer = service.case_json(row)
    return json_response(answer)


@router.post("/referrals")
async def refer(request: Request, body: Referral) -> Response:
    """Any member of staff who may see the person's record refers them to the team aligned
    with their GP practice."""
    context = access(request)
    require_scope(context, "ServiceRequest", "c")
    _staff(context)
    agreement = await agreement_async(request)
    gp_practices = frozenset(p.ods for p in agreement.parties.values() if p.kind == "gp")
    patient_id = body.patient.removeprefix("Patient/")

    def answer() -> dict[str, object]:
        now = datetime.now(UTC)
        with request.app.state.unit_of_work() as session:
            if visible_patient(request, session, patient_id, now=now) is None:
                raise NotFound(f"Patient/{patient_id} is not known")
            person_id = person_of(session, patient_id)
            found = (
                registrations(session, gp_practices=gp_practices, now=now, person_ids=[person_id])
                if person_id
                else []
            )
            team_id = teams.team_for_practice(session, found[0].practice) if found else None
            if person_id is None or not found or team_id is None:
                raise Invalid(
                    "This person is not registered at a GP practice aligned with an "
                    "integrated team, so there is no team to refer them to"
                )
            row = service.refer(
                session,
                person_id=person_id,
                patient_id=found[0].patient_id,
                team_id=team_id,
                referrer=context.user,
                referrer_organisation=str(context.organisation),
                reason=body.reason,
                now=now,
            )
            _audit(request, session, [person_id], Action.CREATE, "referral", now)
            return service.case_json(row)

    return json_response(await run_in_threadpool(answer), 201)


@router.get("/worklist")
def my_worklist(
    request: Request,
    coordinator: Annotated[str | None, Query(pattern=PRACTITIONER)] = None,
    flag: Annotated[list[str] | None, Query()] = None,
) -> Response:
    """A coordinator's people by need with their flags; a team lead may open the worklist of
    any coordinator in the team."""
    context = access(request)
    _staff(context)
    me = teams.practitioner_id(context.user)
    whose = _practitioner(coordinator) or me
    unknown = [f for f in flag or () if f not in worklist.FLAGS]
    if unknown:
        raise Invalid(f"Unknown flag {unknown[0]}; flags are {', '.join(worklist.FLAGS)}")
    if whose is None or not ID.match(whose):
        raise Invalid("coordinator must be Practitioner/<id>")
    now = datetime.now(UTC)
    with request.app.state.unit_of_work() as session:
        if whose != me:
            shared = set(teams.teams_of(session, f"Practitioner/{whose}"))
            if not any(teams.leads(session, t, context.user) for t in shared):
                raise Forbidden("Only the coordinator, or their team lead, sees this worklist")
        entries, counts = worklist.worklist(session, whose, now=now, flags=flag or ())
        _audit(request, session, [e.person_id for e in entries], Action.READ, "worklist", now)
        body = {
            "coordinator": f"Practitioner/{whose}",
            "counts": counts,
            "entries": [e.as_json() for e in entries],
        }
    return json_response(body)

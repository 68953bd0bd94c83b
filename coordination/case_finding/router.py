"""``/coordination/teams/{team}/case-finding``: the team's ranked list, under the purpose
CASEFIND, for the roles the agreement names, audited person by person."""

from datetime import UTC, datetime

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from consent.audit import Action
from consent.case_finding import may_see_case_finding, why_not
from coordination.case_finding.explain import for_team
from coordination.case_finding.models import CaseFindingRow
from coordination.team import service as teams
from fhir_gateway.api import (
    Forbidden,
    access,
    add_events,
    agreement_async,
    audit_record,
    authenticate,
    per_person,
    persons_with_objections,
)

router = APIRouter(
    prefix="/coordination", tags=["coordination"], dependencies=[Depends(authenticate)]
)


@router.get("/teams/{team_id}/case-finding")
async def team_case_finding(
    request: Request,
    team_id: str,
    count: int = Query(default=50, alias="_count", ge=1, le=500),
    offset: int = Query(default=0, alias="_offset", ge=0, le=1_000_000),
    practice: str | None = Query(default=None),
    cohort: str | None = Query(default=None, max_length=64),
) -> Response:
    context = access(request)
    agreement = await agreement_async(request)

    def answer() -> dict[str, object]:
        now = datetime.now(UTC)
        with request.app.state.unit_of_work() as session:
            team = teams.require_team(session, team_id)
            in_team = team_id in teams.teams_of(session, context.user)
            if not may_see_case_finding(context, agreement, in_team=in_team):
                raise Forbidden(why_not(context, agreement, in_team=in_team))
            c = CaseFindingRow
            where = [c.team_id == team_id, c.found.is_(True)]
            if practice:
                where.append(c.practice == practice)
            if cohort:
                where.append((" " + c.cohorts + " ").contains(f" {cohort} "))
            # People who objected are left out before anything is counted or paged.
            candidates = session.execute(select(c.person_id).where(*where)).scalars().all()
            objecting = persons_with_objections(session, candidates, now=now)
            if objecting:
                where.append(c.person_id.not_in(sorted(objecting)))
            total = session.scalar(select(func.count()).select_from(c).where(*where)) or 0
            rows = session.scalars(
                select(c)
                .where(*where)
                .order_by(c.need.desc(), c.person_id)
                .offset(offset)
                .limit(count)
            ).all()
            entries = [for_team(row) for row in rows]
            record = audit_record(request, action=Action.READ, interaction="case-finding", now=now)
            add_events(session, per_person(record, (f"Person/{r.person_id}" for r in rows)))
        return {
            "team": team.as_json()["organization"],
            "total": total,
            "offset": offset,
            "count": len(entries),
            "entries": entries,
        }

    body = await run_in_threadpool(answer)
    return Response(orjson.dumps(body), media_type="application/json")

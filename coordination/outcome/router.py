"""``GET /coordination/outcomes?month=YYYY-MM[&team=...][&_format=csv]``: aggregate outcome
measures, as a Bundle of MeasureReports or as CSV. Aggregates only, with small counts
suppressed, for members of staff of the partnership's organisations; each request is
audited."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from consent.audit import Action
from consent.context import CallerKind
from coordination.outcome import fhir
from coordination.outcome.rules import Month
from coordination.outcome.service import Report, reports
from coordination.settings import CoordinationSettings
from coordination.team import service as teams
from fhir_gateway.api import (
    Forbidden,
    Invalid,
    access,
    add_events,
    agreement_async,
    audit_record,
    authenticate,
    dumps,
    format_instant,
    require_whole_scope,
)

router = APIRouter(
    prefix="/coordination", tags=["coordination"], dependencies=[Depends(authenticate)]
)


@router.get("/outcomes")
async def outcomes(
    request: Request,
    month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$")],
    team: Annotated[str | None, Query(max_length=64)] = None,
    format_: Annotated[str, Query(alias="_format", pattern="^(json|csv)$")] = "json",
) -> Response:
    context = access(request)
    require_whole_scope(context, "MeasureReport", "r")
    agreement = await agreement_async(request)
    if context.kind is not CallerKind.USER or context.organisation not in agreement.parties:
        raise Forbidden("Outcome reports are for staff of the partnership's organisations")
    try:
        period = Month.parse(month)
    except ValueError as exc:
        raise Invalid(str(exc)) from exc
    settings: CoordinationSettings = request.app.state.coordination_settings
    hospitals = frozenset(p.ods for p in agreement.parties.values() if p.kind == "hospital")

    def answer() -> list[Report]:
        now = datetime.now(UTC)
        with request.app.state.unit_of_work() as session:
            if team is not None:
                teams.require_team(session, team)
            found = reports(
                session,
                period,
                hospitals=hospitals,
                threshold=settings.suppression_threshold,
                now=now,
                team_ids=[team] if team else None,
            )
            record = audit_record(request, action=Action.READ, interaction="outcomes", now=now)
            add_events(session, [record])
        return found

    found = await run_in_threadpool(answer)
    generated = format_instant(datetime.now(UTC))
    if format_ == "csv":
        return Response(
            fhir.as_csv(found),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="outcomes-{period}.csv"'},
        )
    return Response(
        dumps(fhir.bundle(found, generated=generated)), media_type="application/fhir+json"
    )

"""Coordination's routers and outbox consumers, handed to the gateway's ``create_app``."""

from collections.abc import Callable

from fastapi import FastAPI

from coordination import handlers
from coordination.assessment.router import router as assessment_router
from coordination.care_plan.router import router as care_plan_router
from coordination.case_finding.router import router as case_finding_router
from coordination.caseload.router import router as caseload_router
from coordination.outcome.router import router as outcome_router
from coordination.settings import CoordinationSettings
from coordination.task.router import router as task_router
from coordination.team.router import router as team_router


def extension(
    settings: CoordinationSettings, *, agreement_path: str | None = None
) -> Callable[[FastAPI], None]:
    def install(app: FastAPI) -> None:
        app.state.coordination_settings = settings
        consumers = handlers.registry(settings, agreement_path=agreement_path)
        app.state.dispatcher = app.state.dispatcher.with_handlers(
            consumers.handlers, consumers.deferred
        )
        app.include_router(team_router)
        app.include_router(case_finding_router)
        app.include_router(caseload_router)
        app.include_router(task_router)
        app.include_router(care_plan_router)
        app.include_router(outcome_router)
        app.include_router(assessment_router)

    return install

"""The unified assessment over HTTP.

- ``GET /coordination/assessment/questionnaire``: the Questionnaire (also stored, so
  ``/fhir/Questionnaire/unified-assessment`` reads it).
- ``GET /coordination/assessments?patient=Patient/…``: the person's unified assessments across
  every source the caller may see, newest first.
- ``POST /coordination/assessments {"patient", "answers": {linkId: value}, "reassess": bool,
  "reason"}``: a completed QuestionnaireResponse, recorded as the caller's organisation's own
  record. If the person already has a completed unified assessment from the last 90 days
  (from any organisation the caller may see), the answer is 409 pointing to it, unless
  ``reassess`` is true with a reason: the person is not assessed again and again.
"""

from datetime import UTC, datetime, timedelta

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from consent.audit import Action
from coordination.assessment import rules
from fhir_gateway.api import (
    Conflict,
    Forbidden,
    NotFound,
    Unprocessable,
    access,
    add_events,
    audit_record,
    authenticate,
    create,
    dumps,
    get_current,
    per_person,
    require_scope,
    source_uri,
    update,
    visible_patient,
    visible_record,
)

router = APIRouter(
    prefix="/coordination", tags=["coordination"], dependencies=[Depends(authenticate)]
)
PATIENT = r"^Patient/[A-Za-z0-9\-.]{1,64}$"


class NewAssessment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patient: str = Field(pattern=PATIENT)
    answers: dict[str, object]
    reassess: bool = False
    reason: str | None = Field(default=None, max_length=2000)


def _publish(session: Session, now: datetime) -> None:
    """Store the Questionnaire the first time an assessment is recorded."""
    questionnaire = rules.questionnaire()
    if get_current(session, "Questionnaire", questionnaire["id"]) is None:
        update(
            session,
            "Questionnaire",
            questionnaire["id"],
            {**questionnaire, "meta": {"source": "urn:carejoin:source:carejoin"}},
            now=now,
        )


@router.get("/assessment/questionnaire")
def the_questionnaire() -> Response:
    return Response(dumps(rules.questionnaire()), media_type="application/fhir+json")


def _sorted(found: list[dict[str, object]]) -> list[dict[str, object]]:
    def when(response: dict[str, object]) -> tuple[str, str]:
        meta = response.get("meta")
        updated = meta.get("lastUpdated") if isinstance(meta, dict) else None
        return str(response.get("authored") or ""), str(updated or "")

    return sorted(found, key=when, reverse=True)


@router.get("/assessments")
async def list_assessments(request: Request, patient: str = Query(pattern=PATIENT)) -> Response:
    context = access(request)
    require_scope(context, "QuestionnaireResponse", "r")
    patient_id = patient.removeprefix("Patient/")

    def answer() -> dict[str, object]:
        now = datetime.now(UTC)
        with request.app.state.unit_of_work() as session:
            if visible_patient(request, session, patient_id, now=now) is None:
                raise NotFound(f"Patient/{patient_id} is not known")
            person, stored = visible_record(
                request, session, patient_id, types=["QuestionnaireResponse"], now=now
            )
            responses = [orjson.loads(r.body) for r in stored if r.body]
            unified = _sorted([r for r in responses if rules.is_unified(r)])
            record = audit_record(request, action=Action.READ, interaction="assessment", now=now)
            add_events(session, per_person(record, [f"Person/{person}"] if person else []))
        return {"person": f"Person/{person}" if person else None, "assessments": unified}

    return Response(orjson.dumps(await run_in_threadpool(answer)), media_type="application/json")


@router.post("/assessments")
async def record_assessment(request: Request, body: NewAssessment) -> Response:
    context = access(request)
    require_scope(context, "QuestionnaireResponse", "c")
    if context.organisation is None or context.user is None:
        raise Forbidden("An assessment is recorded by a member of staff for their organisation")
    patient_id = body.patient.removeprefix("Patient/")
    if body.reassess and not (body.reason and body.reason.strip()):
        raise Unprocessable("Say why the person is being assessed again (reason)")

    def answer() -> dict[str, object]:
        now = datetime.now(UTC)
        with request.app.state.unit_of_work() as session:
            if visible_patient(request, session, patient_id, now=now) is None:
                raise NotFound(f"Patient/{patient_id} is not known")
            person, stored = visible_record(
                request, session, patient_id, types=["QuestionnaireResponse"], now=now
            )
            recent = [
                r
                for r in _sorted([orjson.loads(s.body) for s in stored if s.body])
                if rules.is_unified(r)
                and r.get("status") == "completed"
                and str(r.get("authored") or "")
                >= (now - timedelta(days=rules.RECENT_DAYS)).isoformat()
            ]
            if recent and not body.reassess:
                raise Conflict(
                    f"QuestionnaireResponse/{recent[0]['id']} assessed this person on "
                    f"{str(recent[0]['authored'])[:10]}: use it, or send reassess with a reason"
                )
            try:
                response = rules.response_resource(
                    body.answers,
                    patient_id=patient_id,
                    author=context.user,
                    authored=now.isoformat(timespec="seconds"),
                )
            except rules.AnswerError as exc:
                raise Unprocessable(str(exc)) from exc
            if body.reassess and body.reason:
                response["extension"] = [
                    {
                        "url": "https://fhir.carejoin.example/StructureDefinition/reassessment-reason",
                        "valueString": body.reason.strip(),
                    }
                ]
            response["meta"] = {"source": source_uri(context.organisation or "")}
            _publish(session, now)
            written = create(session, response, now=now).stored
            record = audit_record(request, action=Action.CREATE, interaction="assessment", now=now)
            add_events(session, per_person(record, [f"Person/{person}"] if person else []))
            created: dict[str, object] = orjson.loads(written.body or "{}")
            return created

    return Response(
        orjson.dumps(await run_in_threadpool(answer)),
        status_code=201,
        media_type="application/fhir+json",
    )

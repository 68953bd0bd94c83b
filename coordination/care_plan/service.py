"""The shared care plan: one active per person, owned by the coordinating team (written as
its host organisation), changed only with ``If-Match`` on the version the author last saw,
every version with a Provenance naming who changed it and for which organisation.

Contributions (a Goal, Task or ServiceRequest) stay each organisation's own resources,
under their own labels; the plan only references them, so a reader sees of them what the
consent layer lets them see.
"""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from coordination.alert.service import notify
from coordination.care_plan.fhir import (
    CONTRIBUTION_TYPES,
    activities_of,
    care_plan_resource,
    provenance_resource,
)
from coordination.caseload.models import CaseRow, PersonStateRow
from coordination.team.service import require_team
from fhir_gateway.api import (
    Conflict,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    StoredResource,
    Unprocessable,
    format_instant,
    get_current,
    new_id,
    person_of,
    source_uri,
    update,
)

STATUSES = frozenset({"active", "on-hold", "completed", "revoked"})


@dataclass(frozen=True, slots=True)
class Author:
    user: str | None  # Practitioner/<id>
    organisation: str | None  # ODS code


def _write(
    session: Session,
    plan: dict[str, Any],
    *,
    host: str,
    author: Author,
    activity: str,
    now: datetime,
    note: str | None = None,
) -> StoredResource:
    plan["meta"] = {"source": source_uri(host)}
    stored = update(session, "CarePlan", plan["id"], plan, now=now).stored
    provenance = provenance_resource(
        new_id(),
        target=f"CarePlan/{stored.resource_id}/_history/{stored.version_id}",
        recorded=format_instant(now),
        author=author.user,
        organisation=author.organisation,
        activity=activity,
        note=note,
    )
    provenance["meta"] = {"source": source_uri(host)}
    update(session, "Provenance", provenance["id"], provenance, now=now)
    person_id = _person(session, plan)
    state = session.get(PersonStateRow, person_id) if person_id else None
    reference = f"CarePlan/{stored.resource_id}"
    if state is None and person_id:
        state = PersonStateRow(person_id=person_id, updated_at=now)
        session.add(state)
    if state is not None:
        if plan["status"] == "active":
            state.care_plan = reference
        elif state.care_plan == reference:
            state.care_plan = None
        state.updated_at = now
    session.flush()
    return stored


def _person(session: Session, plan: dict[str, Any]) -> str | None:
    patient = str((plan.get("subject") or {}).get("reference") or "").removeprefix("Patient/")
    return person_of(session, patient) if patient else None


def _review_date(plan: dict[str, Any]) -> str | None:
    for extension in plan.get("extension") or ():
        if extension.get("url", "").endswith("/review-date"):
            return str(extension.get("valueDate"))
    return None


def create(
    session: Session,
    case_row: CaseRow,
    *,
    title: str,
    description: str | None,
    review_date: date | None,
    author: Author,
    now: datetime,
) -> StoredResource:
    if case_row.status != "active":
        raise Conflict("A care plan is written for someone with a coordinator")
    if case_row.care_plan is not None:
        current = get_current(session, "CarePlan", case_row.care_plan)
        body = None if current is None or current.deleted else current.body
        if body is not None and orjson.loads(body).get("status") in {"active", "on-hold"}:
            raise Conflict(
                f"The person already has a shared care plan (CarePlan/{case_row.care_plan}); "
                "update it instead"
            )
    team = require_team(session, case_row.team_id)
    plan = care_plan_resource(
        new_id(),
        patient_id=case_row.patient_id,
        team_id=case_row.team_id,
        episode_id=case_row.case_id,
        title=title,
        description=description,
        status="active",
        created=format_instant(now),
        review_date=review_date.isoformat() if review_date else None,
        activities=(),
    )
    stored = _write(session, plan, host=team.host, author=author, activity="CREATE", now=now)
    case_row.care_plan, case_row.care_plan_since = stored.resource_id, now
    if review_date is not None:
        case_row.review_due = review_date
    case_row.updated_at = now
    session.flush()
    return stored


def require_plan(session: Session, plan_id: str) -> tuple[StoredResource, dict[str, Any], CaseRow]:
    case_row = session.scalar(select(CaseRow).where(CaseRow.care_plan == plan_id))
    stored = get_current(session, "CarePlan", plan_id)
    if case_row is None or stored is None or stored.deleted or stored.body is None:
        raise NotFound(f"There is no shared care plan '{plan_id}'")
    return stored, orjson.loads(stored.body), case_row


def _check_version(stored: StoredResource, if_match: int | None) -> None:
    if if_match is None:
        raise PreconditionRequired(
            "Changing a shared care plan needs If-Match with the version you last saw"
        )
    if stored.version_id != if_match:
        raise PreconditionFailed(
            f"The care plan is at version {stored.version_id}, not {if_match}: "
            "someone changed it since; read it again"
        )


def revise(
    session: Session,
    plan_id: str,
    *,
    if_match: int | None,
    title: str | None,
    description: str | None,
    status: str | None,
    review_date: date | None,
    author: Author,
    now: datetime,
) -> StoredResource:
    stored, plan, case_row = require_plan(session, plan_id)
    _check_version(stored, if_match)
    if status is not None and status not in STATUSES:
        raise Unprocessable(f"status must be one of {', '.join(sorted(STATUSES))}")
    team = require_team(session, case_row.team_id)
    new = care_plan_resource(
        plan_id,
        patient_id=case_row.patient_id,
        team_id=case_row.team_id,
        episode_id=case_row.case_id,
        title=title or str(plan.get("title") or ""),
        description=description if description is not None else plan.get("description"),
        status=status or str(plan["status"]),
        created=str(plan.get("created")),
        review_date=review_date.isoformat() if review_date else _review_date(plan),
        activities=activities_of(plan),
    )
    if review_date is not None:
        case_row.review_due = review_date
    return _write(session, new, host=team.host, author=author, activity="UPDATE", now=now)


def contribute(
    session: Session,
    plan_id: str,
    *,
    if_match: int | None,
    reference: str,
    author: Author,
    now: datetime,
) -> StoredResource:
    """Reference an organisation's own Goal, Task or ServiceRequest for the same person."""
    stored, plan, case_row = require_plan(session, plan_id)
    _check_version(stored, if_match)
    resource_type, _, resource_id = reference.partition("/")
    if resource_type not in CONTRIBUTION_TYPES or not resource_id:
        raise Unprocessable("A contribution is a Goal, Task or ServiceRequest of the caller's")
    contribution = get_current(session, resource_type, resource_id)
    if (
        contribution is None
        or contribution.deleted
        or contribution.source_org != author.organisation
    ):
        raise NotFound(f"{reference} is not a record of the caller's organisation")
    if (
        contribution.patient_id is None
        or person_of(session, contribution.patient_id) != case_row.person_id
    ):
        raise Unprocessable(f"{reference} is not about the person this plan is for")
    activities = activities_of(plan)
    if reference in activities:
        return stored
    team = require_team(session, case_row.team_id)
    new = care_plan_resource(
        plan_id,
        patient_id=case_row.patient_id,
        team_id=case_row.team_id,
        episode_id=case_row.case_id,
        title=str(plan.get("title") or ""),
        description=plan.get("description"),
        status=str(plan["status"]),
        created=str(plan.get("created")),
        review_date=_review_date(plan),
        activities=[*activities, reference],
    )
    written = _write(
        session,
        new,
        host=team.host,
        author=author,
        activity="UPDATE",
        now=now,
        note=f"{author.organisation} added {reference}",
    )
    if author.organisation != team.host:
        notify(
            session,
            case_row,
            trigger=f"CarePlan:{plan_id}:v{written.version_id}",
            text=f"{author.organisation} added to the care plan: {resource_type}",
            about=f"CarePlan/{plan_id}",
            security=[],
            now=now,
        )
    return written

"""Writing coordination Tasks: the FHIR Task (attributed to the team's host) and the row a
worklist reads, in one transaction. Tasks raised by an event carry a trigger identifier, so
an event seen twice raises its task once, and a cancelled event withdraws what it raised."""

from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from coordination.caseload.models import CaseRow, TaskRow
from coordination.task.fhir import OPEN, due_of, kind_of, owner_of, task_resource, trigger_of
from coordination.team import repository as teams
from fhir_gateway.api import (
    StoredResource,
    format_instant,
    get_current,
    new_id,
    person_of,
    source_uri,
    update,
)


def raise_task(
    session: Session,
    *,
    kind: str,
    person_id: str,
    patient_id: str,
    team_id: str,
    owner: str | None,
    due: date | None,
    now: datetime,
    description: str | None = None,
    focus: str | None = None,
    trigger: str | None = None,
    security: list[Any] | None = None,
) -> str | None:
    """A new Task, unless one with the same trigger exists (returns None then)."""
    if trigger is not None and session.scalar(
        select(TaskRow.task_id).where(TaskRow.trigger == trigger)
    ):
        return None
    team = teams.get_team(session, team_id)
    if team is None:
        return None
    task_id = new_id()
    resource = task_resource(
        task_id,
        kind=kind,
        patient_id=patient_id,
        owner=owner,
        team_id=team_id,
        due=due,
        authored=format_instant(now),
        description=description,
        focus=focus,
        trigger=trigger,
    )
    # A derived item carries the labels of what it was derived from.
    resource["meta"] = {
        "source": source_uri(team.host),
        **({"security": security} if security else {}),
    }
    update(session, "Task", task_id, resource, now=now)
    session.add(
        TaskRow(
            task_id=task_id,
            person_id=person_id,
            team_id=team_id,
            owner=owner,
            code=kind,
            status="requested",
            due=due,
            trigger=trigger,
            created_at=now,
            updated_at=now,
        )
    )
    session.flush()
    return task_id


def withdraw(session: Session, *, trigger_prefix: str, now: datetime, reason: str) -> int:
    """Cancel the open tasks an event raised (their trigger starts with ``trigger_prefix``)."""
    rows = session.scalars(
        select(TaskRow).where(
            TaskRow.trigger.startswith(trigger_prefix, autoescape=True),
            TaskRow.status.in_(sorted(OPEN)),
        )
    ).all()
    for row in rows:
        set_status(session, row, "cancelled", now=now, note=reason)
    return len(rows)


def set_status(
    session: Session, row: TaskRow, status: str, *, now: datetime, note: str | None = None
) -> None:
    stored = get_current(session, "Task", row.task_id)
    if stored is not None and stored.body is not None and not stored.deleted:
        task = orjson.loads(stored.body)
        task["status"] = status
        task["lastModified"] = format_instant(now)
        if note:
            task["statusReason"] = {"text": note}
        update(session, "Task", row.task_id, task, now=now)
    row.status, row.updated_at = status, now
    session.flush()


def on_task(session: Session, stored: StoredResource, now: datetime) -> None:
    """A coordination Task changed (through the FHIR API, or by coordination itself): the
    worklist row follows its status, owner and due date."""
    row = session.get(TaskRow, stored.resource_id)
    if row is None:
        row = _adopt(session, stored, now)
        if row is None:
            return  # not a coordination task, or not about someone on a caseload
    if stored.deleted or stored.body is None:
        row.status, row.updated_at = "entered-in-error", now
        return
    task = orjson.loads(stored.body)
    row.status = str(task.get("status") or row.status)
    row.owner = owner_of(task)
    row.due = due_of(task)
    row.updated_at = now


def set_owner(session: Session, row: TaskRow, owner: str, *, now: datetime) -> None:
    stored = get_current(session, "Task", row.task_id)
    if stored is not None and stored.body is not None and not stored.deleted:
        task = orjson.loads(stored.body)
        task["owner"] = {"reference": f"Practitioner/{owner}"}
        task["lastModified"] = format_instant(now)
        update(session, "Task", row.task_id, task, now=now)
    row.owner, row.updated_at = owner, now
    session.flush()


def _adopt(session: Session, stored: StoredResource, now: datetime) -> TaskRow | None:
    """A coordination Task written through the FHIR API by someone else (it carries a
    coordination task code and is for someone on a caseload) joins the worklists."""
    if stored.deleted or stored.body is None or stored.patient_id is None:
        return None
    task = orjson.loads(stored.body)
    kind = kind_of(task)
    if kind is None:
        return None
    person_id = person_of(session, stored.patient_id)
    case_row = (
        session.scalar(
            select(CaseRow).where(
                CaseRow.person_id == person_id,
                CaseRow.status.in_(("referred", "waiting", "active")),
            )
        )
        if person_id
        else None
    )
    if case_row is None:
        return None
    row = TaskRow(
        task_id=stored.resource_id,
        person_id=person_id,
        team_id=case_row.team_id,
        owner=owner_of(task),
        code=kind,
        status=str(task.get("status") or "requested"),
        due=due_of(task),
        trigger=trigger_of(task),
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    return row

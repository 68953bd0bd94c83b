"""A coordinator's worklist: their people by need, with what needs attention now."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from coordination.case_finding.models import CaseFindingRow
from coordination.caseload.models import CaseRow, PersonStateRow, TaskRow
from coordination.task.fhir import OPEN
from fhir_gateway.api import format_instant

FLAGS = (
    "admitted",  # in hospital now (an open inpatient stay)
    "discharged",  # discharged in the last 48 hours
    "review-overdue",  # the episode's review date has passed
    "no-care-plan",  # no active shared care plan yet
    "tasks-due",  # open tasks due today
    "tasks-overdue",  # open tasks past their due date
)
RECENT_DISCHARGE = timedelta(hours=48)


@dataclass(frozen=True, slots=True)
class Line:
    """One person's row of the worklist query (columns, not ORM objects: a worklist reads
    only what it shows)."""

    person_id: str
    patient_id: str
    case_id: str
    review_due: date | None
    name: str | None
    age: int | None
    hfrs_band: str | None
    cohorts: str | None
    need: float | None
    admitted_at: datetime | None
    admission: str | None
    discharged_at: datetime | None
    care_plan: str | None


@dataclass(frozen=True, slots=True)
class Entry:
    line: Line
    open_tasks: int
    due_today: int
    overdue: int
    flags: tuple[str, ...]

    @property
    def person_id(self) -> str:
        return self.line.person_id

    def as_json(self) -> dict[str, Any]:
        n = self.line
        return {
            "person": f"Person/{n.person_id}",
            "patient": f"Patient/{n.patient_id}",
            "episodeOfCare": f"EpisodeOfCare/{n.case_id}",
            "name": n.name,
            "age": n.age,
            "hfrsBand": n.hfrs_band,
            "cohorts": (n.cohorts or "").split(),
            "flags": list(self.flags),
            "admittedAt": format_instant(n.admitted_at) if n.admitted_at else None,
            "admission": n.admission if n.admitted_at else None,
            "dischargedAt": format_instant(n.discharged_at) if n.discharged_at else None,
            "carePlan": n.care_plan,
            "reviewDue": n.review_due.isoformat() if n.review_due else None,
            "openTasks": self.open_tasks,
            "tasksDueToday": self.due_today,
            "tasksOverdue": self.overdue,
        }


def _flags(
    line: Line, due_today: int, overdue: int, *, now: datetime, today: date
) -> tuple[str, ...]:
    flags = []
    if line.admitted_at is not None:
        flags.append("admitted")
    if (
        line.discharged_at is not None
        and now - line.discharged_at <= RECENT_DISCHARGE
        and line.admitted_at is None
    ):
        flags.append("discharged")
    if line.review_due is not None and line.review_due < today:
        flags.append("review-overdue")
    if line.care_plan is None:
        flags.append("no-care-plan")
    if due_today:
        flags.append("tasks-due")
    if overdue:
        flags.append("tasks-overdue")
    return tuple(flags)


def worklist(
    session: Session, coordinator: str, *, now: datetime, flags: Sequence[str] = ()
) -> tuple[list[Entry], dict[str, int]]:
    """Every active person of ``coordinator`` by need (highest first), with flags; ``flags``
    keeps only people with all of them. Counts are over the whole caseload."""
    today = now.date()
    c, f, s = CaseRow, CaseFindingRow, PersonStateRow
    lines = [
        Line(*cast(tuple[Any, ...], row))
        for row in session.execute(
            select(
                c.person_id,
                c.patient_id,
                c.case_id,
                c.review_due,
                f.name,
                f.age,
                f.hfrs_band,
                f.cohorts,
                f.need,
                s.admitted_at,
                s.admission,
                s.discharged_at,
                s.care_plan,
            )
            .outerjoin(f, f.person_id == c.person_id)
            .outerjoin(s, s.person_id == c.person_id)
            .where(c.coordinator == coordinator, c.status == "active")
        )
    ]
    t = TaskRow
    tasks = {
        person: (int(total), int(due or 0), int(late or 0))
        for person, total, due, late in session.execute(
            select(
                t.person_id,
                func.count(),
                func.sum(case((t.due == today, 1), else_=0)),
                func.sum(case((t.due < today, 1), else_=0)),
            )
            .where(t.owner == coordinator, t.status.in_(sorted(OPEN)))
            .group_by(t.person_id)
        )
    }
    entries = []
    for line in lines:
        total, due, late = tasks.get(line.person_id, (0, 0, 0))
        entries.append(Entry(line, total, due, late, _flags(line, due, late, now=now, today=today)))
    entries.sort(key=lambda e: (-(e.line.need or 0.0), e.line.person_id))
    counts = {flag: sum(flag in e.flags for e in entries) for flag in FLAGS}
    counts["people"] = len(entries)
    wanted = set(flags)
    return [e for e in entries if wanted.issubset(e.flags)], counts

"""Outcome measures per team, aligned GP practice and month, from coordination's own rows
and the hospital's stays (read through the gateway's date index).

Caseloads are counted as at the end of the month (episodes opened before it ends and not
closed by then, with a coordinator); care plans from when each was written; reviews overdue
as at the month's end against the review dates as they stand now; follow-ups by the
discharge follow-up tasks due in the month, done on time when completed by their due date.
Emergency admissions and bed days are those of people aged 65 and over registered at the
team's practices, per 1,000 such people; the average length of stay is over their emergency
stays that ended in the month.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from coordination.alert.rules import ENGLAND, stay_of
from coordination.case_finding.facts import ADMISSION_METHOD_EXTENSION
from coordination.case_finding.models import CaseFindingRow
from coordination.case_finding.rules import admission_is_emergency
from coordination.caseload.models import CaseRow, TaskRow
from coordination.outcome.rules import Figure, Month, bed_days_within, count, mean, ratio
from coordination.team import repository as teams
from fhir_gateway.api import encounters_between

MEASURES = {
    "people_on_caseloads": "People on coordinators' caseloads at the end of the month",
    "caseload_capacity": "Caseload capacity of the team's coordinators",
    "caseload_use_percent": "Caseloads as a percentage of capacity",
    "care_plan_percent": "Percentage of people on caseloads with a shared care plan",
    "reviews_overdue": "People on caseloads whose review was overdue at the end of the month",
    "follow_ups_due": "Discharge follow-ups due in the month",
    "follow_ups_on_time_percent": "Percentage of discharge follow-ups done within two working days",
    "registered_65_plus": "Registered people aged 65 and over",
    "emergency_admissions_per_1000": "Emergency admissions per 1,000 registered people aged 65+",
    "emergency_bed_days_per_1000": "Emergency bed days per 1,000 registered people aged 65+",
    "average_length_of_stay_days": "Average length of emergency stays ending in the month (days)",
}


@dataclass(frozen=True, slots=True)
class Report:
    team_id: str
    practice: str | None  # None: the team as a whole
    month: Month
    figures: dict[str, Figure]


@dataclass
class _Tally:
    caseload: int = 0
    with_plan: int = 0
    overdue: int = 0
    follow_ups: int = 0
    on_time: int = 0
    registered: int = 0
    admissions: int = 0
    bed_days: int = 0
    stays_ended: int = 0
    stay_days: float = 0.0


def _emergency(encounter: dict[str, Any]) -> bool:
    for extension in encounter.get("extension") or ():
        if isinstance(extension, dict) and extension.get("url") == ADMISSION_METHOD_EXTENSION:
            for coding in (extension.get("valueCodeableConcept") or {}).get("coding") or ():
                if admission_is_emergency(coding.get("code")):
                    return True
    return False


def reports(
    session: Session,
    month: Month,
    *,
    hospitals: frozenset[str],
    threshold: int,
    now: datetime,
    team_ids: Iterable[str] | None = None,
) -> list[Report]:
    aligned = teams.practice_teams(session)
    wanted = (
        set(team_ids) if team_ids is not None else {t.team_id for t in teams.all_teams(session)}
    )
    tallies: dict[tuple[str, str | None], _Tally] = defaultdict(_Tally)

    def add(team_id: str | None, practice: str | None, **amounts: float) -> None:
        if team_id is None or team_id not in wanted:
            return
        for key in ((team_id, None), (team_id, practice)):
            tally = tallies[key]
            for name, amount in amounts.items():
                setattr(tally, name, getattr(tally, name) + amount)

    practices = dict(
        session.execute(select(CaseFindingRow.person_id, CaseFindingRow.practice)).all()
    )
    month_end_day = month.next_first_day
    for row in session.scalars(
        select(CaseRow).where(
            CaseRow.opened_at < month.end,
            CaseRow.coordinator.is_not(None),
        )
    ):
        if row.closed_at is not None and row.closed_at < month.end:
            continue
        practice = practices.get(row.person_id)
        add(
            row.team_id,
            practice,
            caseload=1,
            with_plan=int(row.care_plan_since is not None and row.care_plan_since < month.end),
            overdue=int(row.review_due is not None and row.review_due < month_end_day),
        )
    for task in session.scalars(
        select(TaskRow).where(
            TaskRow.code == "discharge-follow-up",
            TaskRow.due >= month.first_day,
            TaskRow.due < month_end_day,
            TaskRow.status != "cancelled",
        )
    ):
        done = (
            task.status == "completed"
            and task.due is not None
            and task.updated_at.astimezone(ENGLAND).date() <= task.due
        )
        add(task.team_id, practices.get(task.person_id or ""), follow_ups=1, on_time=int(done))
    older: dict[str, str | None] = dict(
        session.execute(
            select(CaseFindingRow.person_id, CaseFindingRow.practice).where(
                CaseFindingRow.age >= 65
            )
        ).all()
    )
    for practice in older.values():
        add(aligned.get(practice or ""), practice, registered=1)
    for person_id, source in encounters_between(session, month.start, month.end, sources=hospitals):
        practice = older.get(person_id)
        if practice is None:
            continue
        encounter = orjson.loads(source.body)
        stay = stay_of(encounter)
        if stay.kind != "inpatient" or stay.withdrawn or stay.start is None:
            continue
        if not _emergency(encounter):
            continue
        team_id = aligned.get(practice)
        began_in_month = month.start <= stay.start < month.end
        ended_in_month = stay.end is not None and month.start <= stay.end < month.end
        add(
            team_id,
            practice,
            admissions=int(began_in_month),
            bed_days=bed_days_within(stay.start, stay.end, month, now),
            stays_ended=int(ended_in_month),
            stay_days=(stay.end - stay.start).total_seconds() / 86400
            if ended_in_month and stay.end
            else 0.0,
        )
    capacities: dict[str, int] = {}
    for team_id in wanted:
        capacities[team_id] = sum(m.capacity for m in teams.members_of(session, team_id))
    result = []
    for team_id in sorted(wanted):
        keys = [(team_id, None)] + [
            (team_id, p) for p in sorted(teams.practices_of(session, team_id))
        ]
        for key in keys:
            t = tallies.get(key, _Tally())
            figures = {
                "people_on_caseloads": count(t.caseload, threshold),
                "care_plan_percent": ratio(t.with_plan, t.caseload, threshold, per=100),
                "reviews_overdue": count(t.overdue, threshold),
                "follow_ups_due": count(t.follow_ups, threshold),
                "follow_ups_on_time_percent": ratio(t.on_time, t.follow_ups, threshold, per=100),
                "registered_65_plus": count(t.registered, threshold),
                "emergency_admissions_per_1000": ratio(
                    t.admissions, t.registered, threshold, per=1000
                ),
                "emergency_bed_days_per_1000": ratio(t.bed_days, t.registered, threshold, per=1000),
                "average_length_of_stay_days": mean(t.stay_days, t.stays_ended, threshold),
            }
            if key[1] is None:
                figures["caseload_capacity"] = Figure(float(capacities[team_id]), False)
                figures["caseload_use_percent"] = (
                    Figure(None, True)
                    if figures["people_on_caseloads"].suppressed
                    else Figure(round(t.caseload / capacities[team_id] * 100, 1), False)
                    if capacities[team_id]
                    else Figure(None, False)
                )
            result.append(Report(team_id, key[1], month, figures))
    return result

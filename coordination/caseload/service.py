"""Caseloads: proposing a coordinator, opening, reassigning and closing coordination
episodes, and the team's waiting queue. Each change writes the FHIR EpisodeOfCare and the
row worklists read, in the caller's transaction."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from coordination.case_finding.models import CaseFindingRow
from coordination.caseload import rules
from coordination.caseload.fhir import episode_resource
from coordination.caseload.models import CaseRow
from coordination.task import service as tasks
from coordination.team import repository as teams
from coordination.team.service import require_team
from fhir_gateway.api import (
    Conflict,
    NotFound,
    Unprocessable,
    format_instant,
    new_id,
    source_uri,
    update,
)

OPEN_STATUSES = ("referred", "waiting", "active")
REVIEW_EVERY = timedelta(days=90)
HANDOVER_DAYS = 5


def loads(session: Session, team_id: str) -> list[rules.CoordinatorLoad]:
    """The team's coordinators (and leads who carry a caseload) with their active caseloads."""
    counts = dict(
        session.execute(
            select(CaseRow.coordinator, func.count())
            .where(CaseRow.team_id == team_id, CaseRow.status == "active")
            .group_by(CaseRow.coordinator)
        ).all()
    )
    return [
        rules.CoordinatorLoad(
            m.practitioner, m.discipline, m.capacity, int(counts.get(m.practitioner, 0))
        )
        for m in teams.members_of(session, team_id)
        if m.capacity > 0
    ]


def _conditions(row: CaseFindingRow | None) -> list[str]:
    if row is None:
        return []
    explanation = orjson.loads(row.explanation)
    contributions = (explanation.get("longTermConditions") or {}).get("contributions") or []
    return [str(c["key"]) for c in contributions]


def needs_of(row: CaseFindingRow | None) -> rules.Needs:
    if row is None:
        return rules.Needs((), ())
    return rules.needs_from(
        conditions=_conditions(row),
        social_care_services=row.services,
        hfrs_band=row.hfrs_band,
        emergency_admissions=row.emergency_admissions,
    )


def last_coordinator(session: Session, person_id: str, team_id: str) -> str | None:
    return session.scalar(
        select(CaseRow.coordinator)
        .where(
            CaseRow.person_id == person_id,
            CaseRow.team_id == team_id,
            CaseRow.coordinator.is_not(None),
        )
        .order_by(CaseRow.updated_at.desc())
        .limit(1)
    )


def open_case_of(session: Session, person_id: str) -> CaseRow | None:
    return session.scalar(
        select(CaseRow).where(CaseRow.person_id == person_id, CaseRow.status.in_(OPEN_STATUSES))
    )


@dataclass(frozen=True, slots=True)
class Offer:
    """A person the team could take on, with the coordinator proposed and why."""

    person_id: str
    patient_id: str | None
    name: str | None
    need: float
    route: str
    case_id: str | None  # set for people already waiting in the queue
    proposal: rules.Proposal

    def as_json(self) -> dict[str, Any]:
        return {
            "person": f"Person/{self.person_id}",
            "patient": f"Patient/{self.patient_id}" if self.patient_id else None,
            "name": self.name,
            "route": self.route,
            "case": f"EpisodeOfCare/{self.case_id}" if self.case_id else None,
            "proposedCoordinator": f"Practitioner/{self.proposal.coordinator}"
            if self.proposal.coordinator
            else None,
            "waiting": self.proposal.waiting,
            "reasons": list(self.proposal.reasons),
        }


def offers(session: Session, team_id: str, *, limit: int, exclude: frozenset[str]) -> list[Offer]:
    """Referrals and the queue first (people referred, and people the team accepted who wait
    for room), then people found by
    case-finding with no open episode, each by need; proposals are made one after another as
    if each were confirmed, so the load is balanced across the list."""
    require_team(session, team_id)
    pool = loads(session, team_id)
    queued = session.scalars(
        select(CaseRow)
        .where(CaseRow.team_id == team_id, CaseRow.status.in_(("referred", "waiting")))
        .order_by(CaseRow.need.desc(), CaseRow.case_id)
        .limit(limit)
    ).all()
    c = CaseFindingRow
    open_people = select(CaseRow.person_id).where(CaseRow.status.in_(OPEN_STATUSES))
    found = session.scalars(
        select(c)
        .where(c.team_id == team_id, c.found.is_(True), c.person_id.not_in(open_people))
        .order_by(c.need.desc(), c.person_id)
        .limit(limit + len(exclude))
    ).all()
    scored = {
        r.person_id: r
        for r in session.scalars(select(c).where(c.person_id.in_([q.person_id for q in queued])))
    }
    candidates: list[
        tuple[str, str | None, str | None, float, str, str | None, CaseFindingRow | None]
    ] = [
        (
            q.person_id,
            q.patient_id,
            scored[q.person_id].name if q.person_id in scored else None,
            q.need,
            q.route,
            q.case_id,
            scored.get(q.person_id),
        )
        for q in queued
    ] + [(r.person_id, r.patient_id, r.name, r.need, "case-finding", None, r) for r in found]
    result: list[Offer] = []
    for person_id, patient_id, name, need, route, case_id, row in candidates:
        if person_id in exclude:
            continue
        if len(result) >= limit:
            break
        proposal = rules.propose(
            needs_of(row), pool, current=last_coordinator(session, person_id, team_id)
        )
        result.append(Offer(person_id, patient_id, name, need, route, case_id, proposal))
        if proposal.coordinator:
            pool = [
                rules.CoordinatorLoad(p.practitioner, p.discipline, p.capacity, p.caseload + 1)
                if p.practitioner == proposal.coordinator
                else p
                for p in pool
            ]
    return result


def _write_episode(session: Session, row: CaseRow, *, host: str, now: datetime) -> None:
    status = {
        "referred": "planned",
        "waiting": "waitlist",
        "active": "active",
        "closed": "finished",
    }[row.status]
    resource = episode_resource(
        row.case_id,
        patient_id=row.patient_id,
        team_id=row.team_id,
        host=host,
        coordinator=row.coordinator,
        status=status,
        start=format_instant(row.opened_at),
        end=format_instant(row.closed_at) if row.closed_at else None,
        referral=row.referral,
    )
    resource["meta"] = {"source": source_uri(host)}
    update(session, "EpisodeOfCare", row.case_id, resource, now=now)


def open_case(
    session: Session,
    *,
    person_id: str,
    patient_id: str,
    team_id: str,
    coordinator: str | None,
    route: str,
    now: datetime,
) -> CaseRow:
    """The team takes the person on: with ``coordinator`` (the lead's choice), else the
    proposal, else into the queue when nobody has room."""
    team = require_team(session, team_id)
    if open_case_of(session, person_id) is not None:
        raise Conflict("This person already has an open coordination episode")
    finding = session.get(CaseFindingRow, person_id)
    pool = loads(session, team_id)
    if coordinator is not None:
        if coordinator not in {p.practitioner for p in pool}:
            raise Unprocessable(f"{coordinator} is not a coordinator of team {team_id}")
        reason: dict[str, Any] = {"chosenBy": "team lead", "reasons": ["chosen by the team lead"]}
    else:
        proposal = rules.propose(
            needs_of(finding), pool, current=last_coordinator(session, person_id, team_id)
        )
        coordinator = proposal.coordinator
        reason = {"chosenBy": "proposal", "reasons": list(proposal.reasons)}
    row = CaseRow(
        case_id=new_id(),
        person_id=person_id,
        patient_id=patient_id,
        team_id=team_id,
        coordinator=coordinator,
        status="active" if coordinator else "waiting",
        route=route,
        need=finding.need if finding is not None else 0.0,
        reason=orjson.dumps(reason).decode(),
        opened_at=now,
        updated_at=now,
        review_due=(now + REVIEW_EVERY).date() if coordinator else None,
    )
    session.add(row)
    session.flush()
    _write_episode(session, row, host=team.host, now=now)
    return row


def session_finding(session: Session, person_id: str) -> CaseFindingRow | None:
    """The person's case-finding row (every registered person has one, found or not)."""
    return session.get(CaseFindingRow, person_id)


def require_case(session: Session, case_id: str) -> CaseRow:
    row = session.get(CaseRow, case_id)
    if row is None:
        raise NotFound(f"There is no coordination episode '{case_id}'")
    return row


def assign(session: Session, row: CaseRow, coordinator: str | None, *, now: datetime) -> CaseRow:
    """Give a referred or waiting person a coordinator (the lead's choice, else the proposal;
    with nobody's room they wait in the queue), or hand an active one over to another
    coordinator (which raises a handover task for the new one)."""
    if row.status not in OPEN_STATUSES:
        raise Conflict("This coordination episode is closed")
    pool = loads(session, row.team_id)
    if coordinator is None:
        if row.status == "active":
            raise Unprocessable("Name the coordinator to hand this person over to")
        finding = session.get(CaseFindingRow, row.person_id)
        proposal = rules.propose(
            needs_of(finding), pool, current=last_coordinator(session, row.person_id, row.team_id)
        )
        row.reason = orjson.dumps(
            {"chosenBy": "proposal", "reasons": list(proposal.reasons)}
        ).decode()
        if proposal.coordinator is None:
            row.status, row.updated_at = "waiting", now
            _write_episode(session, row, host=require_team(session, row.team_id).host, now=now)
            return row
        coordinator = proposal.coordinator
    elif coordinator not in {p.practitioner for p in pool}:
        raise Unprocessable(f"{coordinator} is not a coordinator of team {row.team_id}")
    else:
        row.reason = orjson.dumps(
            {"chosenBy": "team lead", "reasons": ["chosen by the team lead"]}
        ).decode()
    if coordinator == row.coordinator:
        return row
    previous = row.coordinator
    row.coordinator, row.status, row.updated_at = coordinator, "active", now
    row.review_due = row.review_due or (now + REVIEW_EVERY).date()
    team = require_team(session, row.team_id)
    _write_episode(session, row, host=team.host, now=now)
    if previous is not None:
        tasks.raise_task(
            session,
            kind="handover",
            person_id=row.person_id,
            patient_id=row.patient_id,
            team_id=row.team_id,
            owner=coordinator,
            due=now.date() + timedelta(days=HANDOVER_DAYS),
            now=now,
            description=f"Handover from {previous}: read the care plan and contact the person",
            focus=f"EpisodeOfCare/{row.case_id}",
        )
    session.flush()
    return row


def refer(
    session: Session,
    *,
    person_id: str,
    patient_id: str,
    team_id: str,
    referrer: str | None,
    referrer_organisation: str,
    reason: str,
    now: datetime,
) -> CaseRow:
    """A clinician refers the person to the team aligned with their practice: a FHIR
    ServiceRequest (the referrer's record) and a planned episode the team lead decides on."""
    team = require_team(session, team_id)
    if open_case_of(session, person_id) is not None:
        raise Conflict("This person already has an open coordination episode with the team")
    request_id = new_id()
    referral: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": request_id,
        "meta": {"source": source_uri(referrer_organisation)},
        "status": "active",
        "intent": "order",
        "code": {
            "coding": [
                {
                    "system": "https://fhir.carejoin.example/CodeSystem/episode-type",
                    "code": "care-coordination",
                    "display": "Care coordination by an integrated team",
                }
            ]
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": format_instant(now),
        "performer": [{"reference": f"Organization/{team_id}"}],
        "reasonCode": [{"text": reason}],
    }
    if referrer:
        referral["requester"] = {"reference": referrer}
    update(session, "ServiceRequest", request_id, referral, now=now)
    finding = session.get(CaseFindingRow, person_id)
    row = CaseRow(
        case_id=new_id(),
        person_id=person_id,
        patient_id=patient_id,
        team_id=team_id,
        coordinator=None,
        status="referred",
        route="referral",
        referral=f"ServiceRequest/{request_id}",
        need=finding.need if finding is not None else 0.0,
        reason=orjson.dumps(
            {"referral": f"ServiceRequest/{request_id}", "reasons": [reason]}
        ).decode(),
        opened_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    _write_episode(session, row, host=team.host, now=now)
    return row


def close(session: Session, row: CaseRow, *, now: datetime) -> CaseRow:
    if row.status == "closed":
        return row
    row.status, row.closed_at, row.updated_at = "closed", now, now
    team = require_team(session, row.team_id)
    _write_episode(session, row, host=team.host, now=now)
    session.flush()
    return row


def set_review(session: Session, row: CaseRow, review_due: date, *, now: datetime) -> CaseRow:
    row.review_due, row.updated_at = review_due, now
    session.flush()
    return row


def case_json(row: CaseRow) -> dict[str, Any]:
    return {
        "id": row.case_id,
        "episodeOfCare": f"EpisodeOfCare/{row.case_id}",
        "person": f"Person/{row.person_id}",
        "patient": f"Patient/{row.patient_id}",
        "team": f"Organization/{row.team_id}",
        "coordinator": f"Practitioner/{row.coordinator}" if row.coordinator else None,
        "status": row.status,
        "route": row.route,
        "reason": orjson.loads(row.reason),
        "opened": format_instant(row.opened_at),
        "reviewDue": row.review_due.isoformat() if row.review_due else None,
        "closed": format_instant(row.closed_at) if row.closed_at else None,
    }

"""Case-finding over the registered population: gather each person's facts from the
joined-up record, score them (``rules``), match the cohorts (``cohorts``), keep the result.

The same path serves the people whose records just changed (queued by the outbox consumer,
re-scored in bulk by the dispatcher's deferred work) and the whole population (``carejoin
casefind``), in chunks of persons.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import orjson
from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from consent.agreements import Agreement
from coordination.case_finding import cohorts as cohort_rules
from coordination.case_finding import explain
from coordination.case_finding.facts import TYPES, Kinds, person_from_rows
from coordination.case_finding.models import CaseFindingRow, RescoreRow
from coordination.case_finding.rules import ScoringSettings, assess
from coordination.settings import CoordinationSettings
from coordination.team import repository as teams
from fhir_gateway.api import Registration, records_of, registrations


@dataclass(frozen=True, slots=True)
class Population:
    """What a run needs besides the records: who is which kind of party, which team each
    practice is aligned with, and the cohort rules."""

    kinds: Kinds
    gp_practices: frozenset[str]
    practice_teams: dict[str, str]
    cohorts: cohort_rules.CohortRules
    scoring: ScoringSettings
    never_share: frozenset[str] = frozenset()


def population(
    session: Session, agreement: Agreement, settings: CoordinationSettings
) -> Population:
    def of_kind(kind: str) -> frozenset[str]:
        return frozenset(p.ods for p in agreement.parties.values() if p.kind == kind)

    return Population(
        kinds=Kinds(hospitals=of_kind("hospital"), social_care=of_kind("social-care")),
        gp_practices=of_kind("gp"),
        practice_teams=teams.practice_teams(session),
        cohorts=cohort_rules.default_cohorts(),
        scoring=ScoringSettings(
            hfrs_lookback_years=settings.hfrs_lookback_years,
            charlson_lookback_years=settings.charlson_lookback_years,
            emergency_months=settings.emergency_months,
        ),
        never_share=agreement.never_share,
    )


def assess_registered(
    session: Session,
    found: Sequence[Registration],
    *,
    population: Population,
    as_of: date,
    now: datetime,
) -> int:
    """Assess these registered persons and replace their results; returns how many."""
    if not found:
        return 0
    kinds = population.kinds
    rows = records_of(
        session,
        [r.person_id for r in found],
        types=TYPES,
        only_from={
            "Encounter": kinds.hospitals,
            "EpisodeOfCare": kinds.social_care,
            "ServiceRequest": kinds.social_care,
        },
    )
    values = []
    for registration in found:
        # What the agreement never shares (beyond the organisation that recorded it) plays
        # no part in scores that a team sees.
        usable = [
            row
            for row in rows[registration.person_id]
            if not population.never_share.intersection((row.sensitivity or "").split())
        ]
        person = person_from_rows(registration.person_id, registration.patient_id, usable, kinds)
        assessment = assess(person.record, as_of=as_of, settings=population.scoring)
        matched = cohort_rules.matching_cohorts(assessment, population.cohorts)
        summary = explain.summary(assessment)
        values.append(
            {
                "person_id": registration.person_id,
                "patient_id": registration.patient_id,
                "practice": registration.practice,
                "team_id": population.practice_teams.get(registration.practice),
                "name": (person.name or "")[:255] or None,
                "birth_date": person.record.birth_date.isoformat()
                if person.record.birth_date
                else None,
                **summary.columns,
                "cohorts": " ".join(c.code for c in matched)[:512],
                "found": bool(matched),
                "need": summary.need,
                "explanation": orjson.dumps(summary.explanation).decode(),
                "labels": " ".join(sorted(assessment.labels)) or None,
                "computed_at": now,
            }
        )
    ids = [r.person_id for r in found]
    session.execute(delete(CaseFindingRow).where(CaseFindingRow.person_id.in_(ids)))
    session.execute(insert(CaseFindingRow), values)
    return len(values)


@dataclass(frozen=True, slots=True)
class RunReport:
    persons: int
    found: int
    removed: int


def run(
    factory: sessionmaker[Session],
    agreement: Agreement,
    settings: CoordinationSettings,
    *,
    as_of: date,
    now: datetime,
    chunk: int = 500,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int], None] | None = None,
) -> RunReport:
    """Case-finding for the whole registered population, each chunk in its own transaction;
    results of persons no longer registered are removed at the end."""
    with factory.begin() as session:
        pop = population(session, agreement, settings)
        everyone = registrations(session, gp_practices=pop.gp_practices, now=now)
    if total is not None:
        total(len(everyone))
    for start in range(0, len(everyone), chunk):
        part = everyone[start : start + chunk]
        with factory.begin() as session:
            assess_registered(session, part, population=pop, as_of=as_of, now=now)
        if progress is not None:
            progress(len(part))
    with factory.begin() as session:
        # Anyone scored before this run began and not re-scored by it has left.
        stale = CaseFindingRow.computed_at < now
        removed = len(session.scalars(select(CaseFindingRow.person_id).where(stale)).all())
        session.execute(delete(CaseFindingRow).where(stale))
        found = len(
            session.scalars(
                select(CaseFindingRow.person_id).where(CaseFindingRow.found.is_(True))
            ).all()
        )
    return RunReport(persons=len(everyone), found=found, removed=removed)


def queue(session: Session, person_id: str, *, now: datetime) -> None:
    """Mark a person for re-scoring (idempotent; safe when several dispatchers race)."""
    values = {"person_id": person_id, "queued_at": now}
    if session.get_bind().dialect.name == "postgresql":
        session.execute(postgresql.insert(RescoreRow).values(values).on_conflict_do_nothing())
    else:
        session.execute(sqlite.insert(RescoreRow).values(values).on_conflict_do_nothing())


def rescore_queued(
    session: Session,
    *,
    population: Population,
    now: datetime,
    limit: int = 200,
) -> int:
    """Re-score up to ``limit`` queued persons in bulk (oldest first); returns how many."""
    stmt = select(RescoreRow.person_id).order_by(RescoreRow.queued_at).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    people = list(session.scalars(stmt))
    if not people:
        return 0
    session.execute(delete(RescoreRow).where(RescoreRow.person_id.in_(people)))
    found = registrations(session, gp_practices=population.gp_practices, now=now, person_ids=people)
    registered = {r.person_id for r in found}
    gone = [p for p in people if p not in registered]
    if gone:
        session.execute(delete(CaseFindingRow).where(CaseFindingRow.person_id.in_(gone)))
    assess_registered(session, found, population=population, as_of=now.date(), now=now)
    return len(people)

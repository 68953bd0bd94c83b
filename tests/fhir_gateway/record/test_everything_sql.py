"""``$everything``'s PostgreSQL statements return exactly what ``decide`` permits.

On PostgreSQL ``$everything`` runs two statements of its own (``record.everything``: the
person's facts, then one statement for the patient check, the page, the total, the withheld
notice and the audit insert), not the store's queries that the SQLite path and the consent
property tests use. Random worlds (``tests.fhir_gateway.access.worlds``) are written in the
test's transaction; for every caller and every source patient, the record the statements
return, page by page, must be the person's resources ``decide`` permits (404 when the
patient itself is not permitted), the total and the withheld notice must agree, and one
AuditEvent per person released must be written by the same statement.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.context import AccessContext, CallerKind
from consent.visibility import Predicate, decide, in_scope, visibility
from fhir_gateway.audit.models import AuditEventRow
from fhir_gateway.outcomes import NotFound
from fhir_gateway.record.everything import EverythingQuery, in_session
from fhir_gateway.store.reads import ReadAccess
from tests.fhir_gateway.access.worlds import (
    NOW,
    World,
    describe,
    facts_for,
    parse,
    read_access,
    worlds,
    write_world,
)

PROPERTY = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _check(session: Session, world: World) -> list[str]:
    """Every disagreement between the statements and ``decide`` in ``world``."""
    agreement = parse(world)
    problems: list[str] = []
    savepoint = session.begin_nested()
    try:
        write_world(session, world)
        stored = world.stored()
        sealed = {d.item for d in world.directives if d.decision == "deny" and d.item}
        for n, caller in enumerate(world.callers):
            predicate = visibility(caller, agreement, sensitive_categories=world.sensitive)

            def permitted(resource: object, caller: AccessContext = caller) -> bool:
                return decide(
                    caller,
                    facts_for(world, resource),  # type: ignore[arg-type]
                    agreement,
                    sensitive_categories=world.sensitive,
                    now=NOW,
                )

            for patient_id in sorted(world.patients):
                who = f"{describe(caller)} on {patient_id}"
                mine = world.person_patients(patient_id)
                theirs = [r for r in stored if r.patient in mine]
                expected = {r.key for r in theirs if permitted(r)}
                anchor = next(r for r in stored if r.key == f"Patient/{patient_id}")
                told = caller.kind is not CallerKind.PATIENT
                withheld = told and any(
                    r.source is not None
                    and r.resource_type != "Consent"
                    and r.key not in sealed
                    and not permitted(r)
                    # What the caller's scopes did not ask for is not withheld from them.
                    and in_scope(caller, facts_for(world, r))
                    for r in theirs
                )
                marker = f"/fhir/hv-{n}-{patient_id}"

                def access(
                    query: str, caller: AccessContext = caller, predicate: Predicate = predicate
                ) -> ReadAccess:
                    return read_access(caller, predicate, query, interaction="$everything")

                # Page through two at a time, then the whole record at once.
                got: list[str] = []
                cursor: int | None = None
                try:
                    while True:
                        query = EverythingQuery(
                            patient_id=patient_id, count=2, cursor=cursor, tell_withheld=told
                        )
                        result = in_session(session, query, access(marker + "/paged"))
                        got.extend(
                            f"{r.resource_type}/{r.resource_id}" for r in result.page.resources
                        )
                        if result.page.total != len(expected):
                            problems.append(
                                f"{who}: total {result.page.total}, not {len(expected)}"
                            )
                        if cursor is None and result.withheld != withheld:
                            problems.append(f"{who}: withheld {result.withheld}, not {withheld}")
                        cursor = result.page.next_cursor
                        if cursor is None:
                            break
                    whole = in_session(
                        session,
                        EverythingQuery(patient_id=patient_id, count=100, tell_withheld=told),
                        access(marker),
                    )
                except NotFound:
                    if permitted(anchor):
                        problems.append(f"{who}: 404, but the patient is permitted")
                    elif session.scalar(
                        select(AuditEventRow.pk).where(AuditEventRow.query.startswith(marker))
                    ):
                        problems.append(f"{who}: a 404 wrote a success AuditEvent")
                    continue
                if not permitted(anchor):
                    problems.append(f"{who}: answered, but the patient is not permitted")
                if len(got) != len(set(got)) or set(got) != expected:
                    leaked, hidden = sorted(set(got) - expected), sorted(expected - set(got))
                    problems.append(f"{who}, paged: leaked {leaked}, over-hidden {hidden}")
                whole_keys = {f"{r.resource_type}/{r.resource_id}" for r in whole.page.resources}
                if whole_keys != expected:
                    problems.append(f"{who}, one page: {sorted(whole_keys)} not {sorted(expected)}")
                # One event per person released, per call; one for nobody when nothing is.
                persons = session.scalars(
                    select(AuditEventRow.person).where(AuditEventRow.query == marker)
                ).all()
                released = {r.patient for r in theirs if r.key in expected}
                person_of = {
                    p: (f"Person/{world.patients[p]}" if world.patients[p] else f"Patient/{p}")
                    for p in released
                    if p is not None
                }
                expected_persons: list[str | None] = [*sorted(set(person_of.values()))] or [None]
                if sorted(persons, key=str) != expected_persons:
                    problems.append(f"{who}: audited {persons}, not {expected_persons}")
        return problems
    finally:
        savepoint.rollback()


@PROPERTY
@given(world=worlds())
def test_random_worlds_statements_and_reference_agree(session: Session, world: World) -> None:
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("the statements are PostgreSQL's; SQLite runs the store's queries")
    assert _check(session, world) == []


@PROPERTY
@given(world=worlds(generous=True))
def test_generous_worlds_statements_and_reference_agree(session: Session, world: World) -> None:
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("the statements are PostgreSQL's; SQLite runs the store's queries")
    assert _check(session, world) == []

"""The read by id's PostgreSQL statements return exactly what ``decide`` permits.

On PostgreSQL a read by id runs a statement of its own (``store.reads``: consent's predicate
tested on the row found by its key, the AuditEvent inserted by the same statement), and one
caller's concurrent reads run as one grouped statement; the SQLite path and the consent
property tests use the store's queries instead. Random worlds
(``tests.fhir_gateway.access.worlds``) are written in the test's transaction; for every
caller, every stored resource (and one that does not exist) is read both ways, alone and all
in one group, and each must be found exactly when ``decide`` permits it, with one
AuditEvent per resource released, naming its person and its own read. Then the reads of
every caller, and of a colleague of each user (the same organisation, role and purpose, the
other practitioner), go grouped as the reader groups them (by the shape of their predicates
and their shared audit values), many callers' reads in one statement: each read must still
find exactly what ``decide`` permits its own caller, audited as its own caller's.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, cast

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from psycopg.rows import namedtuple_row
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.agreements import Agreement
from consent.context import AccessContext, CallerKind
from consent.visibility import Predicate, decide, visibility
from fhir_gateway.audit.models import AuditEventRow
from fhir_gateway.store.reads import (
    _compiled,
    _params,
    group_answers,
    group_read,
    group_statement,
)
from tests.fhir_gateway.access.worlds import (
    NOW,
    USERS,
    World,
    describe,
    facts_for,
    parse,
    read_access,
    worlds,
    write_world,
)

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@contextmanager
def _world_written(
    session: Session, world: World
) -> Iterator[tuple[list[Any], "psycopg.Connection[Any]", list[tuple[str, str]]]]:
    """``world`` written in a savepoint of the test's transaction, rolled back after: its
    stored resources, the driver's connection, and the keys to read (every stored resource,
    and one that does not exist)."""
    savepoint = session.begin_nested()
    try:
        write_world(session, world)
        stored = world.stored()
        driver = cast(psycopg.Connection[Any], session.connection().connection.driver_connection)
        asked = [(r.resource_type, r.resource_id) for r in stored]
        asked.append(("Patient", "hv-no-such-patient"))
        yield stored, driver, asked
    finally:
        savepoint.rollback()


def _permitted(
    world: World, agreement: Agreement, stored: list[Any], caller: AccessContext, key: str
) -> bool:
    """``decide``'s answer for ``caller`` reading ``key`` (False for a resource not stored)."""
    found = [r for r in stored if r.key == key]
    return bool(found) and decide(
        caller,
        facts_for(world, found[0]),
        agreement,
        sensitive_categories=world.sensitive,
        now=NOW,
    )


def _check(session: Session, world: World) -> list[str]:
    """Every disagreement between the read statements and ``decide`` in ``world``."""
    agreement = parse(world)
    problems: list[str] = []
    with _world_written(session, world) as (stored, driver, asked):
        for n, caller in enumerate(world.callers):
            predicate = visibility(caller, agreement, sensitive_categories=world.sensitive)

            expected = {
                f"{t}/{i}"
                for t, i in asked
                if _permitted(world, agreement, stored, caller, f"{t}/{i}")
            }
            marker = f"/fhir/hv-read-{n}"
            with psycopg.RawCursor(driver, row_factory=namedtuple_row) as cursor:
                alone = _compiled("current", predicate)
                found_alone = set()
                for k, (kind, ident) in enumerate(asked):
                    given = _params(
                        read_access(caller, predicate, f"{marker}/alone/{k}"),
                        resource_type=kind,
                        resource_id=ident,
                    )
                    row = cursor.execute(alone.sql, alone.bind(given)).fetchone()
                    if row is not None:
                        found_alone.add(f"{row.resource_type}/{row.resource_id}")
                reads = [
                    (
                        NOW,
                        group_read(
                            read_access(caller, predicate, f"{marker}/group/{k}"),
                            resource_type=kind,
                            resource_id=ident,
                        )[2],
                    )
                    for k, (kind, ident) in enumerate(asked)
                ]
                sql, values = group_statement(predicate, reads)
                answers = group_answers(cursor.execute(sql, values).fetchall(), len(reads))
            who = describe(caller)
            for way, found in (
                ("alone", found_alone),
                (
                    "grouped",
                    {f"{a.resource_type}/{a.resource_id}" for a in answers if a is not None},
                ),
            ):
                if found != expected:
                    problems.append(
                        f"{who}, {way}: leaked {sorted(found - expected)}, "
                        f"over-hidden {sorted(expected - found)}"
                    )
            for k, ((kind, ident), answer) in enumerate(zip(asked, answers, strict=True)):
                if answer is not None and (answer.resource_type, answer.resource_id) != (
                    kind,
                    ident,
                ):
                    problems.append(f"{who}: read {k} of {kind}/{ident} got {answer}")
            # One AuditEvent per read that released a resource, naming its person.
            for way in ("alone", "group"):
                audited = session.execute(
                    select(AuditEventRow.query, AuditEventRow.resource, AuditEventRow.person).where(
                        AuditEventRow.query.startswith(f"{marker}/{way}/")
                    )
                ).all()
                by_key = {f"{t}/{i}": k for k, (t, i) in enumerate(asked)}
                want = {
                    (
                        f"{marker}/{way}/{by_key[key]}",
                        key,
                        _person_of(world, next(r for r in stored if r.key == key).patient),
                    )
                    for key in expected
                }
                if set(audited) != want or len(audited) != len(want):
                    problems.append(f"{who}, {way}: audited {sorted(audited)} not {sorted(want)}")
        return problems


def _check_mixed(session: Session, world: World) -> list[str]:
    """Every disagreement with ``decide`` when the reads of all of ``world``'s callers, and of
    a colleague of each user, go grouped as the reader groups them."""
    agreement = parse(world)
    problems: list[str] = []
    with _world_written(session, world) as (stored, driver, asked):
        callers = list(world.callers)
        for caller in world.callers:
            if caller.kind is CallerKind.USER and caller.user is not None:
                other = next(u for u in USERS if u != caller.user)
                callers.append(replace(caller, subject=f"{caller.subject}-colleague", user=other))
        # The reads of each lane: (caller number, read number, its params), by lane key.
        lanes: dict[tuple[Any, ...], list[tuple[int, int, dict[str, Any]]]] = {}
        predicates: dict[int, Predicate] = {}
        for n, caller in enumerate(callers):
            predicate = visibility(caller, agreement, sensitive_categories=world.sensitive)
            predicates[n] = predicate
            for k, (kind, ident) in enumerate(asked):
                key, _shape, params = group_read(
                    read_access(caller, predicate, f"/fhir/hv-mixed-{n}/{k}"),
                    resource_type=kind,
                    resource_id=ident,
                )
                lanes.setdefault(key, []).append((n, k, params))
        answers: dict[tuple[int, int], str | None] = {}
        with psycopg.RawCursor(driver, row_factory=namedtuple_row) as cursor:
            for reads in lanes.values():
                sql, values = group_statement(
                    predicates[reads[0][0]], [(NOW, params) for _n, _k, params in reads]
                )
                found = group_answers(cursor.execute(sql, values).fetchall(), len(reads))
                for (n, k, _params_of), answer in zip(reads, found, strict=True):
                    answers[(n, k)] = (
                        None if answer is None else f"{answer.resource_type}/{answer.resource_id}"
                    )
        audited = {
            (row.query, row.resource, row.agent)
            for row in session.execute(
                select(AuditEventRow.query, AuditEventRow.resource, AuditEventRow.agent).where(
                    AuditEventRow.query.startswith("/fhir/hv-mixed-")
                )
            )
        }
        want_audited = set()
        for n, caller in enumerate(callers):
            for k, (kind, ident) in enumerate(asked):
                key = f"{kind}/{ident}"
                permitted = _permitted(world, agreement, stored, caller, key)
                if answers[(n, k)] != (key if permitted else None):
                    problems.append(
                        f"{describe(caller)} in a mixed group: {key} gave {answers[(n, k)]}, "
                        f"permitted {permitted}"
                    )
                if permitted:
                    agent = caller.user or caller.client_id or caller.subject
                    want_audited.add((f"/fhir/hv-mixed-{n}/{k}", key, agent))
        if audited != want_audited:
            problems.append(
                f"mixed groups audited {sorted(audited - want_audited)} extra, "
                f"{sorted(want_audited - audited)} missing"
            )
        return problems


def _person_of(world: World, patient: str | None) -> str | None:
    if patient is None:
        return None
    person = world.patients.get(patient)
    return f"Person/{person}" if person else f"Patient/{patient}"


@PROPERTY
@given(world=worlds())
def test_random_worlds_read_statements_and_reference_agree(session: Session, world: World) -> None:
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("the statements are PostgreSQL's; SQLite runs the store's queries")
    assert _check(session, world) == []
    assert _check_mixed(session, world) == []


@PROPERTY
@given(world=worlds(generous=True))
def test_generous_worlds_read_statements_and_reference_agree(
    session: Session, world: World
) -> None:
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("the statements are PostgreSQL's; SQLite runs the store's queries")
    assert _check(session, world) == []
    assert _check_mixed(session, world) == []

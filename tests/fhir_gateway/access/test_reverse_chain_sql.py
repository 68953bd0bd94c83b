"""Reverse chaining (``_has``) finds a resource only through referring resources the caller
may see, on both databases.

``Patient?_has:Observation:patient:_id=...`` must return exactly the Patients that ``decide``
lets the caller see and that some Observation of those ids, which ``decide`` also lets the
caller see, refers to: a hidden Observation must never single out the person it is about, and
a visible one must always be found. Random worlds (``worlds.py``) are written with a
reference from each record to its patient, as the store's index holds it.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert
from sqlalchemy.orm import Session

from consent.agreements import Agreement
from consent.context import AccessContext
from consent.visibility import decide, visibility
from fhir_gateway.search.params import parse_search
from fhir_gateway.search.storage import stored
from fhir_gateway.store import service
from fhir_gateway.store.models import search_reference
from fhir_gateway.store.visibility import compile_visibility
from tests.fhir_gateway.access.worlds import NOW, World, facts_for, parse, worlds, write_world

BASE = "http://testserver/fhir"
# Record types of the worlds with a ``patient`` reference parameter.
REFERRING = ("Condition", "Observation", "Encounter", "CarePlan", "MedicationRequest", "Consent")


def _references(session: Session, world: World, by_key: dict[str, int]) -> None:
    """Each record's reference to its patient, under the row its ``patient`` parameter reads
    (``Observation.patient`` is the ``subject`` rows that point at a Patient)."""
    rows = [
        {
            "resource_pk": by_key[r.key],
            "resource_type": r.resource_type,
            "param": stored(r.resource_type, "patient").params[0],
            "target_type": "Patient",
            "target_id": r.patient,
            "url": None,
        }
        for r in world.stored()
        if r.resource_type in REFERRING and r.patient is not None
    ]
    if rows:
        session.execute(insert(search_reference), rows)


def _permitted(world: World, caller: AccessContext, agreement: Agreement, key: str) -> bool:
    resource = next(r for r in world.stored() if r.key == key)
    return decide(
        caller,
        facts_for(world, resource),
        agreement,
        sensitive_categories=world.sensitive,
        now=NOW,
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(world=worlds(), data=st.data())
def test_has_finds_patients_only_through_what_the_caller_may_see(
    session: Session, world: World, data: st.DataObject
) -> None:
    referring = data.draw(st.sampled_from(REFERRING))
    ids = sorted({r.resource_id for r in world.resources if r.resource_type == referring})
    asked = data.draw(st.lists(st.sampled_from(ids), min_size=1, unique=True)) if ids else []
    asked = asked or ["hv-none"]
    agreement = parse(world)
    savepoint = session.begin_nested()
    try:
        _references(session, world, write_world(session, world))
        session.flush()
        request = parse_search(
            "Patient",
            [(f"_has:{referring}:patient:_id", ",".join(asked)), ("_count", "100")],
            strict=True,
            default_count=100,
            max_count=100,
        )
        for caller in world.callers:
            predicate = visibility(caller, agreement, sensitive_categories=world.sensitive)

            expected = {
                f"Patient/{r.patient}"
                for r in world.stored()
                if r.resource_type == referring
                and r.resource_id in asked
                and r.patient is not None
                and _permitted(world, caller, agreement, r.key)
                and _permitted(world, caller, agreement, f"Patient/{r.patient}")
            }
            found = service.search(
                session,
                request,
                base_url=BASE,
                visible_on=lambda row, p=predicate: compile_visibility(p, now=NOW, row=row),
            )
            got = {f"{s.resource_type}/{s.resource_id}" for s in found.page.resources}
            assert got == expected, (caller, referring, asked)
            assert found.page.total == len(expected)
    finally:
        savepoint.rollback()

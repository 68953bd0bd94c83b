"""A batch of new resources large enough for the bulk statements (COPY on PostgreSQL) is
written exactly as a small one: keys, history, index rows and outbox events; a new id that
was stored first by someone else is a 409 with nothing of the batch written."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fhir_gateway.outcomes import Conflict
from fhir_gateway.search.params import parse_search
from fhir_gateway.store import repository, service
from fhir_gateway.store.models import (
    INDEX_TABLES,
    HistoryRow,
    OutboxRow,
    ResourceRow,
    search_reference,
)
from tests.factories import fhir

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
MANY = repository.COPY_THRESHOLD + 8


def _new(resource: dict[str, object]) -> repository.PendingWrite:
    return service.prepare_write(
        resource,
        resource_id=str(resource["id"]),
        version_id=1,
        now=NOW,
        method="PUT",
        existing_pk=None,
    )


def _batch(prefix: str) -> list[repository.PendingWrite]:
    writes = [_new(fhir.patient(id=f"{prefix}-p", nhs_number=None))]
    writes += [
        _new(fhir.observation(id=f"{prefix}-o{i}", patient_id=f"{prefix}-p", value=60 + i))
        for i in range(MANY)
    ]
    return writes


def _rows(
    session: Session, table: type[ResourceRow] | type[HistoryRow] | type[OutboxRow], prefix: str
) -> int | None:
    return session.scalar(
        select(func.count()).select_from(table).where(table.resource_id.like(f"{prefix}-%"))
    )


def test_a_large_batch_of_new_resources_is_written_whole(session: Session) -> None:
    stored = service.write(session, _batch("wb"))

    assert len(stored) == MANY + 1
    pks = [s.pk for s in stored]
    assert len(set(pks)) == len(pks)
    assert all(pk > 0 for pk in pks)
    rows = dict(
        session.execute(
            select(ResourceRow.resource_id, ResourceRow.pk).where(
                ResourceRow.resource_id.like("wb-%")
            )
        ).all()
    )
    # Each write's key is the key of the row that holds it.
    assert {s.resource_id: s.pk for s in stored} == rows
    observation = session.execute(
        select(ResourceRow).where(ResourceRow.resource_id == "wb-o3")
    ).scalar_one()
    assert observation.patient_id == "wb-p"
    assert observation.version_id == 1
    assert observation.body is not None
    assert '"value":63' in observation.body
    assert _rows(session, HistoryRow, "wb") == MANY + 1
    assert _rows(session, OutboxRow, "wb") == MANY + 1
    references = session.scalar(
        select(func.count())
        .select_from(search_reference)
        .where(search_reference.c.resource_pk.in_(pks), search_reference.c.target_id == "wb-p")
    )
    assert references is not None
    assert references >= MANY
    found = service.search(
        session,
        parse_search(
            "Observation",
            [("subject", "Patient/wb-p")],
            strict=True,
            default_count=100,
            max_count=100,
        ),
        base_url="http://test/fhir",
    )
    assert len(found.page.resources) == MANY


def test_a_new_id_stored_first_elsewhere_is_a_conflict_and_writes_nothing(
    session: Session,
) -> None:
    first = service.update(
        session, "Observation", "race-o5", fhir.observation(id="race-o5", patient_id="x"), now=NOW
    )
    late = _batch("race")  # prepared as new: this writer did not see race-o5

    with pytest.raises(Conflict):
        service.write(session, late)

    assert _rows(session, ResourceRow, "race") == 1
    kept = repository.get_current(session, "Observation", "race-o5")
    assert kept is not None
    assert (kept.pk, kept.version_id, kept.body) == (
        first.stored.pk,
        first.stored.version_id,
        first.stored.body,
    )
    assert _rows(session, HistoryRow, "race") == 1


def test_current_versions_of_many_keys_are_found_as_one_by_one(session: Session) -> None:
    """``get_current_many`` finds exactly what ``get_current`` finds key by key: missing keys,
    the same id under another type, repeated keys, with and without a lock, and a visibility
    predicate applied."""
    service.write(session, _batch("gm"))
    keys = [("Observation", f"gm-o{i}") for i in range(MANY)] + [
        ("Patient", "gm-p"),
        ("Patient", "gm-o1"),  # the id exists, under another type
        ("Observation", "gm-missing"),
        ("Observation", "gm-o2"),  # twice
    ]
    expected = {
        key: found for key in keys if (found := repository.get_current(session, *key)) is not None
    }
    assert len(expected) == MANY + 1
    for for_update in (False, True):
        many = repository.get_current_many(session, keys, for_update=for_update)
        assert {k: (v.pk, v.version_id) for k, v in many.items()} == {
            k: (v.pk, v.version_id) for k, v in expected.items()
        }
    only_patients = ResourceRow.resource_type == "Patient"
    assert set(repository.get_current_many(session, keys, visible=only_patients)) == {
        ("Patient", "gm-p")
    }
    assert repository.get_current_many(session, []) == {}


def test_every_index_row_belongs_to_its_resources_current_version(session: Session) -> None:
    """Index rows carry no foreign key (``store.models``): the repository alone keeps them
    right. After new resources in bulk, updates, deletes and a batch refused whole, every
    index row names a stored resource and indexes what its current version says."""
    service.write(session, _batch("ix"))
    service.update(
        session, "Observation", "ix-o1", fhir.observation(id="ix-o1", patient_id="ix-q"), now=NOW
    )
    service.delete(session, "Observation", "ix-o2", now=NOW)
    with pytest.raises(Conflict):
        service.write(session, _batch("ix"))  # every id exists: refused, nothing written
    for table in INDEX_TABLES:
        orphans = session.scalar(
            select(func.count())
            .select_from(table)
            .where(~select(ResourceRow.pk).where(ResourceRow.pk == table.c.resource_pk).exists())
        )
        assert orphans == 0, table.name
    subjects = dict(
        session.execute(
            select(ResourceRow.resource_id, search_reference.c.target_id)
            .join(search_reference, search_reference.c.resource_pk == ResourceRow.pk)
            .where(
                ResourceRow.resource_id.in_(["ix-o1", "ix-o2", "ix-o3"]),
                search_reference.c.param == "subject",
            )
        ).all()
    )
    assert subjects == {"ix-o1": "ix-q", "ix-o3": "ix-p"}  # a deleted resource has no rows

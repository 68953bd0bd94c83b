"""Migration 0016 deletes the derived parameters' rows, and its downgrade writes back exactly
the rows the extraction wrote before, on both databases."""

import importlib.util
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fhir_gateway import migrate
from fhir_gateway.search import extract as extraction
from fhir_gateway.search.storage import DERIVED
from fhir_gateway.store import service
from fhir_gateway.store.models import INDEX_TABLES, ResourceRow
from tests.conftest import own_engine
from tests.factories import fhir

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _migration() -> Any:
    path = migrate._migrations_dir() / "versions" / "2026-12-07_derived_search_rows.py"
    spec = importlib.util.spec_from_file_location("derived_search_rows", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_migrations_list_is_the_registrys_derivation() -> None:
    """A registry change that derives differently needs a migration of its own."""
    module = _migration()
    frozen = {(t, p): ((of,), (target,)) for t, p, of, target in module.RESTRICTIONS}
    frozen |= {(t, p): (tuple(sorted(parts)), ()) for _table, t, p, parts in module.UNIONS}
    derived = {
        (t, p): (tuple(sorted(s.params)), s.targets)
        for t, found in DERIVED.items()
        for p, s in found.items()
    }
    assert frozen == derived


def _resources() -> list[dict[str, Any]]:
    pressure = fhir.observation(id="bp", patient_id="p1", code="85354-9")
    del pressure["valueQuantity"]
    pressure["component"] = [
        {
            "code": {"coding": [{"system": fhir.LOINC, "code": c}]},
            "valueQuantity": {"value": v, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        }
        for c, v in (("8480-6", 150), ("8462-4", 95))
    ]
    group = fhir.observation(id="ward", patient_id="x")
    group["subject"] = {"reference": "Group/ward-7"}
    return [
        fhir.patient(id="p1", nhs_number=None),
        fhir.observation(id="weight", patient_id="p1"),
        pressure,
        group,
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/p1"},
            "participant": [
                {"individual": {"reference": "Practitioner/d1"}},
                {"individual": {"reference": "PractitionerRole/r1"}},
            ],
        },
        {
            "resourceType": "Person",
            "id": "person-1",
            "link": [
                {"target": {"reference": "Patient/p1"}},
                {"target": {"reference": "Practitioner/d1"}},
            ],
        },
    ]


def _index(engine: Engine) -> set[tuple[Any, ...]]:
    found: set[tuple[Any, ...]] = set()
    with engine.connect() as conn:
        keys = dict(conn.execute(select(ResourceRow.pk, ResourceRow.resource_id)).all())
        for table in INDEX_TABLES:
            for row in conn.execute(select(table)).mappings():
                values = {k: v for k, v in row.items() if k != "resource_pk"}
                found.add((table.name, keys[row["resource_pk"]], *sorted(values.items())))
    return found


def _written(engine: Engine) -> set[tuple[Any, ...]]:
    with Session(engine) as session, session.begin():
        service.write(
            session,
            [
                service.prepare_write(
                    r, resource_id=r["id"], version_id=1, now=NOW, method="PUT", existing_pk=None
                )
                for r in _resources()
            ],
        )
    return _index(engine)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_downgrade_writes_back_what_extraction_wrote_and_upgrade_removes_it(
    backend: str, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the extraction wrote before derived parameters (every parameter its own rows),
    # into a database of its own.
    with own_engine(backend, tmp_path_factory, "all-rows") as engine:
        with monkeypatch.context() as patched:
            patched.setattr(extraction, "has_own_rows", lambda _t, _c: True)
            extraction._compiled.cache_clear()
            before = _written(engine)
        extraction._compiled.cache_clear()
    with own_engine(backend, tmp_path_factory, "derived-rows") as engine:
        now = _written(engine)
        assert len(now) < len(before)
        assert now < before
        config = migrate.alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0015")
        assert _index(engine) == before
        migrate.upgrade(engine)
        assert _index(engine) == now

"""``carejoin relabel`` re-derives labels, relationships and directives, on both databases.

Relabelling commits batch by batch, so each backend gets its own fresh database or schema.
"""

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, delete, func, select, update

from fhir_gateway.access.models import CareRelationshipRow
from fhir_gateway.access.relabel import relabel_all
from fhir_gateway.db import session_factory_for
from fhir_gateway.store import service
from fhir_gateway.store.models import ResourceRow
from tests.conftest import own_engine
from tests.factories import fhir


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    with own_engine(request.param, tmp_path_factory, "relabel") as e:
        yield e


def test_relabel_restores_what_a_database_stored_before_labels_lacks(engine: Engine) -> None:
    factory = session_factory_for(engine)
    now = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    source = {"source": "urn:carejoin:source:Z90001"}
    with factory.begin() as session:
        patient = service.create(
            session, {**fhir.patient(family="Relabel"), "meta": source}, now=now
        ).stored.resource_id
        hiv = {
            **fhir.condition(patient_id=patient),
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "B20"}]},
            "meta": source,
        }
        condition = service.create(session, hiv, now=now).stored.resource_id
    # As an older database would hold it: no sensitivity, no source_org, no relationships.
    with factory.begin() as session:
        session.execute(update(ResourceRow).values(sensitivity=None, source_org=None))
        session.execute(delete(CareRelationshipRow))
    seen: list[int] = []
    report = relabel_all(factory, batch=1, progress=seen.append)
    assert report.resources == 2
    assert sum(seen) == 2
    assert report.sensitive == 1
    assert report.relationships == 1  # registered at the practice
    with factory.begin() as session:
        labels = dict(
            session.execute(select(ResourceRow.resource_id, ResourceRow.sensitivity)).all()
        )
        assert labels[condition] == " hiv "
        assert labels[patient] is None
        assert (
            session.scalar(
                select(func.count())
                .select_from(ResourceRow)
                .where(ResourceRow.source_org == "Z90001")
            )
            == 2
        )
    again = relabel_all(factory, batch=100, progress=lambda _n: None)
    assert again.relationships == 1  # idempotent

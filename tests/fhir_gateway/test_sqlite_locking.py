"""SQLite: two units of work that both write queue for the lock instead of one failing."""

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from fhir_gateway.db import session_factory_for
from fhir_gateway.store import service
from fhir_gateway.store.models import ResourceRow
from tests.conftest import _sqlite_engine
from tests.factories import fhir


def test_a_reader_that_then_writes_does_not_fail_beside_another_writer(tmp_path: Path) -> None:
    with _sqlite_engine(tmp_path) as engine:
        factory = session_factory_for(engine)
        errors: list[BaseException] = []
        started = threading.Event()

        def read_then_write() -> None:
            try:
                with factory.begin() as session:
                    session.execute(select(func.count()).select_from(ResourceRow)).scalar()
                    started.set()
                    time.sleep(0.3)  # the other writer tries now
                    service.create(session, fhir.patient(family="First"), now=datetime.now(UTC))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                started.set()

        def write() -> None:
            started.wait(5)
            try:
                with factory.begin() as session:
                    service.create(session, fhir.patient(family="Second"), now=datetime.now(UTC))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=read_then_write), threading.Thread(target=write)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        with factory.begin() as session:
            assert session.scalar(select(func.count()).select_from(ResourceRow)) == 2

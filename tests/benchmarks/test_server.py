"""The benchmark's server: an experiment's app factory reaches every worker process.

The audit benchmark compares the service with a change of its own (reads without their
AuditEvent insert); run with several uvicorn workers, a change that reached only the parent
process would leave every worker audited and the comparison would measure nothing. These
tests run the real server, with two workers, on a PostgreSQL schema of their own.
"""

import concurrent.futures
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine, text

from benchmarks.common import BENCH_CLIENT, bench_token, server
from tests.conftest import own_engine

READS = 60


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with own_engine("postgresql", tmp_path_factory, "bench-server") as engine:
        yield engine


def _read_events(engine: Engine, patient_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM audit_event WHERE interaction = 'read' AND resource = :r"
                ),
                {"r": f"Patient/{patient_id}"},
            ).scalar_one()
        )


def _serve_reads(engine: Engine, app: str) -> tuple[str, int]:
    """Create a Patient, then read it ``READS`` times, 8 at a time, from a two-worker server
    running ``app``; (the patient's id, how many reads answered 200)."""
    url = engine.url.render_as_string(hide_password=False)
    with server(url, workers=2, app=app) as (host, port, _):
        base = f"http://{host}:{port}/fhir"
        headers = {"Authorization": f"Bearer {bench_token(base, BENCH_CLIENT)}"}
        created = httpx.post(
            f"{base}/Patient",
            json={"resourceType": "Patient", "name": [{"family": "Testwick", "given": ["Ada"]}]},
            headers={**headers, "Content-Type": "application/fhir+json"},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        patient_id = created.json()["id"]

        def read(_: int) -> int:
            return httpx.get(
                f"{base}/Patient/{patient_id}", headers=headers, timeout=30
            ).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(read, range(READS)))
    return patient_id, statuses.count(200)


def test_the_service_audits_every_read(pg: Engine) -> None:
    patient_id, answered = _serve_reads(pg, "carejoin.app:create_service")
    assert answered == READS
    assert _read_events(pg, patient_id) == READS


def test_without_read_audit_reaches_every_worker(pg: Engine) -> None:
    patient_id, answered = _serve_reads(pg, "benchmarks.without_read_audit:create_service")
    assert answered == READS
    assert _read_events(pg, patient_id) == 0

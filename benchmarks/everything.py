"""``Patient/$everything`` for people with about 300 resources across three sources.

Adds ``--heavy`` synthetic people to a benchmark population (``benchmarks.fhir_store`` loads
it): each has a GP, a hospital and a social care record of 100 resources each, carrying the
same verified NHS number, loaded as transaction bundles and linked by identity. Then, with the
server in its own process and the load generator in another:

- ``$everything?_count=500`` at concurrency 1 (p50, p99) and at concurrency 8 (requests/s);
- the raw-SQL floor: the same rows fetched by one statement and serialised;
- server RSS.

    python -m benchmarks.everything --people 100000 --heavy 50
"""

import argparse
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from benchmarks.common import bench_url, machine, rss_mb, server
from benchmarks.fhir_store import _in_process
from benchmarks.loadgen import run_in_process
from carejoin.synthetic import nhs_number_for
from fhir_gateway import migrate
from fhir_gateway.db import create_engine_for, session_factory_for
from fhir_gateway.identity import service as identity
from fhir_gateway.identity.nhs import NHS_NUMBER_SYSTEM, VERIFICATION_EXTENSION, VERIFICATION_SYSTEM
from fhir_gateway.store import transaction

SOURCES = (("gp", "urn:ods:Z90001"), ("rh", "urn:ods:Z9H"), ("asc", "urn:ods:Z9C01"))


def _patient(key: str, source: str, nhs: str, n: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": key,
        "meta": {"source": source},
        "identifier": [
            {
                "system": NHS_NUMBER_SYSTEM,
                "value": nhs,
                "extension": [
                    {
                        "url": VERIFICATION_EXTENSION,
                        "valueCodeableConcept": {
                            "coding": [{"system": VERIFICATION_SYSTEM, "code": "01"}]
                        },
                    }
                ],
            }
        ],
        "name": [{"use": "official", "family": f"Heavy{n:05d}", "given": ["Pat"]}],
        "gender": "female",
        "birthDate": "1938-05-17",
        "address": [{"use": "home", "postalCode": "LS16 6AB"}],
    }


def _items(prefix: str, key: str, source: str) -> list[dict[str, Any]]:
    subject = {"reference": f"Patient/{key}"}
    meta = {"source": source}
    out: list[dict[str, Any]] = []
    day = date(2026, 10, 1)
    for i in range(99):
        when = (day - timedelta(days=7 * i)).isoformat()
        rid = f"{key}-{i:03d}"
        if prefix == "gp" and i % 3:
            out.append(
                {
                    "resourceType": "Observation",
                    "id": rid,
                    "meta": meta,
                    "status": "final",
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "27113001"}]},
                    "subject": subject,
                    "effectiveDateTime": when,
                    "valueQuantity": {
                        "value": 60 + i % 20,
                        "unit": "kg",
                        "system": "http://unitsofmeasure.org",
                        "code": "kg",
                    },
                }
            )
        elif prefix == "gp":
            out.append(
                {
                    "resourceType": "MedicationStatement",
                    "id": rid,
                    "meta": meta,
                    "status": "active",
                    "medicationCodeableConcept": {
                        "coding": [{"system": "https://dmd.nhs.uk", "code": "322236009"}]
                    },
                    "subject": subject,
                    "effectiveDateTime": when,
                }
            )
        elif prefix == "rh" and i % 2:
            out.append(
                {
                    "resourceType": "Condition",
                    "id": rid,
                    "meta": meta,
                    "code": {
                        "coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I50.0"}]
                    },
                    "subject": subject,
                    "recordedDate": when,
                }
            )
        else:
            out.append(
                {
                    "resourceType": "Encounter",
                    "id": rid,
                    "meta": meta,
                    "status": "finished",
                    "class": {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "IMP" if prefix == "rh" else "HH",
                    },
                    "subject": subject,
                    "period": {"start": when, "end": when},
                }
            )
    return out


def transact(session: Any, entries: list[dict[str, Any]]) -> None:
    """Process ``entries`` as one transaction bundle in ``session`` (in process, trusted)."""
    transaction.process_transaction(
        session,
        {"resourceType": "Bundle", "type": "transaction", "entry": entries},
        now=datetime.now(UTC),
        base_url="http://bench/fhir",
        get_handler=lambda _s, u: (_ for _ in ()).throw(RuntimeError(u)),
    )


def load_heavy(url: str, heavy: int) -> list[str]:
    """Load and link ``heavy`` people (idempotent: PUTs); returns one patient id per person."""
    engine = create_engine_for(url)
    migrate.upgrade(engine)
    factory = session_factory_for(engine)
    firsts: list[str] = []
    for n in range(heavy):
        nhs = nhs_number_for(9_000_000 + n, 77)
        patients = []
        for prefix, source in SOURCES:
            key = f"heavy-{prefix}-{n:05d}"
            patient = _patient(key, source, nhs, n)
            patients.append(patient)
            entries = [
                {
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in [patient, *_items(prefix, key, source)]
            ]
            with factory.begin() as session:
                transact(session, entries)
        with factory.begin() as session:
            for patient in patients:
                identity.link_patient(session, patient, now=datetime.now(UTC))
        firsts.append(patients[0]["id"])
    engine.dispose()
    return firsts


def floor(url: str, firsts: list[str], seconds: float) -> dict[str, float]:
    times: list[float] = []
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        deadline = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < deadline:
            key = firsts[i % len(firsts)]
            ids = [key.replace("-gp-", f"-{p}-") for p, _ in SOURCES]
            t0 = time.perf_counter()
            rows = conn.execute(
                "SELECT body FROM resource WHERE patient_id = ANY(%s) AND NOT deleted ORDER BY pk LIMIT 501",
                (ids,),
            ).fetchall()
            ("[" + ",".join(r[0] for r in rows) + "]").encode()
            times.append((time.perf_counter() - t0) * 1000)
            i += 1
    ordered = sorted(times)
    return {
        "floor_p50_ms": statistics.median(times),
        "floor_p99_ms": ordered[int(len(ordered) * 0.99) - 1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--heavy", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    url = bench_url().replace("carejoin_bench", f"carejoin_bench_{args.people}")
    started = time.perf_counter()
    firsts = load_heavy(url, args.heavy)
    figures: dict[str, float] = {"people": args.people, "heavy_people": args.heavy}
    figures["heavy_load_seconds"] = time.perf_counter() - started
    engine = create_engine_for(url)
    with session_factory_for(engine).begin() as session:
        person = identity.person_of(session, firsts[0])
        assert person is not None, "the heavy person was not linked"
        patients = identity.patients_of(session, person)
    engine.dispose()
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        row = conn.execute(
            "SELECT count(*) FROM resource WHERE patient_id = ANY(%s) AND NOT deleted",
            (patients,),
        ).fetchone()
    figures["linked_source_patients"] = len(patients)
    figures["resources_per_heavy_person"] = row[0] if row else 0
    paths = [f"/fhir/Patient/{p}/$everything?_count=500" for p in firsts]
    with server(url) as (host, port, proc):
        figures["rss_idle_mb"] = rss_mb(proc.pid)
        _in_process(run_in_process, host, port, paths, 1, 3.0, None)
        one = _in_process(run_in_process, host, port, paths, 1, args.seconds, None)
        eight = _in_process(run_in_process, host, port, paths, 8, args.seconds, None)
        figures.update(
            {
                "everything_p50_ms": one["p50"],
                "everything_p99_ms": one["p99"],
                "everything_errors": one["errors"] + eight["errors"],
                "everything_rate_8_clients": eight["throughput"],
                "rss_after_mb": rss_mb(proc.pid),
            }
        )
    figures.update(floor(url, firsts, args.seconds / 2))
    figures["p50_ratio_to_floor"] = figures["everything_p50_ms"] / figures["floor_p50_ms"]
    print(f"\nmachine: {machine()}; date: {datetime.now(UTC):%Y-%m-%d}; database: PostgreSQL")
    for key, value in figures.items():
        print(f"{key:32} {value:12.2f}" if isinstance(value, float) else f"{key:32} {value:>12}")


if __name__ == "__main__":
    main()

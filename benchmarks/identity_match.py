"""Matching one incoming record against a large master patient index (PostgreSQL).

    python -m benchmarks.identity_match --people 1000000 --probes 1000 --population-version 3

Builds identity's index (``identity_record``, ``identity_block_key`` and
``identity_name_count``, exactly the rows
identity writes when it files a record) for every source record of the frozen hard-case
population (``benchmarks/identity_population.py``, seed 4), each filed under its true
person, then holds back ``--probes`` source records and times ``Patient/$match``'s
matching (``identity.service.match_patients``: blocking keys, candidates, Fellegi-Sunter
scoring) for each against the index, in process, one at a time. The index is written
directly with the true clusters rather than through ``carejoin link`` (which would take an
hour at this size on this machine, writing the FHIR Persons and Provenances that matching
never reads); the match reads only the index. Also prints how often the held-back record's
true person was the best candidate.

Target: p95 under 20 ms against 1,000,000 persons.
"""

import argparse
import random
import statistics
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import psycopg

from benchmarks.common import bench_url, ensure_database, machine
from benchmarks.identity_population import VERSIONS, population
from fhir_gateway import migrate
from fhir_gateway.db import create_engine_for, session_factory_for
from fhir_gateway.identity import blocking
from fhir_gateway.identity import service as identity
from fhir_gateway.identity.demographics import from_patient

SEED = 4


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def build(
    url: str, people: int, probes: int, version: int = 2, *, write: bool = True
) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """Write the index; returns the held-back (true person, Patient) probes and the count of
    persons indexed. With ``write`` false, only the probes (the index is already there)."""
    if not write:
        return _probes_only(people, probes, version)
    rng = random.Random(SEED)
    held: list[tuple[str, dict[str, Any]]] = []
    persons: set[str] = set()
    now = datetime.now(UTC)
    pk = 0
    started = time.perf_counter()
    with psycopg.connect(_psycopg_url(url), autocommit=False) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "TRUNCATE identity_block_key, identity_review, identity_record,"
                " identity_name_count CASCADE"
            )
        records = conn.cursor().copy(
            "COPY identity_record (pk, patient_id, person_id, source, nhs_number, nhs_verified,"
            " assurance, features, updated_at, linked_at) FROM STDIN"
        )
        keys_cursor = conn.cursor()
        names: Counter[tuple[str, str]] = Counter()
        with records as copy:
            key_rows: list[tuple[str, int]] = []
            for key, patient in population(people, SEED, version=version):
                # About one record in (records / probes) is held back to be matched.
                if len(held) < probes and rng.random() < probes / (people * 1.7):
                    held.append((key, patient))
                    continue
                features = from_patient(patient)
                pk += 1
                persons.add(key)
                copy.write_row(
                    (
                        pk,
                        patient["id"],
                        key,
                        patient["meta"]["source"],
                        features.nhs.value if features.nhs else None,
                        bool(features.nhs and features.nhs.verified),
                        "level3",
                        identity._dump(features),
                        now,
                        now,
                    )
                )
                key_rows.extend((k[:128], pk) for k in blocking.stored_keys(features))
                names.update(identity._name_rows(features, 1))
                if pk % 100_000 == 0:
                    print(
                        f"  {pk} records indexed ({time.perf_counter() - started:.0f}s)", flush=True
                    )
        with keys_cursor.copy("COPY identity_block_key (key, record_pk) FROM STDIN") as copy:
            for row in key_rows:
                copy.write_row(row)
        # The name counts identity keeps with its index (one row per name, as folded).
        with conn.cursor().copy("COPY identity_name_count (field, value, n) FROM STDIN") as copy:
            for (field, value), n in sorted(names.items()):
                copy.write_row((field, value, n))
        with conn.cursor() as cur:
            cur.execute("SELECT setval(pg_get_serial_sequence('identity_record', 'pk'), %s)", (pk,))
        conn.commit()
    # As autovacuum would leave a table loaded this way: statistics, and the visibility map
    # that lets the large blocks be counted from the key index alone.
    with psycopg.connect(_psycopg_url(url), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) identity_record")
        conn.execute("VACUUM (ANALYZE) identity_block_key")
        conn.execute("VACUUM (ANALYZE) identity_name_count")
    print(
        f"indexed {pk} records of {len(persons)} persons, {len(key_rows)} blocking keys, "
        f"in {time.perf_counter() - started:.0f}s",
        flush=True,
    )
    return held, len(persons)


def _probes_only(
    people: int, probes: int, version: int
) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    rng = random.Random(SEED)
    held: list[tuple[str, dict[str, Any]]] = []
    persons: set[str] = set()
    for key, patient in population(people, SEED, version=version):
        if len(held) < probes and rng.random() < probes / (people * 1.7):
            held.append((key, patient))
        else:
            persons.add(key)
    return held, len(persons)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--population-version", type=int, default=2, choices=sorted(VERSIONS))
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="match against the index a previous run with the same arguments built",
    )
    args = parser.parse_args()
    url = bench_url().replace(
        "carejoin_bench", f"carejoin_bench_identity_{args.people}_v{args.population_version}"
    )
    if not args.reuse:
        ensure_database(url, fresh=True)
    engine = create_engine_for(url)
    migrate.upgrade(engine)
    held, indexed = build(
        url, args.people, args.probes, args.population_version, write=not args.reuse
    )
    factory = session_factory_for(engine)
    samples: list[float] = []
    top = found = 0
    with factory() as session:
        for _key, patient in held[:20]:  # warm the caches and the connection
            identity.match_patients(session, patient)
        for key, patient in held:
            started = time.perf_counter()
            matches = identity.match_patients(session, patient)
            samples.append((time.perf_counter() - started) * 1000)
            if matches:
                found += 1
                best_person = matches[0][1]
                top += best_person == key
    engine.dispose()
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    print(f"machine: {machine()}")
    print(f"population {VERSIONS[args.population_version]}")
    print(f"persons indexed: {indexed}; probes: {len(held)}")
    print(
        f"match one record: p50 {at(0.5):.2f} ms, p95 {at(0.95):.2f} ms, p99 {at(0.99):.2f} ms, "
        f"max {ordered[-1]:.2f} ms, mean {statistics.fmean(ordered):.2f} ms"
    )
    print(f"probes with a candidate: {found}; true person ranked first: {top}")


if __name__ == "__main__":
    main()

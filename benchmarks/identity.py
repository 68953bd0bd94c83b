"""Identity on a benchmark population: batch link time, pairwise accuracy against the
synthetic truth, the NHS-number-only baseline, and the time to match one record.

    python -m benchmarks.identity --people 100000

Links the population first if identity has not filed it (``carejoin link``'s code). The
truth comes from the synthetic ids: ``gp<n>-<key>``, ``rh-<key>`` and ``asc-<key>`` are the
same person when ``key`` is. This is the demo locality's generator (typos, missing NHS
numbers, nicknames); it does not yet carry the hard cases (twins, a parent's number,
married names, moves), so it flatters every method.
"""

import argparse
import re
import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime

import orjson
import psycopg
from sqlalchemy import text

from benchmarks.common import bench_url, machine
from benchmarks.identity_accuracy import _pairs, _prf
from fhir_gateway import migrate
from fhir_gateway.db import create_engine_for, session_factory_for
from fhir_gateway.identity import batch
from fhir_gateway.identity import service as identity

SYNTHETIC_ID = re.compile(r"^(?:gp\d|rh|asc)-(\d+)$")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--matches", type=int, default=1000)
    args = parser.parse_args()
    url = bench_url().replace("carejoin_bench", f"carejoin_bench_{args.people}")
    engine = create_engine_for(url)
    migrate.upgrade(engine)
    factory = session_factory_for(engine)
    figures: dict[str, float] = {"people": args.people}
    began = time.perf_counter()
    report = batch.link_all(factory, now=datetime.now(UTC))
    figures["newly_filed_records"] = report.records
    if report.records:
        figures["batch_link_seconds"] = time.perf_counter() - began
        figures["batch_pairs_scored"] = report.pairs_scored
        for stage, seconds in report.seconds.items():
            figures[f"batch_{stage}_seconds"] = seconds

    plain = url.replace("+psycopg", "")
    with psycopg.connect(plain) as conn:
        rows = conn.execute(
            "SELECT patient_id, person_id, nhs_number FROM identity_record"
        ).fetchall()
    truth: dict[str, set[str]] = defaultdict(set)
    predicted: dict[str, set[str]] = defaultdict(set)
    by_nhs: dict[str, set[str]] = defaultdict(set)
    for patient_id, person_id, nhs in rows:
        match = SYNTHETIC_ID.match(patient_id)
        if match is None:
            continue
        truth[match.group(1)].add(patient_id)
        predicted[person_id].add(patient_id)
        if nhs:
            by_nhs[nhs].add(patient_id)
    true_pairs = _pairs(truth)
    figures["records"] = sum(len(g) for g in truth.values())
    figures["true_pairs"] = len(true_pairs)
    p, r, f = _prf(true_pairs, _pairs(predicted))
    figures.update({"precision": p, "recall": r, "f1": f})
    p, r, f = _prf(true_pairs, _pairs(by_nhs))
    figures.update({"nhs_only_precision": p, "nhs_only_recall": r, "nhs_only_f1": f})

    with engine.connect() as conn:
        bodies = [
            orjson.loads(row[0])
            for row in conn.execute(
                text(
                    "SELECT body FROM resource TABLESAMPLE SYSTEM (1) "
                    "WHERE resource_type = 'Patient' AND NOT deleted LIMIT :n"
                ),
                {"n": args.matches},
            )
        ]
    times: list[float] = []
    for body in bodies:
        probe = {k: v for k, v in body.items() if k != "id"}
        t0 = time.perf_counter()
        with factory.begin() as session:
            identity.match_patients(session, probe)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    figures["match_one_p50_ms"] = statistics.median(times)
    figures["match_one_p95_ms"] = times[int(len(times) * 0.95) - 1]
    engine.dispose()
    print(f"\nmachine: {machine()}; date: {datetime.now(UTC):%Y-%m-%d}; database: PostgreSQL")
    for key, value in figures.items():
        print(f"{key:32} {value:12.4f}" if isinstance(value, float) else f"{key:32} {value:>12}")


if __name__ == "__main__":
    main()

"""`carejoin link` on PostgreSQL at scale: the whole batch (read, plan, write) for a population
of source records, its stages, and its accuracy.

    python -m benchmarks.identity_link --people 580000 --population-version 3

Generates the frozen hard-case population (``benchmarks/identity_population.py``, seed 2,
about 1.72 source Patient records a person: 580,000 people give about a million records),
writes the records as NDJSON and loads them into a database of their own
(``carejoin_bench_link_<people>``, made afresh) through ``carejoin import``'s code, then times
``carejoin link``'s code (``identity.batch.link_all``: reading every Patient, planning in
memory, writing identity's records, blocking keys and name counts, the Persons, a Provenance
per link and the reviews). The Persons identity wrote are read back from ``identity_record``
for pairwise precision and recall against the population's truth. The import is timed too,
but it is not the link.
"""

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg

from benchmarks.common import bench_url, ensure_database, machine
from benchmarks.identity_accuracy import _pairs, _prf
from benchmarks.identity_population import VERSIONS, population
from fhir_gateway import migrate
from fhir_gateway.db import create_engine_for, session_factory_for
from fhir_gateway.feeds import bulk
from fhir_gateway.identity import batch

SEED = 2


_shown: dict[str, int] = {}


def _progress(stage: str, done: int, total: int) -> None:
    tenth = 10 * done // max(total, 1)
    if _shown.get(stage) != tenth:
        _shown[stage] = tenth
        print(f"  {stage}: {done:,} of {total:,}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=580_000)
    parser.add_argument("--population-version", type=int, default=3, choices=sorted(VERSIONS))
    parser.add_argument("--processes", type=int, default=2, help="import processes")
    args = parser.parse_args()
    url = bench_url().replace("carejoin_bench", f"carejoin_bench_link_{args.people}")
    ensure_database(url, fresh=True)
    engine = create_engine_for(url)
    migrate.upgrade(engine)
    figures: dict[str, float] = {"people": args.people}

    truth: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "patients.ndjson"
        with path.open("wb") as out:
            for key, patient in population(args.people, SEED, version=args.population_version):
                truth[str(patient["id"])] = key
                out.write(orjson.dumps(patient) + b"\n")
        figures["records"] = len(truth)
        began = time.perf_counter()
        report = bulk.import_file(url, str(path), now=datetime.now(UTC), processes=args.processes)
        figures["import_seconds"] = time.perf_counter() - began
        figures["import_refused"] = len(report.errors)

    factory = session_factory_for(engine)
    began = time.perf_counter()
    linked = batch.link_all(factory, now=datetime.now(UTC), progress=_progress)
    figures["link_seconds"] = time.perf_counter() - began
    figures["newly_filed_records"] = linked.records
    figures["pairs_scored"] = linked.pairs_scored
    for stage, seconds in linked.seconds.items():
        figures[f"link_{stage}_seconds"] = seconds
    figures["persons_created"] = linked.persons_created
    figures["links"] = linked.links
    figures["reviews"] = linked.reviews
    engine.dispose()

    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        rows = conn.execute("SELECT patient_id, person_id FROM identity_record").fetchall()
    number = {patient_id: n for n, patient_id in enumerate(truth)}
    people: dict[object, set[int]] = defaultdict(set)
    persons: dict[object, set[int]] = defaultdict(set)
    for patient_id, person_id in rows:
        people[truth[patient_id]].add(number[patient_id])
        persons[person_id].add(number[patient_id])
    precision, recall, f1 = _prf(_pairs(people), _pairs(persons))
    figures.update({"filed": len(rows), "precision": precision, "recall": recall, "f1": f1})

    print(
        f"\nmachine: {machine()}; date: {datetime.now(UTC):%Y-%m-%d}; database: PostgreSQL; "
        f"population {VERSIONS[args.population_version]}, seed {SEED}"
    )
    for key, value in figures.items():
        print(f"{key:32} {value:12.4f}" if isinstance(value, float) else f"{key:32} {value:>12}")


if __name__ == "__main__":
    main()

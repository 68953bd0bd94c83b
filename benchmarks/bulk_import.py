"""Bulk NDJSON import (``carejoin import``) against transaction bundles, on PostgreSQL.

Writes the synthetic records of fresh people (beyond any loaded population) as NDJSON, then
imports the file as ``carejoin import`` does (``--processes``, default 2), and prints
resources/s.
Compare with ``ingest_rate`` of ``benchmarks.fhir_store`` (bundles of ~100 over HTTP).

    python -m benchmarks.bulk_import --people 100000 --resources 100000
"""

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import bench_url, machine
from carejoin.synthetic import person_bundles
from fhir_gateway import migrate
from fhir_gateway.app import unit_of_work_factory
from fhir_gateway.db import create_engine_for, session_factory_for
from fhir_gateway.feeds import bulk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=10_000, help="which benchmark database")
    parser.add_argument("--resources", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    url = bench_url().replace("carejoin_bench", f"carejoin_bench_{args.people}")
    start = 30_000_000 + (int(time.time()) % 1_000_000) * 1_000
    stop = start + args.resources // 25
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "records.ndjson"
        count = 0
        with path.open("w") as out:
            for _source, bundle in person_bundles(people=stop, start=start, stop=stop):
                for entry in bundle["entry"]:
                    if count >= args.resources:
                        break
                    out.write(json.dumps(entry["resource"]) + "\n")
                    count += 1
        engine = create_engine_for(url)
        migrate.upgrade(engine)
        engine.dispose()
        began = time.perf_counter()
        if args.processes > 1:
            report = bulk.import_file(
                url,
                str(path),
                now=datetime.now(UTC),
                processes=args.processes,
                batch_size=args.batch,
            )
        else:
            engine = create_engine_for(url)
            unit_of_work = unit_of_work_factory(session_factory_for(engine))
            with path.open("rb") as handle:
                report = bulk.import_ndjson(
                    unit_of_work, handle, now=datetime.now(UTC), batch_size=args.batch
                )
            engine.dispose()
        elapsed = time.perf_counter() - began
    print(f"\nmachine: {machine()}; date: {datetime.now(UTC):%Y-%m-%d}; database: PostgreSQL")
    print(f"{'people_in_database':32} {args.people:>12}")
    print(f"{'lines':32} {count:>12}")
    print(f"{'loaded':32} {report.loaded:>12}")
    print(f"{'refused':32} {len(report.errors):>12}")
    print(f"{'seconds':32} {elapsed:12.2f}")
    print(f"{'processes':32} {args.processes:>12}")
    print(f"{'import_rate':32} {report.loaded / elapsed:12.2f}")


if __name__ == "__main__":
    main()

"""Benchmarks of the FHIR store on PostgreSQL: load, ingest, read by id, search, raw floor.

    python -m benchmarks.fhir_store --people 10000            # load (if needed) and measure
    python -m benchmarks.fhir_store --people 100000 --workers 2

Prints every figure; nothing is asserted. Targets: ingest >= 2,000
resources/s at concurrency 4 in bundles of ~100; read by id >= 1,500 requests/s from 8 clients
in another process and p99 < 10 ms at a paced 1,000 requests/s;
``Observation?patient=...&_count=50&_sort=-date`` p95 < 15 ms, and p95 at 100k people no more
than 1.5x the p95 at 10k.
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import random
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import psycopg
from sqlalchemy import text

from benchmarks.common import (
    auth_headers,
    bench_url,
    ensure_database,
    machine,
    merged_transactions,
    rss_mb,
    server,
)
from benchmarks.loadgen import run_in_process
from carejoin.synthetic import generate_locality, person_bundles
from fhir_gateway import migrate
from fhir_gateway.db import create_engine_for, session_factory_for
from fhir_gateway.store import transaction

MARKER_TABLE = "bench_population"


def _load_shard(args: tuple[str, int, int, int]) -> int:
    url, people, start, stop = args
    engine = create_engine_for(url, pool_size=2)
    factory = session_factory_for(engine)
    count = 0
    sources = (bundle for _source, bundle in person_bundles(people=people, start=start, stop=stop))
    for bundle in merged_transactions(sources, size=500):
        with factory.begin() as session:
            count += len(
                transaction.process_transaction(
                    session,
                    bundle,
                    now=datetime.now(UTC),
                    base_url="http://bench/fhir",
                    get_handler=_no_get,
                )
            )
    engine.dispose()
    return count


def _no_get(_session: Any, url: str) -> Any:
    raise RuntimeError(url)


def load_population(url: str, people: int, *, processes: int) -> dict[str, float]:
    """Load ``people`` synthetic people in-process (the transaction service, no HTTP), once."""
    engine = create_engine_for(url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (people integer)"))
        loaded = conn.execute(text(f"SELECT max(people) FROM {MARKER_TABLE}")).scalar() or 0
    if loaded >= people:
        print(f"population of {loaded} people already loaded")
        return {}
    locality = generate_locality(people=people)
    with session_factory_for(engine).begin() as session:
        transaction.process_transaction(
            session,
            locality.organizations_bundle,
            now=datetime.now(UTC),
            base_url="http://bench/fhir",
            get_handler=_no_get,
        )
    started = time.perf_counter()
    chunk = 2000
    shards = [(url, people, s, min(people, s + chunk)) for s in range(loaded, people, chunk)]
    total = 0
    with concurrent.futures.ProcessPoolExecutor(
        processes, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        for done, count in enumerate(pool.map(_load_shard, shards), 1):
            total += count
            rate = total / (time.perf_counter() - started)
            print(
                f"  loaded {min(people, loaded + done * chunk)}/{people} people, {total} resources, {rate:.0f}/s",
                flush=True,
            )
    elapsed = time.perf_counter() - started
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {MARKER_TABLE} VALUES (:n)"), {"n": people})
        conn.execute(text("ANALYZE"))
    engine.dispose()
    return {"load_resources": total, "load_seconds": elapsed, "load_rate": total / elapsed}


def sample_ids(url: str, resource_type: str, n: int) -> list[str]:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        rows = conn.execute(
            "SELECT resource_id FROM resource TABLESAMPLE SYSTEM (5) WHERE resource_type = %s AND NOT deleted LIMIT %s",
            (resource_type, n),
        ).fetchall()
        if len(rows) < n:
            rows = conn.execute(
                "SELECT resource_id FROM resource WHERE resource_type = %s AND NOT deleted LIMIT %s",
                (resource_type, n),
            ).fetchall()
    ids = [r[0] for r in rows]
    random.Random(7).shuffle(ids)
    return ids


def measure_ingest(
    host: str, port: int, people: int, *, resources: int, concurrency: int
) -> dict[str, float]:
    """POST transaction bundles of ~100 resources for people beyond the loaded population."""
    # Fresh people on every run, so every resource is a new one (re-sending identical
    # resources would measure the no-change path instead).
    start = 10_000_000 + (int(time.time()) % 1_000_000) * 1_000
    stop = start + max(1, resources // 25)
    bundles = list(
        merged_transactions(
            (b for _s, b in person_bundles(people=stop, start=start, stop=stop)), size=100
        )
    )
    count = 0
    bodies: list[bytes] = []
    for b in bundles:
        if count >= resources:
            break
        bodies.append(json.dumps(b).encode())
        count += len(b["entry"])
    latencies: list[float] = []

    def post(body: bytes, client: httpx.Client) -> int:
        t0 = time.perf_counter()
        response = client.post(
            f"http://{host}:{port}/fhir",
            content=body,
            headers={"Content-Type": "application/fhir+json", **auth_headers()},
        )
        latencies.append(time.perf_counter() - t0)
        if response.status_code != 200:
            raise RuntimeError(f"ingest failed: {response.status_code} {response.text[:500]}")
        return len(orjson.loads(response.content)["entry"])

    clients = [httpx.Client(timeout=120) for _ in range(concurrency)]
    started = time.perf_counter()
    stored = 0
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        futures = [
            pool.submit(post, body, clients[i % concurrency]) for i, body in enumerate(bodies)
        ]
        for f in concurrent.futures.as_completed(futures):
            stored += f.result()
    elapsed = time.perf_counter() - started
    for c in clients:
        c.close()
    return {
        "ingest_resources": stored,
        "ingest_bundles": len(bodies),
        "ingest_rate": stored / elapsed,
        "ingest_bundle_p50_ms": statistics.median(latencies) * 1000,
    }


def _in_process(fn: Any, *args: Any) -> dict[str, float]:
    with concurrent.futures.ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        return pool.submit(fn, *args).result()


def measure_reads(host: str, port: int, url: str, seconds: float) -> dict[str, float]:
    ids = sample_ids(url, "Patient", 5000)
    paths = [f"/fhir/Patient/{i}" for i in ids]
    run_in_process_args = (host, port, paths[:200], 8, 3.0, None)
    _in_process(run_in_process, *run_in_process_args)  # warm up
    closed = _in_process(run_in_process, host, port, paths, 8, seconds, None)
    paced = _in_process(run_in_process, host, port, paths, 8, seconds, 1000.0)
    one = _in_process(run_in_process, host, port, paths, 1, seconds / 2, None)
    return {
        "read_1_client_p50_ms": one["p50"],
        "read_1_client_rate": one["throughput"],
        "read_throughput": closed["throughput"],
        "read_errors": closed["errors"],
        "read_p50_ms": closed["p50"],
        "read_p99_ms": closed["p99"],
        "read_paced_rate": paced["throughput"],
        "read_paced_p50_ms": paced["p50"],
        "read_paced_p99_ms": paced["p99"],
    }


def measure_search(host: str, port: int, url: str, seconds: float) -> dict[str, float]:
    patients = _patients_with_observations(url, 2000)
    paths = [f"/fhir/Observation?patient={p}&_count=50&_sort=-date" for p in patients]
    _in_process(run_in_process, host, port, paths[:100], 1, 3.0, None)
    one = _in_process(run_in_process, host, port, paths, 1, seconds, None)
    return {
        "search_p50_ms": one["p50"],
        "search_p95_ms": one["p95"],
        "search_rate_1_client": one["throughput"],
    }


def _patients_with_observations(url: str, n: int) -> list[str]:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        rows = conn.execute(
            "SELECT DISTINCT patient_id FROM resource TABLESAMPLE SYSTEM (2) "
            "WHERE resource_type = 'Observation' AND patient_id IS NOT NULL LIMIT %s",
            (n,),
        ).fetchall()
    ids = [r[0] for r in rows]
    random.Random(11).shuffle(ids)
    return ids


def raw_floor(url: str, seconds: float) -> dict[str, float]:
    """The same rows fetched with one SQL statement each and serialised, no HTTP, no app."""
    ids = sample_ids(url, "Patient", 2000)
    patients = _patients_with_observations(url, 1000)
    read_ms: list[float] = []
    search_ms: list[float] = []
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        deadline = time.perf_counter() + seconds / 2
        i = 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            row = conn.execute(
                "SELECT body FROM resource WHERE resource_type = 'Patient' AND resource_id = %s",
                (ids[i % len(ids)],),
            ).fetchone()
            assert row is not None
            row[0].encode()
            read_ms.append((time.perf_counter() - t0) * 1000)
            i += 1
        deadline = time.perf_counter() + seconds / 2
        i = 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            rows = conn.execute(
                "SELECT r.body FROM resource r JOIN search_reference s ON s.resource_pk = r.pk "
                "AND s.resource_type = 'Observation' AND s.param = 'patient' AND s.target_type = 'Patient' "
                "AND s.target_id = %s WHERE NOT r.deleted "
                "ORDER BY (SELECT max(d.high) FROM search_date d WHERE d.resource_pk = r.pk AND d.param = 'date') "
                "DESC NULLS LAST, r.pk LIMIT 51",
                (patients[i % len(patients)],),
            ).fetchall()
            ("[" + ",".join(r[0] for r in rows) + "]").encode()
            search_ms.append((time.perf_counter() - t0) * 1000)
            i += 1
    return {
        "floor_read_p50_ms": statistics.median(read_ms),
        "floor_read_rate_1_conn": len(read_ms) / (seconds / 2),
        "floor_search_p50_ms": statistics.median(search_ms),
        "floor_search_p95_ms": sorted(search_ms)[int(len(search_ms) * 0.95) - 1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--fresh", action="store_true", help="drop and reload the benchmark database"
    )
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--ingest-resources", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--skip", default="", help="comma-separated: ingest,read,search,floor")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    url = bench_url().replace("carejoin_bench", f"carejoin_bench_{args.people}")
    ensure_database(url, fresh=args.fresh)
    figures: dict[str, float] = {
        "people": args.people,
        "workers": args.workers,
        "dispatch_events": int(os.environ.get("CAREJOIN_DISPATCH_EVENTS", "false") == "true"),
    }
    figures.update(load_population(url, args.people, processes=args.load_processes))
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        figures["resources_in_store"] = conn.execute("SELECT count(*) FROM resource").fetchone()[0]  # type: ignore[index]
    with server(url, workers=args.workers) as (host, port, proc):
        figures["rss_idle_mb"] = rss_mb(proc.pid)
        if "read" not in skip:
            figures.update(measure_reads(host, port, url, args.seconds))
            figures["rss_after_read_mb"] = rss_mb(proc.pid)
        if "search" not in skip:
            figures.update(measure_search(host, port, url, args.seconds))
            figures["rss_after_search_mb"] = rss_mb(proc.pid)
        if "ingest" not in skip:
            figures.update(
                measure_ingest(
                    host, port, args.people, resources=args.ingest_resources, concurrency=4
                )
            )
            figures["rss_after_ingest_mb"] = rss_mb(proc.pid)
    if "floor" not in skip:
        figures.update(raw_floor(url, args.seconds))
        if "read_1_client_p50_ms" in figures:
            # Both at one client, one request at a time: what HTTP and the app add per read.
            figures["read_1_client_p50_ratio_to_floor"] = (
                figures["read_1_client_p50_ms"] / figures["floor_read_p50_ms"]
            )
        if "search_p50_ms" in figures:
            figures["search_p50_ratio_to_floor"] = (
                figures["search_p50_ms"] / figures["floor_search_p50_ms"]
            )
    print(f"\nmachine: {machine()}; date: {datetime.now(UTC):%Y-%m-%d}; database: PostgreSQL")
    for key, value in figures.items():
        print(f"{key:32} {value:12.2f}" if isinstance(value, float) else f"{key:32} {value:>12}")


if __name__ == "__main__":
    main()

"""Reverse chaining (``_has``) on the benchmark database, as the GP and as the client granted
everything, through the service over HTTP.

    python -m benchmarks.reverse_chain --people 10000

Searches ``Patient?_has:Observation:patient:code=<a code every patient has>`` (the worst case:
every Patient is a candidate), with the accurate total and without it, and one that matches
nobody (a Condition status no record has, among the GP practice's patients). Prints each
search's median over ``--repeat`` requests after one warm-up, the total and the entries.
No target is set for it; it guards against plans that test every referring resource.
"""

import argparse
import statistics
import time
from datetime import UTC, datetime

import httpx

from benchmarks.common import bench_token, bench_url, machine, server
from benchmarks.consent import GP_CLAIMS
from fhir_gateway import migrate
from fhir_gateway.db import create_engine_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=10_000, help="which benchmark database")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    url = bench_url().replace("carejoin_bench", f"carejoin_bench_{args.people}")
    engine = create_engine_for(url)
    migrate.upgrade(engine)  # the service refuses a database behind its code
    engine.dispose()
    print(f"\nmachine: {machine()}; date: {datetime.now(UTC):%Y-%m-%d}; database: PostgreSQL")
    with server(url) as (host, port, _):
        base = f"http://{host}:{port}/fhir"
        callers = {
            "all": {"Authorization": f"Bearer {bench_token(base)}"},
            "gp": {"Authorization": f"Bearer {bench_token(base, GP_CLAIMS)}"},
        }
        with httpx.Client(timeout=300, headers={"Accept": "application/fhir+json"}) as client:
            sample = client.get(
                f"{base}/Observation", params={"_count": "1"}, headers=callers["all"]
            ).json()
            code = sample["entry"][0]["resource"]["code"]["coding"][0]["code"]
            searches = {
                "common_code_total": {"_has:Observation:patient:code": code},
                "common_code_no_total": {"_has:Observation:patient:code": code, "_total": "none"},
                "no_match": {
                    "_has:Condition:subject:clinical-status": "no-such-status",
                    "general-practitioner": "Organization/Z90001",
                },
            }
            for who, headers in callers.items():
                for name, params in searches.items():
                    times = []
                    for _ in range(args.repeat + 1):
                        began = time.perf_counter()
                        response = client.get(
                            f"{base}/Patient", params={**params, "_count": "20"}, headers=headers
                        )
                        times.append((time.perf_counter() - began) * 1000)
                        response.raise_for_status()
                    bundle = response.json()
                    key = f"{who}_{name}"
                    print(f"{key + '_median_ms':48} {statistics.median(times[1:]):12.2f}")
                    print(f"{key + '_total':48} {bundle.get('total', -1):>12}")
                    print(f"{key + '_entries':48} {len(bundle.get('entry', [])):>12}")


if __name__ == "__main__":
    main()

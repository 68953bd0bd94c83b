"""Consent and audit on the read paths, on PostgreSQL.

The same requests by two callers, through the same code (authentication, the consent
predicate compiled into the query, an AuditEvent per person committed with the data):

- a GP at practice Z90001 (the heavy people are registered there), whose access the demo
  agreement, the relationship and the person's directives decide;
- the benchmark system client, whose clause of the agreement grants everything: the
  baseline that consent's cost is measured against;
- with ``--choices``, every heavy person first records a privacy Consent whose provisions
  are narrowed every way a choice can be (recipient, source, label, purpose, type, code,
  period of data), so that the GP's requests test each kind of directive against each
  resource; removed again at the end (compare the GP's figures with a run without it);
- with ``--narrowed``, the same GP through an app whose SMART scopes narrow Observations by
  a search parameter (``user/Observation.rs?code=...``, every other type whole) that every
  Observation of the heavy people meets: the same entries, and what the narrowing's test in
  the query costs beside the GP's figures.

Figures: ``$everything?_count=500`` for people with about 300 resources across three sources
(p50, p99 at concurrency 1; requests/s at 8), ``Observation?patient=..&_count=50&_sort=-date``
(p50, p95 at concurrency 1), read by id (requests/s at 8; p99 paced at 1,000/s), each beside
the raw-SQL floor; and what writing the AuditEvent costs a read: on the read path's own
statement with and without its audit insert (psycopg, 8 concurrent connections), and on the
service, the GP's reads per second with the audit (and the sealer) against the same server
with the read's audit insert taken out.

Loads the population (``benchmarks.fhir_store``) and the heavy people
(``benchmarks.everything``) if they are not there yet.

    python -m benchmarks.consent --people 100000 --heavy 50
"""

import argparse
import asyncio
import json
import os
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import AsyncRawCursor
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool

from benchmarks.common import (
    BENCH_CLIENT,
    TOKEN_VARIABLE,
    bench_agreement,
    bench_token,
    bench_url,
    ensure_database,
    machine,
    rss_mb,
    server,
)
from benchmarks.everything import SOURCES, floor, load_heavy, transact
from benchmarks.fhir_store import _in_process, load_population
from benchmarks.loadgen import run_in_process
from consent.audit import Action, Outcome, record_for
from consent.context import context_from_claims
from fhir_gateway.access.service import parse_document, predicate_for
from fhir_gateway.db import create_engine_for, session_factory_for
from fhir_gateway.search.registry import SUPPORTED_TYPES
from fhir_gateway.store import reads

GP_CLAIMS: dict[str, object] = {
    "sub": "gp-Z90001-0",
    "fhirUser": "Practitioner/gp-Z90001-0",
    "organization": "Z90001",
    "role": "R8000",
    "scope": "user/*.rs",
}


# Every type whole but Observation, narrowed to the code all the heavy people's
# Observations carry (``benchmarks.everything``): the GP's entries, through the narrowing.
NARROWED_CLAIMS: dict[str, object] = {
    **GP_CLAIMS,
    "scope": " ".join(
        [
            *(f"user/{t}.rs" for t in sorted(SUPPORTED_TYPES) if t != "Observation"),
            "user/Observation.rs?code=http://snomed.info/sct|27113001",
        ]
    ),
}


def _loadgen(
    port: int, token: str, paths: list[str], concurrency: int, seconds: float, rate: float | None
) -> dict[str, float]:
    # The load generator runs in a spawned process, which reads the token from the
    # environment when it starts.
    os.environ[TOKEN_VARIABLE] = token
    return _in_process(run_in_process, "127.0.0.1", port, paths, concurrency, seconds, rate)


# What each heavy person chooses with ``--choices``: an objection to the council, and nested
# exceptions and narrower objections of every kind, most of which apply to the GP.
_COUNCIL = {
    "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Z10C"}
}


def _choices(patient: str) -> dict[str, Any]:
    def actor(role: str, reference: dict[str, Any]) -> dict[str, Any]:
        return {"role": {"coding": [{"code": role}]}, "reference": reference}

    def coding(system: str, code: str) -> dict[str, Any]:
        return {"system": system, "code": code}

    return {
        "resourceType": "Consent",
        "id": f"bench-choices-{patient}",
        "meta": {"source": SOURCES[0][1]},
        "status": "active",
        "scope": {
            "coding": [
                coding("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy")
            ]
        },
        "category": [{"coding": [coding("http://loinc.org", "59284-0")]}],
        "patient": {"reference": f"Patient/{patient}"},
        "provision": {
            "type": "deny",
            "actor": [actor("IRCP", _COUNCIL)],
            "provision": [
                {
                    "type": "permit",
                    "code": [{"coding": [coding("http://snomed.info/sct", "27113001")]}],
                },
                {
                    "type": "deny",
                    "securityLabel": [
                        coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "PSY")
                    ],
                },
                {
                    "type": "deny",
                    "purpose": [
                        coding(
                            "https://fhir.carejoin.example/CodeSystem/purpose-of-use", "CASEFIND"
                        )
                    ],
                },
                {
                    "type": "deny",
                    "class": [coding("http://hl7.org/fhir/resource-types", "CarePlan")],
                    "actor": [
                        actor("CST", {"identifier": {**_COUNCIL["identifier"], "value": "Z9H"}})
                    ],
                },
                {"type": "deny", "dataPeriod": {"end": "1990-12-31"}},
            ],
        },
    }


def _record_choices(url: str, firsts: list[str], *, remove: bool = False) -> None:
    """Record (or, ``remove``, delete) each heavy person's choices, as the GP's source."""
    engine = create_engine_for(url)
    factory = session_factory_for(engine)
    entries = [
        {"request": {"method": "DELETE", "url": f"Consent/bench-choices-{p}"}}
        if remove
        else {
            "resource": _choices(p),
            "request": {"method": "PUT", "url": f"Consent/bench-choices-{p}"},
        }
        for p in firsts
    ]
    with factory.begin() as session:
        transact(session, entries)
    engine.dispose()


def _heavy_resources(url: str, firsts: list[str]) -> tuple[list[str], list[str]]:
    """(every heavy source patient id, read paths of their resources)."""
    patients = [f.replace("-gp-", f"-{p}-") for f in firsts for p, _ in SOURCES]
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        rows = conn.execute(
            # What a source recorded (identity's own Person and Provenances are seen only
            # by callers granted everything, so a GP's read of them would be a 404).
            "SELECT resource_type, resource_id FROM resource "
            "WHERE patient_id = ANY(%s) AND NOT deleted AND source_org IS NOT NULL ORDER BY pk",
            (patients,),
        ).fetchall()
    return patients, [f"/fhir/{t}/{i}" for t, i in rows]


def _search_floor(url: str, patients: list[str], seconds: float) -> dict[str, float]:
    times: list[float] = []
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        deadline = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            rows = conn.execute(
                "SELECT r.body FROM resource r JOIN search_date d ON d.resource_pk = r.pk "
                "AND d.param = 'date' WHERE r.resource_type = 'Observation' "
                "AND r.patient_id = %s AND NOT r.deleted ORDER BY d.high DESC NULLS LAST "
                "LIMIT 51",
                (patients[i % len(patients)],),
            ).fetchall()
            ("[" + ",".join(r[0] for r in rows) + "]").encode()
            times.append((time.perf_counter() - t0) * 1000)
            i += 1
    ordered = sorted(times)
    return {
        "floor_search_p50_ms": statistics.median(times),
        "floor_search_p95_ms": ordered[int(len(ordered) * 0.95) - 1],
    }


async def _sql_reads(
    conninfo: str, statement: reads.ReadStatement, params: list[dict[str, Any]], seconds: float
) -> float:
    """Statements per second at 8 connections (autocommit, raw positional, prepared, as the
    read path runs them) over ``params``."""
    pool = AsyncConnectionPool(
        conninfo,
        min_size=8,
        max_size=8,
        kwargs={
            "autocommit": True,
            "row_factory": namedtuple_row,
            "cursor_factory": AsyncRawCursor,
        },
        open=False,
    )
    await pool.open()
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal done
        i = k
        async with pool.connection() as conn:
            while time.perf_counter() < deadline:
                # Each audited read records an event of its own.
                given = {**params[i % len(params)], "a_event_id": f"{time.time_ns():016x}{k:016x}"}
                cursor = await conn.execute(statement.sql, statement.bind(given))
                await cursor.fetchone()
                done += 1
                i += 8

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(8)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return done / elapsed


def audit_cost(url: str, read_paths: list[str], seconds: float) -> dict[str, float]:
    """The GP's read statement with its audit insert against the same without it."""
    agreement = parse_document(json.loads(bench_agreement().read_text()))
    context = context_from_claims(GP_CLAIMS)
    predicate = predicate_for(context, agreement)
    with_audit = reads._compiled("current", predicate)
    without_audit = reads._compiled("current", predicate, audited=False)
    now = datetime.now(UTC)
    audit = record_for(
        context,
        recorded_at=now,
        action=Action.READ,
        interaction="read",
        outcome=Outcome.SUCCESS,
        query="/fhir/benchmark",
    )
    access = reads.ReadAccess(predicate=predicate, now=now, audit=audit)
    targets = [p.split("/")[2:4] for p in read_paths]
    params = [reads._params(access, resource_type=t, resource_id=i) for t, i in targets]
    conninfo = url.replace("+psycopg", "")
    plain = asyncio.run(_sql_reads(conninfo, without_audit, params, seconds))
    audited = asyncio.run(_sql_reads(conninfo, with_audit, params, seconds))
    return {
        "sql_read_rate_without_audit": plain,
        "sql_read_rate_with_audit": audited,
        "audit_read_rate_drop_pct": 100 * (1 - audited / plain),
    }


def _sealing(url: str, stop: Any) -> None:
    """The background sealer, as a worker process beside the server would run it."""
    import threading

    from fhir_gateway.audit import sealer
    from fhir_gateway.db import create_engine_for, session_factory_for

    engine = create_engine_for(url)
    factory = session_factory_for(engine)
    state = sealer.Sealer()
    halt = threading.Event()
    try:
        while not stop.is_set():
            sealer.seal_all(factory, block_size=10000, stop=halt, sealer=state)
            stop.wait(2.0)
    finally:
        engine.dispose()


AUDIT_LOADS = {"": (8, 1), "_32_clients": (32, 1), "_8_users": (8, 8)}
"""The audit's service rounds: figure-name suffix to (concurrent clients, distinct users).

8 clients of one user is the foundation's read figure: every client waits for its read's
commit (a closed loop the commit's flush lengthens), and the user's reads group. 32 clients of
one user keep the one server process busy: how many reads the service can serve. 8 clients
each its own user (GPs of the same practice) is the shape of many people at work: their reads
never share a statement or a commit."""


def service_audit_cost(
    url: str, read_paths: list[str], seconds: float, workers: int = 1, rounds: int = 3
) -> dict[str, float]:
    """The GP's reads by id per second under each of ``AUDIT_LOADS`` on the service as it is (each read commits its AuditEvent; the sealer seals them in a process of
    its own) and on the same service with the read's audit insert taken out
    (``benchmarks.without_read_audit``), ``rounds`` rounds of each, alternating, so that the
    machine's drift falls on both; ``workers`` server processes in both.

    The sealer runs as deployed: one long-lived process, started before the rounds and left
    to reach its floor (its start sweeps the whole trail, a cost paid once per deployment,
    not per read), sealing through every round; in the rounds without the read's insert it
    finds nothing to seal."""
    import multiprocessing

    from fhir_gateway.audit import sealer
    from fhir_gateway.db import create_engine_for, session_factory_for

    # What earlier runs left unsealed is sealed first: the rounds' sealer then has only the
    # events of the reads being measured to seal.
    engine = create_engine_for(url)
    try:
        sealer.seal_all(session_factory_for(engine), block_size=10000)
    finally:
        engine.dispose()
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    sealing = spawn.Process(target=_sealing, args=(url, stop))
    sealing.start()
    time.sleep(sealer.CANDIDATE_AGE + 10)  # its start: the sweep, then the floor
    rates: dict[tuple[str, bool], list[float]] = {}
    errors = 0
    try:
        for _ in range(rounds):
            for audited in (True, False):
                app = (
                    "carejoin.app:create_service"
                    if audited
                    else "benchmarks.without_read_audit:create_service"
                )
                with server(url, workers=workers, app=app) as (host, port, _):
                    base = f"http://{host}:{port}/fhir"
                    users = [
                        bench_token(
                            base,
                            {
                                **GP_CLAIMS,
                                "sub": f"{GP_CLAIMS['sub']}-{k}",
                                "fhirUser": f"{GP_CLAIMS['fhirUser']}-{k}",
                            },
                        )
                        for k in range(8)
                    ]
                    token = bench_token(base, GP_CLAIMS)
                    _loadgen(port, token, read_paths[:500], 8, 3.0, None)
                    for name, (clients, distinct) in AUDIT_LOADS.items():
                        # Several tokens: the load generator's connection k sends the k-th.
                        tokens = token if distinct == 1 else " ".join(users[:distinct])
                        result = _loadgen(port, tokens, read_paths, clients, seconds, None)
                        rates.setdefault((name, audited), []).append(result["throughput"])
                        errors += int(result["errors"])
    finally:
        stop.set()
        sealing.join(timeout=60)
    figures: dict[str, float] = {"service_audit_workers": workers, "service_audit_errors": errors}
    for at in AUDIT_LOADS:  # the figures of 8 clients of one user keep their old names
        for audited in (True, False):
            kind = "with" if audited else "without"
            for n, rate in enumerate(rates[(at, audited)]):
                figures[f"service_read_rate{at}_{kind}_audit_round_{n + 1}"] = rate
        with_audit = statistics.mean(rates[(at, True)])
        without = statistics.mean(rates[(at, False)])
        figures[f"service_read_rate{at}_with_audit"] = with_audit
        figures[f"service_read_rate{at}_without_audit"] = without
        figures[f"service_audit{at}_read_rate_drop_pct"] = 100 * (1 - with_audit / without)
    return figures


def measure(
    port: int,
    tokens: dict[str, str],
    paths: tuple[list[str], list[str], list[str]],
    seconds: float,
) -> dict[str, float]:
    """Each load by each caller (``tokens``: label to token), in rounds ordered A B B A so
    that the machine's drift and whatever the earlier loads left behind (a longer audit
    trail, a warmer cache) fall on both callers alike; each figure is the mean of a caller's
    two rounds, each round half of ``seconds``."""
    everything_paths, search_paths, read_paths = paths
    for token in tokens.values():  # warm up: statements compiled and prepared for both
        _loadgen(port, token, everything_paths, 1, 3.0, None)
        _loadgen(port, token, read_paths[:500], 8, 3.0, None)
    loads: dict[str, tuple[list[str], int, float | None]] = {
        "one": (everything_paths, 1, None),
        "eight": (everything_paths, 8, None),
        "search": (search_paths, 1, None),
        "read8": (read_paths, 8, None),
        "paced": (read_paths, 8, 1000.0),
    }
    order = list(tokens)
    rounds: dict[tuple[str, str], list[dict[str, float]]] = {}
    for name, (load_paths, concurrency, rate) in loads.items():
        for label in (*order, *reversed(order)):
            figures = _loadgen(port, tokens[label], load_paths, concurrency, seconds / 2, rate)
            rounds.setdefault((label, name), []).append(figures)

    def mean(label: str, name: str, key: str) -> float:
        return statistics.mean(r[key] for r in rounds[(label, name)])

    figures: dict[str, float] = {}
    for label in order:
        figures.update(
            {
                f"{label}_everything_p50_ms": mean(label, "one", "p50"),
                f"{label}_everything_p99_ms": mean(label, "one", "p99"),
                f"{label}_everything_rate_8": mean(label, "eight", "throughput"),
                f"{label}_search_p50_ms": mean(label, "search", "p50"),
                f"{label}_search_p95_ms": mean(label, "search", "p95"),
                f"{label}_read_rate_8": mean(label, "read8", "throughput"),
                f"{label}_read_paced_p99_ms": mean(label, "paced", "p99"),
                f"{label}_errors": sum(
                    r["errors"] for name in loads for r in rounds[(label, name)]
                ),
            }
        )
    return figures


def _entries(token: str, base: str, path: str) -> int:
    import httpx

    response = httpx.get(base + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    response.raise_for_status()
    return len([e for e in response.json().get("entry", []) if e["search"]["mode"] != "outcome"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--heavy", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--only-audit",
        action="store_true",
        help="only what writing the audit costs reads (statement and service)",
    )
    parser.add_argument(
        "--choices",
        action="store_true",
        help="the heavy people record choices narrowed every way (removed at the end)",
    )
    parser.add_argument(
        "--narrowed",
        action="store_true",
        help="also the GP through SMART scopes narrowed by a search parameter",
    )
    args = parser.parse_args()
    url = bench_url().replace("carejoin_bench", f"carejoin_bench_{args.people}")
    ensure_database(url, fresh=False)
    figures: dict[str, float] = {"people": args.people, "heavy_people": args.heavy}
    load_population(url, args.people, processes=args.load_processes)
    firsts = load_heavy(url, args.heavy)
    patients, read_paths = _heavy_resources(url, firsts)
    figures["heavy_source_patients"] = len(patients)
    figures["heavy_resources"] = len(read_paths)
    everything_paths = [f"/fhir/Patient/{p}/$everything?_count=500" for p in firsts]
    search_paths = [f"/fhir/Observation?patient={p}&_count=50&_sort=-date" for p in firsts]
    paths = (everything_paths, search_paths, read_paths)
    if args.only_audit:
        figures.update(audit_cost(url, read_paths, args.seconds / 2))
        figures.update(service_audit_cost(url, read_paths, args.seconds / 2, args.workers))
        _print(figures)
        return
    figures["workers"] = args.workers
    figures["choices"] = int(args.choices)
    if args.choices:
        _record_choices(url, firsts)
    try:
        _measure_service(url, args, figures, firsts, paths, read_paths)
    finally:
        if args.choices:
            _record_choices(url, firsts, remove=True)
    _print(figures)


def _measure_service(
    url: str,
    args: argparse.Namespace,
    figures: dict[str, float],
    firsts: list[str],
    paths: tuple[list[str], list[str], list[str]],
    read_paths: list[str],
) -> None:
    with server(url, workers=args.workers) as (host, port, proc):
        base = f"http://{host}:{port}"
        gp = bench_token(f"{base}/fhir", GP_CLAIMS)
        everyone = bench_token(f"{base}/fhir", BENCH_CLIENT)
        figures["gp_everything_entries"] = _entries(gp, base, paths[0][0])
        figures["all_everything_entries"] = _entries(everyone, base, paths[0][0])
        tokens = {"all": everyone, "gp": gp}
        if args.narrowed:
            tokens["narrowed"] = bench_token(f"{base}/fhir", NARROWED_CLAIMS)
            figures["narrowed_everything_entries"] = _entries(tokens["narrowed"], base, paths[0][0])
        figures.update(measure(port, tokens, paths, args.seconds))
        figures["rss_after_mb"] = rss_mb(proc.pid)
    figures.update(floor(url, firsts, args.seconds / 2))
    figures.update(_search_floor(url, firsts, args.seconds / 2))
    figures.update(audit_cost(url, read_paths, args.seconds / 2))
    figures.update(service_audit_cost(url, read_paths, args.seconds / 2, args.workers))
    for kind, key in (("everything", "p50_ms"), ("everything", "p99_ms"), ("search", "p95_ms")):
        figures[f"consent_{kind}_{key}_added_pct"] = 100 * (
            figures[f"gp_{kind}_{key}"] / figures[f"all_{kind}_{key}"] - 1
        )
    if args.narrowed:
        for kind, key in (("everything", "p50_ms"), ("everything", "p99_ms"), ("search", "p95_ms")):
            figures[f"narrowing_{kind}_{key}_added_pct"] = 100 * (
                figures[f"narrowed_{kind}_{key}"] / figures[f"gp_{kind}_{key}"] - 1
            )
    figures["gp_everything_p50_ratio_to_floor"] = (
        figures["gp_everything_p50_ms"] / figures["floor_p50_ms"]
    )
    figures["gp_search_p95_ratio_to_floor"] = (
        figures["gp_search_p95_ms"] / figures["floor_search_p95_ms"]
    )


def _print(figures: dict[str, float]) -> None:
    print(f"\nmachine: {machine()}; date: {datetime.now(UTC):%Y-%m-%d}; database: PostgreSQL")
    for key, value in figures.items():
        print(f"{key:40} {value:12.2f}" if isinstance(value, float) else f"{key:40} {value:>12}")


if __name__ == "__main__":
    main()

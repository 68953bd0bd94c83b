"""Coordination's figures on the synthetic population (PostgreSQL), printed as a table.

    python -m benchmarks.coordination --people 100000
    python -m benchmarks.coordination --people 100000 --admissions 1000 --rate 5

Needs the population loaded and linked first (``benchmarks.fhir_store`` then ``carejoin
link``, see docs/benchmarks.md). Three figures:

1. Case-finding for the whole registered population (``carejoin casefind``'s code path),
   target under 60 s.
2. A coordinator's worklist with 120 people (some with tasks, admissions and care plans),
   ``GET /coordination/worklist`` through the running service, one client, target p95 under
   50 ms.
3. From the last byte of an ADT^A01 sent over MLLP to the admission task showing in the
   coordinator's worklist API, for ``--admissions`` admissions of people on caseloads sent
   at ``--rate`` per second while other ingest (new people's records as transaction
   bundles, ``--ingest-rate`` resources per second) runs; target p95 under 1 s. The server runs its outbox dispatcher (interval
   0.25 s); the MLLP listener is its own process, as in production.

The benchmark owns coordination's tables in the benchmark database: it clears caseloads,
tasks and person state before it starts (the FHIR resources earlier runs wrote stay).
Events already in the outbox from the initial load are marked processed first: an initial
load is linked and case-found in batch (``carejoin link``, ``carejoin casefind``).
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import httpx
import orjson
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.common import (
    ROOT,
    bench_agreement,
    bench_token,
    bench_url,
    free_port,
    machine,
    merged_transactions,
    server,
)
from carejoin.synthetic import REFERENCE_DATE, person_bundles
from coordination.case_finding import service as case_finding
from coordination.case_finding.models import CaseFindingRow
from coordination.caseload import service as caseload
from coordination.caseload.models import CaseRow, PersonStateRow, TaskRow
from coordination.settings import CoordinationSettings
from coordination.task import service as tasks
from coordination.team import service as teams
from coordination.team.schemas import TeamIn
from fhir_gateway import migrate
from fhir_gateway.access.service import parse_document
from fhir_gateway.db import create_engine_for, session_factory_for
from fhir_gateway.identity.models import IdentityRecord
from fhir_gateway.store.models import OutboxRow, ResourceRow

DEMO_TEAMS = ROOT / "carejoin" / "data" / "demo_teams.json"
WORKLIST_COORDINATOR = "coord-2"
WORKLIST_PEOPLE = 120
BENCH_COORDINATORS_PER_TEAM = 4  # extra coordinators who carry the alert benchmark's people


def _teams(factory: sessionmaker[Session], settings: CoordinationSettings) -> None:
    document = json.loads(DEMO_TEAMS.read_text())
    with factory.begin() as session:
        for team_id, body in document.items():
            members = list(body["members"]) + [
                {
                    "practitioner": f"bench-{team_id}-{n}",
                    "discipline": "nursing",
                    "capacity": 400,
                }
                for n in range(BENCH_COORDINATORS_PER_TEAM)
            ]
            teams.put_team(
                session,
                team_id,
                TeamIn.model_validate({**body, "members": members}),
                now=datetime.now(UTC),
                settings=settings,
            )


def _reset(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        for table in (TaskRow, PersonStateRow, CaseRow):
            session.execute(delete(table))
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.processed_at.is_(None))
            .values(processed_at=datetime.now(UTC))
        )


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "n": len(ordered),
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


# -- 1. case-finding -------------------------------------------------------------------------


def bench_casefind(
    factory: sessionmaker[Session], settings: CoordinationSettings
) -> dict[str, Any]:
    agreement = parse_document(json.loads(bench_agreement().read_text()))
    started = time.perf_counter()
    report = case_finding.run(
        factory, agreement, settings, as_of=REFERENCE_DATE, now=datetime.now(UTC), chunk=1000
    )
    seconds = time.perf_counter() - started
    return {
        "persons": report.persons,
        "found": report.found,
        "seconds": round(seconds, 1),
        "persons_per_second": round(report.persons / seconds),
    }


# -- 2. the worklist -----------------------------------------------------------------------


def _fill_worklist(factory: sessionmaker[Session]) -> list[str]:
    """120 people of the team on coord-2's caseload: the team's highest-need people first,
    some admitted, some just discharged, some with care plans, tasks due and overdue."""
    now = datetime.now(UTC)
    rng = random.Random(7)
    with factory.begin() as session:
        rows = session.scalars(
            select(CaseFindingRow)
            .where(CaseFindingRow.team_id == "int-millbrook")
            .order_by(CaseFindingRow.need.desc())
            .limit(WORKLIST_PEOPLE)
        ).all()
        people = []
        for row in rows:
            assert row.patient_id is not None
            case_row = caseload.open_case(
                session,
                person_id=row.person_id,
                patient_id=row.patient_id,
                team_id="int-millbrook",
                coordinator=WORKLIST_COORDINATOR,
                route="case-finding",
                now=now,
            )
            people.append(row.person_id)
            roll = rng.random()
            state = PersonStateRow(person_id=row.person_id, updated_at=now)
            if roll < 0.1:
                state.admitted_at, state.admission = now, "Encounter/bench"
            elif roll < 0.2:
                state.discharged_at, state.discharge = now, "Encounter/bench"
            if rng.random() < 0.5:
                state.care_plan = "CarePlan/bench"
            session.add(state)
            for _ in range(rng.randrange(3)):
                tasks.raise_task(
                    session,
                    kind="general",
                    person_id=row.person_id,
                    patient_id=case_row.patient_id,
                    team_id="int-millbrook",
                    owner=WORKLIST_COORDINATOR,
                    due=date.fromordinal(now.date().toordinal() + rng.randrange(-5, 6)),
                    now=now,
                    description="Benchmark task",
                )
    return people


def _user_token(base_url: str, practitioner: str) -> str:
    return bench_token(
        base_url,
        {
            "sub": practitioner,
            "fhirUser": f"Practitioner/{practitioner}",
            "organization": "Z9C01",
            "role": "CJ0002",
            "scope": "user/*.rs",
        },
    )


def bench_worklist(url: str, factory: sessionmaker[Session], seconds: float) -> dict[str, Any]:
    people = _fill_worklist(factory)
    with server(url) as (host, port, _proc):
        base = f"http://{host}:{port}"
        token = _user_token(f"{base}/fhir", WORKLIST_COORDINATOR)
        headers = {"Authorization": f"Bearer {token}"}
        samples: list[float] = []
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            first = client.get("/coordination/worklist")
            assert first.status_code == 200, first.text
            assert len(first.json()["entries"]) == len(people)
            for _ in range(20):
                client.get("/coordination/worklist")
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = client.get("/coordination/worklist")
                samples.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
    return {"people": len(people), **{k: round(v, 2) for k, v in _percentiles(samples).items()}}


# -- 3. admission alerts over MLLP ---------------------------------------------------------


@dataclass
class Admission:
    person_id: str
    coordinator: str
    mrn: str
    nhs: str | None
    family: str
    given: str
    birth: str
    gender: str


def _alert_population(factory: sessionmaker[Session], count: int) -> list[Admission]:
    """``count`` people with a hospital record, put on the bench coordinators' caseloads."""
    now = datetime.now(UTC)
    out: list[Admission] = []
    with factory.begin() as session:
        rows = session.execute(
            select(CaseFindingRow.person_id, CaseFindingRow.patient_id, CaseFindingRow.team_id)
            .where(CaseFindingRow.team_id.is_not(None))
            .order_by(CaseFindingRow.person_id)
        ).all()
        taken = set(session.scalars(select(CaseRow.person_id)))
        load: dict[str, int] = {}
        for person_id, patient_id, team_id in rows:
            if len(out) >= count:
                break
            if person_id in taken or patient_id is None or team_id is None:
                continue
            hospital = session.execute(
                select(ResourceRow.body)
                .join(IdentityRecord, IdentityRecord.patient_id == ResourceRow.patient_id)
                .where(
                    IdentityRecord.person_id == person_id,
                    ResourceRow.resource_type == "Patient",
                    ResourceRow.source_org == "Z9H",
                    ResourceRow.deleted.is_(False),
                )
                .limit(1)
            ).scalar()
            if hospital is None:
                continue
            patient = orjson.loads(hospital)
            mrn = next(
                (i["value"] for i in patient.get("identifier", []) if i["system"].endswith("/mrn")),
                None,
            )
            if mrn is None:
                continue
            n = load.get(team_id, 0)
            load[team_id] = n + 1
            coordinator = f"bench-{team_id}-{n % BENCH_COORDINATORS_PER_TEAM}"
            caseload.open_case(
                session,
                person_id=person_id,
                patient_id=patient_id,
                team_id=team_id,
                coordinator=coordinator,
                route="case-finding",
                now=now,
            )
            nhs = next(
                (
                    i["value"]
                    for i in patient.get("identifier", [])
                    if i["system"] == "https://fhir.nhs.uk/Id/nhs-number"
                ),
                None,
            )
            name = (patient.get("name") or [{}])[0]
            out.append(
                Admission(
                    person_id,
                    coordinator,
                    mrn,
                    nhs,
                    name.get("family", "UNKNOWN"),
                    (name.get("given") or ["UNKNOWN"])[0],
                    patient.get("birthDate", "19400101").replace("-", ""),
                    {"female": "F", "male": "M"}.get(patient.get("gender", ""), "U"),
                )
            )
    return out


def _a01(a: Admission, control: str, visit: str, when: datetime) -> bytes:
    stamp = when.strftime("%Y%m%d%H%M%S")
    pid3 = f"{a.mrn}^^^Z9H^MR" + (f"~{a.nhs}^^^NHS^NH" if a.nhs else "")
    pv1 = [""] * 46
    pv1[0], pv1[1], pv1[2], pv1[3], pv1[4] = "PV1", "1", "I", "WARD7^B^12", "21"
    pv1[19], pv1[44] = visit, stamp
    segments = [
        f"MSH|^~\\&|PAS|Z9H|CAREJOIN|CAREJOIN|{stamp}||ADT^A01^ADT_A01|{control}|P|2.4",
        f"EVN|A01|{stamp}",
        f"PID|1||{pid3}||{a.family.upper()}^{a.given.upper()}||{a.birth}|{a.gender}",
        "|".join(pv1),
    ]
    return b"\x0b" + ("\r".join(segments) + "\r").encode() + b"\x1c\r"


async def _send_all(
    port: int, admissions: list[Admission], rate: float, sent: dict[str, float], run: str
) -> list[str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    acks: list[str] = []
    interval = 1 / rate
    start = time.perf_counter()
    for i, admission in enumerate(admissions):
        await asyncio.sleep(max(0.0, start + i * interval - time.perf_counter()))
        frame = _a01(admission, f"BENCH-{run}-{i}", f"BV-{run}-{i}", datetime.now(UTC))
        writer.write(frame)
        await writer.drain()
        sent[admission.person_id] = time.perf_counter()  # the last byte is on its way
        ack = await reader.readuntil(b"\x1c\r")
        acks.append("AA" if b"MSA|AA" in ack else ack.decode(errors="replace"))
    writer.close()
    await writer.wait_closed()
    return acks


def _background_ingest(
    base: str, token: str, stop: threading.Event, counter: list[int], rate: float
) -> None:
    """New people's records (GP, hospital, council) as transaction bundles of about 100
    resources, at ``rate`` resources per second (0: as fast as the server takes them)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    bundles = merged_transactions(
        (
            b
            for _source, b in person_bundles(people=200_000, seed=4242, start=150_000, stop=200_000)
        ),
        size=100,
    )
    started = time.perf_counter()
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for bundle in bundles:
            if stop.is_set():
                return
            response = client.post("/fhir", content=orjson.dumps(bundle))
            if response.status_code == 200:
                counter[0] += len(bundle["entry"])
            if rate > 0:
                time.sleep(max(0.0, started + counter[0] / rate - time.perf_counter()))


def _wait_for_port(port: int, timeout: float = 60.0) -> None:
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError("the MLLP listener did not start")


def bench_alerts(
    url: str, factory: sessionmaker[Session], count: int, rate: float, ingest_rate: float
) -> dict[str, Any]:
    admissions = _alert_population(factory, count)
    os.environ["CAREJOIN_DISPATCH_EVENTS"] = "true"
    mllp_port = free_port()
    run = str(int(time.time()))
    with server(url) as (host, port, _proc):
        base = f"http://{host}:{port}"
        env = {
            **os.environ,
            "CAREJOIN_DATABASE_URL": url,
            "CAREJOIN_BASE_URL": f"{base}/fhir",
            "CAREJOIN_AGREEMENT_PATH": str(bench_agreement()),
        }
        mllp = subprocess.Popen(
            [sys.executable, "-m", "carejoin.cli", "mllp", "--port", str(mllp_port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(mllp_port)
            tokens = {
                c: _user_token(f"{base}/fhir", c) for c in {a.coordinator for a in admissions}
            }
            system = bench_token(f"{base}/fhir")
            stop = threading.Event()
            ingested = [0]
            ingest = threading.Thread(
                target=_background_ingest,
                args=(base, system, stop, ingested, ingest_rate),
                daemon=True,
            )
            ingest.start()
            sent: dict[str, float] = {}
            seen: dict[str, float] = {}
            by_coordinator: dict[str, set[str]] = {}
            for a in admissions:
                by_coordinator.setdefault(a.coordinator, set()).add(a.person_id)
            sending = threading.Thread(
                target=lambda: acks.extend(
                    asyncio.run(_send_all(mllp_port, admissions, rate, sent, run))
                ),
                daemon=True,
            )
            acks: list[str] = []
            started = time.perf_counter()
            sending.start()
            with httpx.Client(base_url=base, timeout=30) as client:
                deadline = time.perf_counter() + count / rate + 60
                while len(seen) < len(admissions) and time.perf_counter() < deadline:
                    for coordinator, people in by_coordinator.items():
                        pending = [p for p in people if p in sent and p not in seen]
                        if not pending:
                            continue
                        response = client.get(
                            "/coordination/worklist?flag=admitted",
                            headers={"Authorization": f"Bearer {tokens[coordinator]}"},
                        )
                        now = time.perf_counter()
                        for entry in response.json()["entries"]:
                            person = entry["person"].removeprefix("Person/")
                            if person in sent and person not in seen and entry["openTasks"] > 0:
                                seen[person] = now
                    time.sleep(0.02)
            sending.join(timeout=60)
            stop.set()
            elapsed = time.perf_counter() - started
        finally:
            mllp.terminate()
            mllp.wait(timeout=30)
    latencies = [(seen[p] - sent[p]) * 1000 for p in seen]
    return {
        "admissions": len(admissions),
        "rate_per_second": rate,
        "acknowledged_AA": sum(1 for a in acks if a == "AA"),
        "seen_in_worklist": len(seen),
        "other_ingest_target_per_second": ingest_rate or "unthrottled",
        "other_ingest_resources_per_second": round(ingested[0] / elapsed, 1),
        **{f"latency_ms_{k}": round(v, 1) for k, v in _percentiles(latencies).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--admissions", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=5.0, help="admissions per second")
    parser.add_argument(
        "--ingest-rate",
        type=float,
        default=100.0,
        help="other ingest, resources per second (0: as fast as the server takes them)",
    )
    parser.add_argument("--skip", default="", help="comma-separated: casefind,worklist,alerts")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    url = bench_url().replace("carejoin_bench", f"carejoin_bench_{args.people}")
    engine = create_engine_for(url)
    migrate.upgrade(engine)
    factory = session_factory_for(engine)
    settings = CoordinationSettings()
    _reset(factory)
    _teams(factory, settings)
    figures: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
    }
    with factory.begin() as session:
        figures["resources"] = session.execute(text("SELECT count(*) FROM resource")).scalar()
    if "casefind" not in skip:
        figures["casefind"] = bench_casefind(factory, settings)
        print("case-finding:", figures["casefind"], flush=True)
    if "worklist" not in skip:
        figures["worklist"] = bench_worklist(url, factory, args.seconds)
        print("worklist:", figures["worklist"], flush=True)
    if "alerts" not in skip:
        figures["alerts"] = bench_alerts(url, factory, args.admissions, args.rate, args.ingest_rate)
        print("alerts:", figures["alerts"], flush=True)
    engine.dispose()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

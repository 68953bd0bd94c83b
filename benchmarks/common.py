"""Shared plumbing for the benchmarks: the database, a server process, RSS, bundles."""

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/carejoin_bench"


def bench_url() -> str:
    return os.environ.get("CAREJOIN_BENCH_DATABASE_URL", DEFAULT_PG)


def ensure_database(url: str, *, fresh: bool) -> None:
    """Create the benchmark database (dropping it first when ``fresh``)."""
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": parsed.database}
        ).first()
        if exists and fresh:
            conn.execute(text(f'DROP DATABASE "{parsed.database}" WITH (FORCE)'))
            exists = None
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(
    url: str,
    *,
    workers: int = 1,
    port: int | None = None,
    env: dict[str, str] | None = None,
    app: str = "carejoin.app:create_service",
) -> Iterator[tuple[str, int, subprocess.Popen[bytes]]]:
    """Run ``uvicorn <app> --factory`` against ``url`` until the block ends.

    ``env``: settings of this server's own (``CAREJOIN_...``). ``app``: the factory every
    server process imports and calls; an experiment's change to the service (such as
    ``benchmarks.without_read_audit:create_service``) is made by the module holding its
    factory, so that each of uvicorn's worker processes, which import the app afresh, has
    it."""
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}/fhir"
    env = {
        **os.environ,
        "CAREJOIN_DATABASE_URL": url,
        "CAREJOIN_BASE_URL": base_url,
        "CAREJOIN_AUTH__DEVELOPMENT_KEY_PATH": str(BENCH_KEY),
        "CAREJOIN_AGREEMENT_PATH": str(bench_agreement()),
        # The store's figures: the outbox dispatcher (identity linking) is measured on its own.
        "CAREJOIN_DISPATCH_EVENTS": os.environ.get("CAREJOIN_DISPATCH_EVENTS", "false"),
        **(env or {}),
    }
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=2).status_code
                    == 200
                ):
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError("the server did not start")
        # Every request is authenticated, as in production: the load generators (spawned
        # processes, which inherit the environment) and the httpx clients send this token.
        os.environ[TOKEN_VARIABLE] = bench_token(base_url)
        yield "127.0.0.1", port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


BENCH_KEY = ROOT / "benchmarks" / "results" / "development-issuer-key.pem"
TOKEN_VARIABLE = "CAREJOIN_BENCH_TOKEN"


BENCH_AGREEMENT = ROOT / "benchmarks" / "results" / "agreement.json"
BENCH_CLIENT = {"sub": "benchmark", "client_id": "benchmark", "scope": "system/*.cruds"}


def bench_agreement() -> Path:
    """The demo's sharing agreement plus a clause letting the benchmark client read
    everything (the caller "whose agreement grants everything")."""
    import json

    document = json.loads((ROOT / "carejoin" / "data" / "demo_agreement.json").read_text())
    document["version"] = "benchmark"
    document["system_clients"].append(
        {"client_id": "benchmark", "categories": ["*"], "from": ["*"], "match": True}
    )
    BENCH_AGREEMENT.parent.mkdir(parents=True, exist_ok=True)
    BENCH_AGREEMENT.write_text(json.dumps(document))
    return BENCH_AGREEMENT


def bench_token(base_url: str, claims: dict[str, object] | None = None) -> str:
    """A development-issuer token for the benchmark server at ``base_url`` (a system client)."""
    from fhir_gateway.auth.issuer import DevelopmentIssuer

    issuer = DevelopmentIssuer(
        issuer=base_url.removesuffix("/fhir") + "/auth",
        audience=base_url,
        key_path=BENCH_KEY,
        lifetime=24 * 3600,
    )
    return issuer.issue(claims or BENCH_CLIENT)


def auth_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {os.environ[TOKEN_VARIABLE]}"}


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), in MiB."""
    total = 0
    pids = [pid, *_children(pid)]
    for p in pids:
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            found.append(int(child))
            found.extend(_children(int(child)))
    return found


def merged_transactions(
    bundles: Iterator[dict[str, Any]], *, size: int = 100
) -> Iterator[dict[str, Any]]:
    """Pack per-person source bundles into transaction bundles of about ``size`` entries."""
    entries: list[Any] = []
    for bundle in bundles:
        entries.extend(bundle.get("entry", []))
        if len(entries) >= size:
            yield {"resourceType": "Bundle", "type": "transaction", "entry": entries}
            entries = []
    if entries:
        yield {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB"
    return f"{os.cpu_count()} cores ({cpu}){mem}"

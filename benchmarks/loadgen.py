"""A small HTTP/1.1 keep-alive load generator on raw asyncio streams.

Run in its own process so the server under test and the client do not share an interpreter.
It is deliberately minimal (GET only, Content-Length bodies) so that on a 2-core machine the
client costs as little CPU as possible; every response status is checked.
"""

import asyncio
import os
import time
from dataclasses import dataclass, field

# The benchmark server's token (benchmarks.common.server sets it before spawning us); several,
# separated by spaces, are several callers: connection k sends the k-th (round robin).
_AUTHS = [
    f"Authorization: Bearer {token}\r\n"
    for token in os.environ.get("CAREJOIN_BENCH_TOKEN", "").split()
] or [""]


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed_s: float = 0.0

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index]


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str, auth: str
) -> int:
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/fhir+json\r\n{auth}\r\n".encode()
    )
    await writer.drain()
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def _worker(
    host: str,
    port: int,
    paths: list[str],
    start_index: int,
    stride: int,
    deadline: float,
    result: LoadResult,
    interval: float | None,
    schedule_start: float,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    auth = _AUTHS[start_index % len(_AUTHS)]
    i = start_index
    n = 0
    try:
        while True:
            now = time.perf_counter()
            if now >= deadline:
                break
            if interval is not None:
                # Open-loop pacing: each worker sends at fixed times, and latency is measured
                # from the scheduled send time, so a slow response is not hidden (no
                # coordinated omission).
                scheduled = schedule_start + n * interval
                if scheduled > now:
                    await asyncio.sleep(scheduled - now)
                started = scheduled
            else:
                started = time.perf_counter()
            status = await _request(reader, writer, host, paths[i % len(paths)], auth)
            finished = time.perf_counter()
            if status != 200:
                result.errors += 1
            else:
                result.latencies_ms.append((finished - started) * 1000)
            i += stride
            n += 1
    finally:
        writer.close()


async def run_load(
    host: str,
    port: int,
    paths: list[str],
    *,
    concurrency: int,
    seconds: float,
    rate: float | None = None,
) -> LoadResult:
    """Closed loop (as fast as each connection can go) or, with ``rate``, paced open loop."""
    result = LoadResult()
    started = time.perf_counter()
    deadline = started + seconds
    interval = concurrency / rate if rate else None
    await asyncio.gather(
        *(
            _worker(
                host,
                port,
                paths,
                k,
                concurrency,
                deadline,
                result,
                interval,
                started + k * (interval or 0) / concurrency,
            )
            for k in range(concurrency)
        )
    )
    result.elapsed_s = time.perf_counter() - started
    return result


def run_in_process(
    host: str, port: int, paths: list[str], concurrency: int, seconds: float, rate: float | None
) -> dict[str, float]:
    """Entry point for a separate process (multiprocessing): returns the figures."""
    coro = run_load(host, port, paths, concurrency=concurrency, seconds=seconds, rate=rate)
    try:
        import uvloop

        result = uvloop.run(coro)
    except ImportError:
        result = asyncio.run(coro)
    return {
        "requests": float(len(result.latencies_ms)),
        "errors": float(result.errors),
        "throughput": result.throughput,
        "p50": result.percentile(50),
        "p95": result.percentile(95),
        "p99": result.percentile(99),
    }

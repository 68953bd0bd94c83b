"""Bulk import of FHIR NDJSON (one resource per line), for a source's initial load.

Where the FHIR ``$import`` proposal fits, this follows it: NDJSON input, resources keep the
ids the source gave them (so re-importing the same file updates rather than duplicates, and
an unchanged resource keeps its version), the result is a per-type count plus an
OperationOutcome-style list of the lines that failed. It is much faster than transaction
bundles because it skips what a bundle needs and a bulk load does not: no urn:uuid
resolution, no conditional interactions, no per-entry response. Validation, the search
index, history and outbox events are exactly those of any other write.

A bad line never stops the import: it is reported with its line number and reason, and
every good line is loaded. Each batch is one transaction.

Given its ``source`` (the registered source system ``carejoin import --source`` names), the
file is that source's: a resource without ``meta.source`` is attributed to it, and a line
naming another source, or updating another source's record, is refused.
"""

import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhir_gateway.access import writer
from fhir_gateway.db import UnitOfWork
from fhir_gateway.feeds import ods_of_source
from fhir_gateway.feeds.sources import SourceSystem
from fhir_gateway.outcomes import OutcomeError
from fhir_gateway.store import repository, service
from fhir_gateway.store.repository import PendingWrite, StoredResource
from fhir_gateway.validation import ElementMemo, parse_json, require_resource_object


@dataclass
class ImportReport:
    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    unchanged: Counter[str] = field(default_factory=Counter)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)

    @property
    def loaded(self) -> int:
        return sum(self.created.values()) + sum(self.updated.values())


def _parse_line(line: str | bytes) -> dict[str, Any]:
    data = require_resource_object(parse_json(line))
    if "id" not in data:
        data = dict(data, id=service.new_id())
    service.check_id(str(data["id"]))
    return data


def _foreign(
    resource: dict[str, Any], existing: StoredResource | None, source: SourceSystem
) -> str | None:
    """Why a line is not ``source``'s to send, if it is not."""
    meta = resource.get("meta")
    named = meta.get("source") if isinstance(meta, dict) else None
    if named and ods_of_source(str(named)) != source.ods:
        return f"meta.source {named} is not this import's source, {source.name} ({source.uri})"
    if existing is not None and existing.source_org != source.ods:
        return (
            f"{existing.resource_type}/{existing.resource_id} is another source's record; "
            f"{source.name} may not change it"
        )
    return None


def _write_batch(
    unit_of_work: UnitOfWork,
    batch: list[tuple[int, dict[str, Any]]],
    report: ImportReport,
    *,
    now: datetime,
    source: SourceSystem | None = None,
    memo: ElementMemo | None = None,
) -> None:
    scope = None if source is None else writer.registered_scope(source.ods)
    with writer.bound(scope), unit_of_work() as session:
        keys = [(str(r["resourceType"]), str(r["id"])) for _n, r in batch]
        current = repository.get_current_many(session, keys, for_update=True)
        writes: list[PendingWrite] = []
        kinds: list[tuple[str, str]] = []
        for number, resource in batch:
            key = (str(resource["resourceType"]), str(resource["id"]))
            existing = current.get(key)
            if source is not None and (problem := _foreign(resource, existing, source)):
                report.errors.append((number, problem))
                continue
            try:
                pending = service.prepare_write(
                    resource,
                    resource_id=key[1],
                    version_id=1 if existing is None else existing.version_id + 1,
                    now=now,
                    method="PUT",
                    existing_pk=None if existing is None else existing.pk,
                    memo=memo,
                )
            except OutcomeError as exc:
                report.errors.append((number, _reason(exc)))
                continue
            if existing is not None and service.same_content(existing, pending):
                report.unchanged[key[0]] += 1
                continue
            writes.append(pending)
            kinds.append((key[0], "created" if existing is None or existing.deleted else "updated"))
        service.write(session, writes)
    for resource_type, kind in kinds:
        (report.created if kind == "created" else report.updated)[resource_type] += 1


def _reason(exc: OutcomeError) -> str:
    outcome = exc.to_outcome()
    details = [
        f"{issue.get('diagnostics', '')}"
        + (f" at {', '.join(issue['expression'])}" if issue.get("expression") else "")
        for issue in outcome.get("issue", [])
    ]
    return "; ".join(d for d in details if d) or str(exc)


def import_ndjson(
    unit_of_work: UnitOfWork,
    lines: Iterable[str | bytes],
    *,
    now: datetime,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
    source: SourceSystem | None = None,
    memo: ElementMemo | None = None,
) -> ImportReport:
    """Load every line of ``lines``; returns what was created, updated, unchanged or refused.
    ``source``: the registered source system the file comes from (see the module's notes).
    ``memo``: the elements validated already, to carry from one part of a load to the next
    (by default the import starts its own)."""
    with _fewer_collections():
        return _import(
            unit_of_work,
            lines,
            now,
            batch_size,
            progress,
            source,
            ElementMemo() if memo is None else memo,
        )


# Python's cyclic collector by default runs a full pass over every live object about every
# 70,000 allocations; an import allocates heavily (the models) and keeps tens of thousands of
# validated elements in its memo, so those passes took about a tenth of its time (measured
# with gc.callbacks: 123 µs a resource, 98 of them in full passes, against 28 µs in all
# with this threshold). During an import the collector runs fourteen times less often; what
# is not cyclic is freed by reference counting as ever, and cyclic garbage a little later.
IMPORT_GC_THRESHOLD = (10_000, 10, 10)


@contextmanager
def _fewer_collections() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(*IMPORT_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _import(
    unit_of_work: UnitOfWork,
    lines: Iterable[str | bytes],
    now: datetime,
    batch_size: int,
    progress: Callable[[int], None] | None,
    source: SourceSystem | None,
    memo: ElementMemo,  # a load repeats its codes, subjects and categories endlessly
) -> ImportReport:
    report = ImportReport()
    batch: list[tuple[int, dict[str, Any]]] = []
    seen: set[tuple[str, str]] = set()

    def flush() -> None:
        if batch:
            _write_batch(unit_of_work, batch, report, now=now, source=source, memo=memo)
            if progress is not None:
                progress(len(batch))
            batch.clear()
            seen.clear()

    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            resource = _parse_line(line)
        except OutcomeError as exc:
            report.errors.append((number, _reason(exc)))
            continue
        key = (str(resource["resourceType"]), str(resource["id"]))
        if key in seen:  # the same resource twice: the later line is a later version
            flush()
        seen.add(key)
        batch.append((number, resource))
        if len(batch) >= batch_size:
            flush()
    flush()
    report.errors.sort()  # unreadable lines are found when read, invalid ones when written
    return report


# A worker process imports several shards of one file: the elements it has validated in one
# (the same codes, categories and people) serve the next, instead of each shard learning them
# afresh (on the synthetic load's benchmark, two fifths fewer elements validated in full).
_worker_memo: ElementMemo | None = None


def _shard_worker(args: tuple[str, str, int, str, SourceSystem | None]) -> ImportReport:
    """One process's share of a parallel import (its own engine, its own transactions)."""
    global _worker_memo
    if _worker_memo is None:
        _worker_memo = ElementMemo()
    from fhir_gateway.app import unit_of_work_factory
    from fhir_gateway.db import create_engine_for, session_factory_for

    url, shard_path, batch_size, now_text, source = args
    engine = create_engine_for(url, pool_size=1)
    numbers: list[int] = []

    def lines() -> Iterable[bytes]:
        with open(shard_path, "rb") as handle:
            for raw in handle:
                number, _tab, line = raw.partition(b"\t")
                numbers.append(int(number))
                yield line

    try:
        report = import_ndjson(
            unit_of_work_factory(session_factory_for(engine)),
            lines(),
            now=datetime.fromisoformat(now_text),
            batch_size=batch_size,
            source=source,
            memo=_worker_memo,
        )
    finally:
        engine.dispose()
    # Line numbers in the shard are positions in the shard; give back the file's numbers.
    report.errors = [(numbers[n - 1], reason) for n, reason in report.errors]
    return report


def import_file(
    url: str,
    path: str,
    *,
    now: datetime,
    processes: int,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
    source: SourceSystem | None = None,
) -> ImportReport:
    """Import an NDJSON file with ``processes`` worker processes.

    Lines are dealt to shards by resource type and id, so every version of one resource goes
    to the same shard and is applied in file order. Lines that are not JSON objects with a
    type are refused here, with their numbers, before any worker starts.
    """
    import concurrent.futures
    import multiprocessing
    import tempfile
    import zlib

    import orjson

    report = ImportReport()
    shards = max(1, processes) * 4
    with tempfile.TemporaryDirectory(prefix="carejoin-import-") as folder:
        paths = [f"{folder}/shard-{i}.ndjson" for i in range(shards)]
        handles = [open(p, "wb") for p in paths]  # noqa: SIM115 (closed below)
        sizes = [0] * shards
        try:
            with open(path, "rb") as ndjson:
                for number, raw in enumerate(ndjson, 1):
                    line = raw.strip()
                    if not line:
                        continue
                    try:
                        data = orjson.loads(line)
                        key = f"{data['resourceType']}/{data.get('id', number)}"
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        try:
                            _parse_line(line)
                            reason = "The line is not a FHIR resource"
                        except OutcomeError as exc:
                            reason = _reason(exc)
                        report.errors.append((number, reason))
                        continue
                    shard = zlib.crc32(key.encode()) % shards
                    handles[shard].write(str(number).encode() + b"\t" + line + b"\n")
                    sizes[shard] += 1
        finally:
            for handle in handles:
                handle.close()
        jobs = [
            (url, p, batch_size, now.isoformat(), source)
            for p, size in zip(paths, sizes, strict=True)
            if size
        ]
        with concurrent.futures.ProcessPoolExecutor(
            max(1, processes), mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            futures = {
                pool.submit(_shard_worker, job): size
                for job, size in zip(jobs, [s for s in sizes if s], strict=True)
            }
            for future in concurrent.futures.as_completed(futures):
                part = future.result()
                report.created.update(part.created)
                report.updated.update(part.updated)
                report.unchanged.update(part.unchanged)
                report.errors.extend(part.errors)
                if progress is not None:
                    progress(futures[future])
    report.errors.sort()
    return report

"""Linking a whole population at once (``carejoin link``): the initial load of a source, or
of all sources, without one matching round per record.

The same rules as ``service.link_patient``, applied to all records together:

1. every Patient identity has not filed yet is read and its demographics normalised;
2. candidate pairs are those sharing a blocking key, with the records already filed too
   (blocks larger than ``blocking.MAX_BLOCK`` are skipped, as when matching one record);
3. each pair is decided by ``scoring.decide``, names weighed by how many of all these
   records (filed and new) carry them (``scoring.NameCounts``);
4. links are applied strongest first with union-find, and a union that would put two
   different verified NHS numbers in one Person, or join two Persons that already exist, is
   not made: that pair goes to review instead, as do the pairs in the review band whose
   records end up apart;
5. Persons, a Provenance per link (with its evidence), identity's records, blocking keys,
   name counts and reviews are written in batches.

Records already filed keep their Person; new records join it when they link to it.
"""

import gc
import json
import multiprocessing
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from fhir_gateway.identity import blocking, columns
from fhir_gateway.identity.demographics import Demographics, from_patient
from fhir_gateway.identity.models import (
    IdentityBlockKey,
    IdentityNameCount,
    IdentityRecord,
    IdentityReview,
)
from fhir_gateway.identity.scoring import (
    DEFAULT_MODEL,
    Match,
    MatchModel,
    NameCounts,
    cannot_link,
    decide,
)
from fhir_gateway.identity.service import (
    MATCHER,
    _dump,
    _load,
    _name_rows,
    _person_resource,
    _provenance,
    _write_person,
)
from fhir_gateway.store import repository, service
from fhir_gateway.store.models import ResourceRow


@dataclass
class BatchReport:
    records: int = 0
    persons_created: int = 0
    links: int = 0
    reviews: int = 0
    pairs_scored: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class _Record:
    patient_id: str
    features: Demographics
    source: str | None
    name: Any = None
    person_id: str | None = None
    pk: int | None = None
    filed: bool = False  # filed before this run: keeps its Person


class _Clusters:
    """Union-find whose sets remember their verified NHS numbers and existing Person."""

    def __init__(self, records: list[_Record]):
        self.parent = list(range(len(records)))
        self.verified: list[set[str]] = [
            {r.features.nhs.value} if r.features.nhs and r.features.nhs.verified else set()
            for r in records
        ]
        self.person: list[set[str]] = [{r.person_id} if r.person_id else set() for r in records]
        self.size = [1] * len(records)

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> str | None:
        """Join the sets of ``a`` and ``b``; the reason it must not, if any."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return None
        if len(self.verified[ra] | self.verified[rb]) > 1:
            return "the Person would hold two different verified NHS numbers"
        if len(self.person[ra] | self.person[rb]) > 1:
            return "it would join two existing Persons"
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        self.verified[ra] |= self.verified[rb]
        self.person[ra] |= self.person[rb]
        return None


def _load_records(session: Session) -> tuple[list[_Record], int]:
    filed = session.execute(
        select(IdentityRecord.patient_id, IdentityRecord.features, IdentityRecord.person_id)
    ).all()
    records = [
        _Record(r.patient_id, _load(r.features), None, person_id=r.person_id, filed=True)
        for r in filed
    ]
    known = {r.patient_id for r in records}
    new = 0
    for row in session.execute(
        select(ResourceRow.resource_id, ResourceRow.body).where(
            ResourceRow.resource_type == "Patient", ResourceRow.deleted.is_(False)
        )
    ):
        if row.resource_id in known or row.body is None:
            continue
        body = orjson.loads(row.body)
        records.append(
            _Record(
                row.resource_id,
                from_patient(body),
                (body.get("meta") or {}).get("source"),
                name=body.get("name"),
            )
        )
        new += 1
    return records, new


@dataclass
class Plan:
    clusters: "_Clusters"
    joined_by: dict[int, Match]
    reviews: list[tuple[int, int, Match, str]]
    pairs_scored: int
    score_seconds: float
    keys: list[frozenset[str]]  # each record's stored blocking keys, as filed


PARALLEL_FROM = 20_000
"""Records from which ``plan_links`` scores candidate pairs in more than one process."""

PAIRS_AT_ONCE = 50_000
"""Records whose candidate pairs are made and screened together (bounds the arrays)."""

Scored = list[tuple[float, int, int, Match]]

# What the scoring processes read, set just before they are forked (copy-on-write: nothing is
# pickled on the way in) and cleared after.
_SHARED: tuple[list[_Record], columns.Survivors, NameCounts, MatchModel] | None = None


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Planning makes millions of small objects (pairs, evidence, matches) that hold no
    reference cycles: each is freed by its reference count the moment it is dropped. The
    cycle collector's passes over them, and over every record, found nothing and took about a
    fifth of planning's time, so it is paused while planning (in the forked scoring
    processes too, which inherit the pause) and resumed, if it was running, after."""
    running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if running:
            gc.enable()


def plan_links(
    records: list[_Record],
    *,
    model: MatchModel = DEFAULT_MODEL,
    progress: Callable[[str, int, int], None] | None = None,
    workers: int | None = None,
) -> Plan:
    """Decide every candidate pair and cluster the records (in memory, no database).

    Candidate pairs are found, and their cheap fields compared, for all pairs at once
    (``columns``); the pairs that may still reach the review weight are screened on their
    names and decided one by one. ``workers``: processes deciding them (default: one per
    core, from ``PARALLEL_FROM`` records; 1 decides in this process alone). Each pair is
    decided on its own, so the pairs are cut into chunks decided side by side (this process
    deciding its share) and the results put back in order: the plan is the same whatever
    the number of processes."""
    with _cycle_collector_paused():
        return _plan(records, model, progress, workers)


def _plan(
    records: list[_Record],
    model: MatchModel,
    progress: Callable[[str, int, int], None] | None,
    workers: int | None,
) -> Plan:
    import time

    clock = time.perf_counter()
    people = [record.features for record in records]
    # Every record counts towards its names' frequencies, as in the index once filed.
    names = NameCounts.of(people)
    keys = [blocking.stored_keys(person) for person in people]
    blocks = columns.Blocks(
        keys, [blocking.probe_only_keys(person) for person in people], [r.filed for r in records]
    )
    table = columns.columns(people)
    # The pairs of a range of records at a time, screened, so that only the few pairs left
    # are held for the whole population (at a million people there are 120 million pairs).
    screened: list[columns.Survivors] = []
    scored = 0
    for low in range(0, len(records), PAIRS_AT_ONCE):
        p, q = blocks.pairs(low, low + PAIRS_AT_ONCE)
        scored += len(p)
        screened.append(columns.screen(table, p, q, model, names))
        del p, q
    del blocks, table
    survivors = columns.Survivors.joined(screened)
    del screened
    pairs = _score_all(records, survivors, names, model, workers, progress)
    score_seconds = time.perf_counter() - clock

    clusters = _Clusters(records)
    joined_by: dict[int, Match] = {}
    held: list[tuple[int, int, Match, str]] = []
    pairs.sort(key=lambda pair: pair[0], reverse=True)
    for _weight, i, j, match in _strongest_first(pairs, clusters, records):
        if match.decision != "link":
            continue
        reason = clusters.union(i, j)
        if reason is not None:
            held.append((i, j, match, reason))
        elif i not in joined_by and not records[i].filed:
            joined_by[i] = match
        elif j not in joined_by and not records[j].filed:
            joined_by[j] = match
    reviews = [
        (i, j, match, "; ".join(match.reasons))
        for _w, i, j, match in pairs
        if match.decision == "review" and clusters.find(i) != clusters.find(j)
    ]
    reviews += [(i, j, m, r) for i, j, m, r in held if clusters.find(i) != clusters.find(j)]
    return Plan(clusters, joined_by, reviews, scored, score_seconds, keys)


def _score_range(
    start: int,
    end: int,
    records: list[_Record],
    survivors: columns.Survivors,
    names: NameCounts,
    model: MatchModel,
) -> Scored:
    """The pairs ``start`` to ``end`` of ``survivors`` that are not a no-link, in order: each
    screened on from the fields already compared, then decided."""
    pairs: Scored = []
    for i, j, done, weight in zip(
        survivors.p[start:end].tolist(),
        survivors.q[start:end].tolist(),
        survivors.compared[start:end].tolist(),
        survivors.weight[start:end].tolist(),
        strict=True,
    ):
        a, b = records[i].features, records[j].features
        if cannot_link(a, b, model, names, compared=(done, weight)):
            continue
        match = decide(a, b, model, names)
        if match.decision != "no-link":
            pairs.append((match.weight, i, j, match))
    return pairs


def _score_shared(chunk: tuple[int, int]) -> Scored:
    """``_score_range`` in a forked scoring process, over what ``_SHARED`` held at the fork."""
    assert _SHARED is not None
    return _score_range(chunk[0], chunk[1], *_SHARED)


def _score_all(
    records: list[_Record],
    survivors: columns.Survivors,
    names: NameCounts,
    model: MatchModel,
    workers: int | None,
    progress: Callable[[str, int, int], None] | None,
) -> Scored:
    global _SHARED
    count = len(survivors.p)
    if workers is None:
        workers = (os.cpu_count() or 1) if len(records) >= PARALLEL_FROM else 1
    if workers > 1 and "fork" not in multiprocessing.get_all_start_methods():
        workers = 1  # the records would have to be pickled to every process: not worth it
    size = max(1000, count // (max(workers, 1) * 8))
    chunks = [(start, min(start + size, count)) for start in range(0, count, size)]
    results: dict[tuple[int, int], Scored] = {}
    if workers <= 1:
        for chunk in chunks:
            results[chunk] = _score_range(*chunk, records, survivors, names, model)
            if progress is not None:
                progress("scoring", chunk[1], count)
    else:
        # This process scores every ``workers``-th chunk; forked processes the others.
        mine = chunks[::workers]
        theirs = [c for n, c in enumerate(chunks) if n % workers]
        _SHARED = (records, survivors, names, model)
        try:
            with multiprocessing.get_context("fork").Pool(workers - 1) as pool:
                pending = pool.imap(_score_shared, theirs)
                for chunk in mine:
                    results[chunk] = _score_range(*chunk, records, survivors, names, model)
                    if progress is not None:
                        progress("scoring", min(len(results) * size, count), count)
                for chunk, result in zip(theirs, pending, strict=True):
                    results[chunk] = result
                    if progress is not None:
                        progress("scoring", min(len(results) * size, count), count)
        finally:
            _SHARED = None
    pairs: Scored = []
    for chunk in chunks:
        pairs.extend(results[chunk])
    return pairs


def _strongest_first(
    pairs: list[tuple[float, int, int, Match]], clusters: _Clusters, records: list[_Record]
) -> Iterator[tuple[float, int, int, Match]]:
    """``pairs`` (sorted by weight, strongest first) in the order links are applied. Among
    links of equal weight, those into the larger group of records go first (a record as like
    one person's two records as another's one joins the two, which corroborate each other),
    then by the records' ids, so the result never depends on the order records were read
    in. Group sizes are taken as each weight is reached, with the stronger links applied."""
    start = 0
    while start < len(pairs):
        end = start
        while end < len(pairs) and pairs[end][0] == pairs[start][0]:
            end += 1
        group = pairs[start:end]
        if len(group) > 1:
            # A generator: the caller has applied every stronger link by now.
            group.sort(
                key=lambda p: (
                    -max(clusters.size[clusters.find(p[1])], clusters.size[clusters.find(p[2])]),
                    records[p[1]].patient_id,
                    records[p[2]].patient_id,
                )
            )
        yield from group
        start = end


def records_from_patients(patients: list[dict[str, Any]]) -> list[_Record]:
    """Unfiled records for ``plan_links`` from Patient resources (benchmarks, tests)."""
    return [
        _Record(
            str(p["id"]),
            from_patient(p),
            (p.get("meta") or {}).get("source"),
            name=p.get("name"),
        )
        for p in patients
    ]


def link_all(
    factory: sessionmaker[Session],
    *,
    now: datetime,
    model: MatchModel = DEFAULT_MODEL,
    write_batch: int = 1000,
    progress: Callable[[str, int, int], None] | None = None,
) -> BatchReport:
    import time

    report = BatchReport()
    clock = time.perf_counter()
    with factory.begin() as session:
        records, new_count = _load_records(session)
    report.records = new_count
    report.seconds["read"] = time.perf_counter() - clock

    clock = time.perf_counter()
    plan = plan_links(records, model=model, progress=progress)
    report.pairs_scored = plan.pairs_scored
    report.seconds["score"] = plan.score_seconds
    report.seconds["cluster"] = time.perf_counter() - clock - plan.score_seconds
    clusters, joined_by, reviews = plan.clusters, plan.joined_by, plan.reviews

    clock = time.perf_counter()
    _write(
        factory,
        records,
        plan.keys,
        clusters,
        joined_by,
        reviews,
        report,
        now=now,
        batch=write_batch,
        progress=progress,
    )
    report.seconds["write"] = time.perf_counter() - clock
    return report


_RECORD_COLUMNS = (
    "patient_id",
    "person_id",
    "source",
    "nhs_number",
    "nhs_verified",
    "assurance",
    "features",
    "updated_at",
    "linked_at",
)


def _write(
    factory: sessionmaker[Session],
    records: list[_Record],
    keys_of: list[frozenset[str]],
    clusters: _Clusters,
    joined_by: dict[int, Match],
    reviews: list[tuple[int, int, Match, str]],
    report: BatchReport,
    *,
    now: datetime,
    batch: int,
    progress: Callable[[str, int, int], None] | None,
) -> None:
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(records)):
        members[clusters.find(i)].append(i)
    existing_touched: set[str] = set()
    new_persons: list[tuple[str, list[int]]] = []
    for root, group in members.items():
        person = next(iter(clusters.person[root]), None)
        if person is None:
            person = service.new_id()
            new_persons.append((person, group))
            report.persons_created += 1
        elif any(not records[i].filed for i in group):
            existing_touched.add(person)
        for i in group:
            if not records[i].filed:
                records[i].person_id = person
    new_indices = [i for i, r in enumerate(records) if not r.filed]

    # identity's records and blocking keys
    for start in range(0, len(new_indices), batch):
        chunk = new_indices[start : start + batch]
        with factory.begin() as session:
            rows = []
            for i in chunk:
                record = records[i]
                nhs = record.features.nhs
                rows.append(
                    (
                        record.patient_id,
                        record.person_id,
                        str(record.source)[:255] if record.source else None,
                        nhs.value if nhs else None,
                        bool(nhs and nhs.verified),
                        "level4" if i not in joined_by else joined_by[i].assurance,
                        _dump(record.features),
                        now,
                        now,
                    )
                )
            pks = repository.insert_with_keys(
                session,
                IdentityRecord.__table__,  # type: ignore[arg-type]
                _RECORD_COLUMNS,
                rows,
            )
            keys: list[tuple[Any, ...]] = []
            for i, pk in zip(chunk, pks, strict=True):
                records[i].pk = pk
                keys.extend((k[:128], pk) for k in keys_of[i])
            repository.bulk_insert(
                session,
                IdentityBlockKey.__table__,  # type: ignore[arg-type]
                ("key", "record_pk"),
                keys,
            )
            counted: dict[tuple[str, str], int] = defaultdict(int)
            for i in chunk:
                for name, n in _name_rows(records[i].features, 1).items():
                    counted[name] += n
            repository.bulk_insert(
                session,
                IdentityNameCount.__table__,  # type: ignore[arg-type]
                ("field", "value", "n"),
                [(f, v, n) for (f, v), n in sorted(counted.items())],
            )
        if progress is not None:
            progress("records", start + len(chunk), len(new_indices))

    # Persons made in this run, and a Provenance for every record that joined by a link
    resources: list[dict[str, Any]] = []
    for person, group in new_persons:
        best = min(group, key=lambda i: (not _verified(records[i]), i))
        links = [
            (records[i].patient_id, "level4" if i not in joined_by else joined_by[i].assurance)
            for i in group
        ]
        resource = _person_resource(person, links, records[best].features)
        if records[best].name:
            resource["name"] = records[best].name
        resources.append(resource)
    for i, match in joined_by.items():
        record = records[i]
        report.links += 1
        resources.append(
            _provenance(
                person_id=str(record.person_id),
                patient_id=record.patient_id,
                now=now,
                activity="link",
                who=MATCHER,
                reason="; ".join(match.reasons) or "demographics and identifiers agree",
                match=match,
            )
        )
    _write_resources(factory, resources, now=now, batch=batch, progress=progress)
    with factory.begin() as session:
        for person in existing_touched:
            _write_person(session, person, now)
        filed_pks = {
            r.patient_id: r.pk
            for r in session.execute(select(IdentityRecord.patient_id, IdentityRecord.pk))
        }
        for i, j, match, reason in reviews:
            newer, other = (j, i) if records[i].filed else (i, j)
            record_pk = filed_pks.get(records[newer].patient_id)
            if record_pk is None:
                continue
            session.add(
                IdentityReview(
                    record_pk=record_pk,
                    person_id=str(records[other].person_id),
                    weight=match.weight,
                    probability=match.probability,
                    evidence=json.dumps([e.as_json() for e in match.evidence]),
                    reasons=json.dumps([x for x in (reason,) if x]),
                    status="open",
                    created_at=now,
                )
            )
            report.reviews += 1


PARALLEL_WRITE_FROM = 20_000
"""Persons and Provenances from which a batch on PostgreSQL writes them in one process per
core (each its own connection; the batches are independent)."""

# What the writing processes write, set just before they are forked and cleared after.
_TO_WRITE: tuple[list[dict[str, Any]], str, datetime] | None = None
_WRITER_FACTORY: sessionmaker[Session] | None = None


def _write_resources(
    factory: sessionmaker[Session],
    resources: list[dict[str, Any]],
    *,
    now: datetime,
    batch: int,
    progress: Callable[[str, int, int], None] | None,
) -> None:
    """Write the Persons and Provenances a batch made, ``batch`` to a transaction.

    They are built here from records the store validated, so they are not validated again
    one by one (it was most of this phase); the tests validate what the batch writes. On
    PostgreSQL, from ``PARALLEL_WRITE_FROM`` resources, forked processes write every other
    batch (each batch is its own transaction, as in one process)."""
    global _TO_WRITE
    ranges = [
        (start, min(start + batch, len(resources))) for start in range(0, len(resources), batch)
    ]
    bind = factory.kw.get("bind")
    workers = os.cpu_count() or 1
    if (
        not isinstance(bind, Engine)
        or bind.dialect.name != "postgresql"
        or len(resources) < PARALLEL_WRITE_FROM
        or workers < 2
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        for start, stop in ranges:
            _write_range(factory, resources[start:stop], now)
            if progress is not None:
                progress("persons", stop, len(resources))
        return
    mine = ranges[::workers]
    theirs = [r for n, r in enumerate(ranges) if n % workers]
    _TO_WRITE = (resources, bind.url.render_as_string(hide_password=False), now)
    bind.dispose()  # no pooled connection crosses the fork
    written = 0
    try:
        with multiprocessing.get_context("fork").Pool(workers - 1, _start_writer) as pool:
            pending = pool.imap_unordered(_write_shared, theirs)
            for start, stop in mine:
                _write_range(factory, resources[start:stop], now)
                written += stop - start
                if progress is not None:
                    progress("persons", written, len(resources))
            for count in pending:
                written += count
                if progress is not None:
                    progress("persons", written, len(resources))
    finally:
        _TO_WRITE = None


def _write_range(factory: sessionmaker[Session], part: list[dict[str, Any]], now: datetime) -> None:
    with factory.begin() as session:
        writes = [
            service.prepare_write(
                r,
                resource_id=str(r.get("id") or service.new_id()),
                version_id=1,
                now=now,
                method="PUT" if r.get("id") else "POST",
                existing_pk=None,
                validate=False,
            )
            for r in part
        ]
        service.write(session, writes)


def _start_writer() -> None:
    """A writing process's own engine (nothing of the parent's pool is used after the fork)."""
    global _WRITER_FACTORY
    assert _TO_WRITE is not None
    from fhir_gateway.db import create_engine_for, session_factory_for

    _WRITER_FACTORY = session_factory_for(create_engine_for(_TO_WRITE[1], pool_size=1))


def _write_shared(bounds: tuple[int, int]) -> int:
    assert _TO_WRITE is not None
    assert _WRITER_FACTORY is not None
    resources, _url, now = _TO_WRITE
    _write_range(_WRITER_FACTORY, resources[bounds[0] : bounds[1]], now)
    return bounds[1] - bounds[0]


def _verified(record: _Record) -> bool:
    return record.features.nhs is not None and record.features.nhs.verified

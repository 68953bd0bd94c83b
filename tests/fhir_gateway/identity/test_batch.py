"""Linking a whole population at once gives what the rules say, on both databases."""

from collections import Counter, defaultdict
from typing import Any

import pytest
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session, sessionmaker

from fhir_gateway.identity import batch, blocking
from fhir_gateway.identity import service as identity
from fhir_gateway.identity.demographics import Demographics
from fhir_gateway.identity.models import IdentityRecord, IdentityReview
from fhir_gateway.identity.scoring import DEFAULT_MODEL, NameCounts, cannot_link, decide
from fhir_gateway.store import service
from tests.fhir_gateway.identity.test_scoring import NUMBER_A, NUMBER_B, d
from tests.fhir_gateway.identity.test_service import NOW, source_patient


def _factory(connection: Connection) -> sessionmaker[Session]:
    return sessionmaker(bind=connection, join_transaction_mode="create_savepoint")


def _store(factory: sessionmaker[Session], *patients: dict[str, Any]) -> None:
    with factory.begin() as session:
        for patient in patients:
            service.update(session, "Patient", patient["id"], patient, now=NOW)


def _person(factory: sessionmaker[Session], patient_id: str) -> str | None:
    with factory.begin() as session:
        return identity.person_of(session, patient_id)


def test_batch_linking_follows_the_rules(connection: Connection) -> None:
    factory = _factory(connection)
    _store(
        factory,
        source_patient("gp-b1", "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True),
        source_patient("rh-b1", "urn:ods:Z9H", nhs_number=NUMBER_A, verified=True, given="Ada"),
        source_patient("asc-b1", "urn:ods:Z9C01"),  # no NHS number: demographics link it
        # twins at the same address
        source_patient("gp-t1", "urn:ods:Z90002", family="Hughes", given="Amy", birth="1990-02-02"),
        source_patient(
            "gp-t2", "urn:ods:Z90002", family="Hughes", given="Beth", birth="1990-02-02"
        ),
        # a baby carrying the parent's verified number
        source_patient(
            "rh-baby",
            "urn:ods:Z9H",
            nhs_number=NUMBER_A,
            verified=True,
            given="Chidi",
            birth="2026-10-30",
        ),
        # the same demographics under another verified number (two people by the index)
        source_patient("gp-x", "urn:ods:Z90003", nhs_number=NUMBER_B, verified=True),
    )
    report = batch.link_all(factory, now=NOW)
    assert report.records == 7
    joined = _person(factory, "gp-b1")
    assert _person(factory, "rh-b1") == joined
    assert _person(factory, "asc-b1") == joined
    assert _person(factory, "gp-t1") != _person(factory, "gp-t2")
    assert _person(factory, "rh-baby") != joined
    assert _person(factory, "gp-x") != joined
    with factory.begin() as session:
        # Each review pairs the Person of the record under review with a candidate Person;
        # which side of a held-back pair is "under review" depends on the order records are
        # read in, so compare the pairs, not the record.
        reviewed = {
            frozenset({row.person_id, row.candidate})
            for row in session.execute(
                select(IdentityRecord.person_id, IdentityReview.person_id.label("candidate"))
                .join(IdentityReview, IdentityReview.record_pk == IdentityRecord.pk)
                .where(IdentityReview.status == "open")
            )
        }
        persons = session.scalar(select(func.count(func.distinct(IdentityRecord.person_id))))
    assert frozenset({_person(factory, "rh-baby"), joined}) in reviewed
    assert frozenset({_person(factory, "gp-x"), joined}) in reviewed
    assert persons == report.persons_created == 5
    assert report.links == 2
    with factory.begin() as session:
        assert set(identity.patients_of(session, str(joined))) == {"gp-b1", "rh-b1", "asc-b1"}


def test_batch_links_new_records_to_persons_filed_before(connection: Connection) -> None:
    factory = _factory(connection)
    earlier = source_patient("gp-e1", "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True)
    _store(factory, earlier)
    with factory.begin() as session:
        person = identity.link_patient(session, earlier, now=NOW).person_id
    _store(factory, source_patient("rh-e1", "urn:ods:Z9H", nhs_number=NUMBER_A, verified=True))
    report = batch.link_all(factory, now=NOW)
    assert report.records == 1
    assert report.persons_created == 0
    assert _person(factory, "rh-e1") == person
    with factory.begin() as session:
        assert set(identity.patients_of(session, person)) == {"gp-e1", "rh-e1"}
    # Nothing left to do the second time.
    assert batch.link_all(factory, now=NOW).records == 0


def test_batch_skips_the_same_large_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    patients = [
        source_patient(f"gp-l{n}", "urn:ods:Z90001", given=given, birth=birth)
        for n, (given, birth) in enumerate(
            [("Amy", "1950-01-01"), ("Ann", "1960-02-02"), ("Ava", "1970-03-03")]
        )
    ]
    records = batch.records_from_patients(patients)
    assert batch.plan_links(records).pairs_scored == 3  # one block: postcode and initial
    monkeypatch.setattr(blocking, "MAX_BLOCK", 2)
    assert batch.plan_links(records).pairs_scored == 0


def test_batch_linking_does_not_depend_on_the_order_records_are_read() -> None:
    """A record with no NHS number as like one person's two records as another person's one
    joins the two (they corroborate each other), whichever order the database returns."""
    patients = [
        source_patient("gp-b1", "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True),
        source_patient("rh-b1", "urn:ods:Z9H", nhs_number=NUMBER_A, verified=True),
        source_patient("asc-b1", "urn:ods:Z9C01"),
        source_patient("gp-x", "urn:ods:Z90003", nhs_number=NUMBER_B, verified=True),
    ]
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 3, 0, 1], [3, 0, 2, 1]):
        records = batch.records_from_patients([patients[k] for k in order])
        plan = batch.plan_links(records)
        group = {r.patient_id: plan.clusters.find(n) for n, r in enumerate(records)}
        assert group["asc-b1"] == group["gp-b1"] == group["rh-b1"], order
        assert group["gp-x"] != group["gp-b1"], order


def _generated(people: int, seed: int) -> list[batch._Record]:
    """The records of a synthetic population (the accuracy benchmark's generator)."""
    from benchmarks.identity_population import population

    return batch.records_from_patients([p for _key, p in population(people, seed, version=3)])


def _assert_same_plan(one: batch.Plan, other: batch.Plan, records: list[batch._Record]) -> None:
    """Who is joined with whom, by which match, and the reviews in their order."""
    assert one.pairs_scored == other.pairs_scored > 0
    groups = [[plan.clusters.find(n) for n in range(len(records))] for plan in (one, other)]
    assert groups[0] == groups[1]
    assert one.joined_by == other.joined_by
    assert one.reviews == other.reviews


def test_scoring_in_several_processes_gives_the_same_plan() -> None:
    """Pairs are scored in chunks side by side and put back in record order: the plan (who
    is joined with whom, by which match, and the reviews in their order) is the same."""
    records = _generated(3000, 7)
    alone = batch.plan_links(records, workers=1)
    together = batch.plan_links(records, workers=3)
    _assert_same_plan(alone, together, records)
    assert len({alone.clusters.find(n) for n in range(len(records))}) < len(records)  # linked


def _candidate_pairs(
    people: list[Demographics], filed: list[bool] | None = None
) -> list[tuple[int, int]]:
    """Every pair the batch linker scores, found record by record: each record not yet filed
    against every record of the blocks it probes, other than itself, filed or before it."""
    filed = filed or [False] * len(people)
    index: dict[str, list[int]] = defaultdict(list)
    for i, person in enumerate(people):
        for key in blocking.stored_keys(person):
            index[key].append(i)
    pairs: list[tuple[int, int]] = []
    for i, person in enumerate(people):
        if filed[i]:
            continue
        others: set[int] = set()
        for key in blocking.probe_keys(person):
            block = index.get(key, [])
            if blocking.usable(key, len(block)):
                others.update(block)
        pairs.extend((i, j) for j in sorted(others) if j != i and (filed[j] or j < i))
    return pairs


def test_a_pair_screened_out_is_always_one_decide_calls_no_link() -> None:
    """``cannot_link`` spares the evidence of most pairs; it must never spare one that
    ``decide`` would link or send to review."""
    records = _generated(3000, 11)
    names = NameCounts.of(r.features for r in records)
    screened = 0
    decisions: Counter[str] = Counter()
    for i, j in _candidate_pairs([r.features for r in records]):
        a, b = records[i].features, records[j].features
        decision = decide(a, b, DEFAULT_MODEL, names).decision
        decisions[decision] += 1
        if cannot_link(a, b, DEFAULT_MODEL, names):
            screened += 1
            assert decision == "no-link", (records[i].patient_id, records[j].patient_id)
    assert decisions["link"] > 1000  # the population has links
    assert decisions["review"] > 0  # and reviews
    assert screened > 0.8 * decisions["no-link"], decisions  # and it spares most no-links


def test_the_same_verified_nhs_number_is_never_screened_out() -> None:
    """With one verified NHS number on both, ``decide`` links (or reviews a conflict) however
    little else agrees: the screen leaves such a pair to it."""
    a = d(nhs_number=NUMBER_A, verified=True, given="Ada", family="Okafor", birth="1950-01-01")
    b = d(
        nhs_number=NUMBER_A,
        verified=True,
        given="Zed",
        family="Quinn",
        birth="1990-06-30",
        gender="male",
        postcode="BD1 1AA",
    )
    assert decide(a, b).decision == "review"
    assert not cannot_link(a, b)


def test_every_person_and_provenance_the_batch_writes_is_valid_r4(connection: Connection) -> None:
    """The batch writes the Persons and Provenances it builds without validating each one
    (built here from records already validated); this is the check that they would pass."""
    from benchmarks.identity_population import population
    from fhir_gateway.store.models import ResourceRow
    from fhir_gateway.validation import parse_json, validate_resource

    factory = _factory(connection)
    _store(factory, *(patient for _key, patient in population(150, 7, version=3)))
    report = batch.link_all(factory, now=NOW)
    assert report.persons_created > 100
    assert report.links > 20
    with factory.begin() as session:
        bodies = session.execute(
            select(ResourceRow.resource_type, ResourceRow.body).where(
                ResourceRow.resource_type.in_(("Person", "Provenance"))
            )
        ).all()
    kinds = Counter(kind for kind, _body in bodies)
    assert kinds["Person"] == report.persons_created
    assert kinds["Provenance"] == report.links
    for _kind, body in bodies:
        assert body is not None
        validate_resource(parse_json(body))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_persons_and_provenances_written_in_several_processes_are_written_once(
    backend: str, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From ``PARALLEL_WRITE_FROM`` resources a batch on PostgreSQL writes them in forked
    processes (SQLite, one writer, in this one): each Person and Provenance once, every record's
    Person holding a link to it."""
    import orjson

    from benchmarks.identity_population import population
    from fhir_gateway.db import session_factory_for
    from fhir_gateway.store.models import ResourceRow
    from tests.conftest import own_engine

    monkeypatch.setattr(batch, "PARALLEL_WRITE_FROM", 10)
    here: list[int] = []  # batches this process wrote (the forked ones write the others)
    write_range = batch._write_range

    def counted(factory: sessionmaker[Session], part: list[dict[str, Any]], now: Any) -> None:
        here.append(len(part))
        write_range(factory, part, now)

    monkeypatch.setattr(batch, "_write_range", counted)
    with own_engine(backend, tmp_path_factory, "parallel-write") as engine:
        factory = session_factory_for(engine)
        _store(factory, *(patient for _key, patient in population(60, 11, version=3)))
        report = batch.link_all(factory, now=NOW, write_batch=7)
        with factory.begin() as session:
            rows = session.execute(
                select(ResourceRow.resource_type, ResourceRow.resource_id, ResourceRow.body).where(
                    ResourceRow.resource_type.in_(("Person", "Provenance"))
                )
            ).all()
            filed = session.execute(
                select(IdentityRecord.patient_id, IdentityRecord.person_id)
            ).all()
    kinds = Counter(kind for kind, _id, _body in rows)
    assert kinds["Person"] == report.persons_created > 30
    assert kinds["Provenance"] == report.links > 5
    assert len({(kind, rid) for kind, rid, _body in rows}) == len(rows)
    links: dict[str, set[str]] = defaultdict(set)
    for kind, rid, body in rows:
        if kind == "Person":
            assert body is not None
            links[rid] = {link["target"]["reference"] for link in orjson.loads(body)["link"]}
    batches = -(-(report.persons_created + report.links) // 7)
    if backend == "postgresql":
        assert 0 < len(here) < batches
    else:
        assert len(here) == batches
    assert len(filed) == report.records
    for patient_id, person_id in filed:
        assert f"Patient/{patient_id}" in links[person_id]

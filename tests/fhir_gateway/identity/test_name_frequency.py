"""Term-frequency adjustment: an agreeing name counts for less the more common it is, with
the counts kept right in the index (both databases) and shown in the evidence."""

import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from fhir_gateway import migrate
from fhir_gateway.db import create_engine_for
from fhir_gateway.identity import batch, scoring
from fhir_gateway.identity import service as identity
from fhir_gateway.identity.demographics import Demographics, from_patient
from fhir_gateway.identity.models import IdentityNameCount, IdentityRecord
from fhir_gateway.identity.scoring import DEFAULT_MODEL, NameCounts
from fhir_gateway.store import repository
from fhir_gateway.store import service as store
from tests.fhir_gateway.identity.test_scoring import NUMBER_A, d, levels
from tests.fhir_gateway.identity.test_service import NOW, source_patient

# 100,000 records: Smith and John are common, Okafor and Adaeze rare.
INDEX = NameCounts(
    {
        ("family_name", "smith"): 5_000,
        ("family_name", "okafor"): 3,
        ("given_name", "john"): 4_000,
        ("given_name", "adaeze"): 2,
    },
    {"family_name": 100_000, "given_name": 100_000},
)


def _weight(match: scoring.Match, field: str) -> float:
    return next(e.weight for e in match.evidence if e.field == field)


# -- scoring ------------------------------------------------------------------------------


def test_a_rare_shared_name_weighs_more_than_a_common_one() -> None:
    rare = scoring.decide(d(family="Okafor", given="Adaeze"), d(family="Okafor", given="Adaeze"))
    common = scoring.decide(d(family="Smith", given="John"), d(family="Smith", given="John"))
    # Without counts, every name weighs the same.
    assert rare.weight == pytest.approx(common.weight)

    apart = (
        {"postcode": "LS1 1AA", "phone": "01632 960001"},
        {"postcode": "M1 1AE", "phone": "01632 960002"},
    )
    rare = scoring.decide(
        d(family="Okafor", given="Adaeze", **apart[0]),
        d(family="Okafor", given="Adaeze", **apart[1]),
        names=INDEX,
    )
    common = scoring.decide(
        d(family="Smith", given="John", **apart[0]),
        d(family="Smith", given="John", **apart[1]),
        names=INDEX,
    )
    assert levels(rare) == levels(common)
    assert _weight(rare, "family_name") > DEFAULT_MODEL.weight("family_name", "exact")
    assert _weight(common, "family_name") < DEFAULT_MODEL.weight("family_name", "exact")
    assert _weight(rare, "given_name") > _weight(common, "given_name")
    assert rare.weight > common.weight + 6
    # Same name, birth date and sex, no number, different addresses and phones: a rare name
    # links, a common one is left to a reviewer.
    assert rare.decision == "link"
    assert common.decision == "review"


def test_the_weight_is_log_m_over_the_names_share_smoothed_and_bounded() -> None:
    model = DEFAULT_MODEL
    m, u = model.levels["family_name"]["exact"]
    weight, share = model.tf_weight("family_name", 5_000, 100_000)
    expected = (5_000 + model.tf_prior_records * u) / (100_000 + model.tf_prior_records)
    assert share == pytest.approx(expected)
    assert weight == pytest.approx(math.log2(m / share))
    # An empty index says nothing: the level's own weight.
    assert model.tf_weight("family_name", 0, 0)[0] == pytest.approx(math.log2(m / u))
    # A name seen once in ten million adds at most tf_max_boost; one everybody has takes at
    # most tf_max_penalty.
    assert model.tf_weight("family_name", 1, 10_000_000)[0] == pytest.approx(
        math.log2(m / u) + model.tf_max_boost
    )
    assert model.tf_weight("given_name", 10_000_000, 10_000_000)[0] >= (
        model.weight("given_name", "exact") - model.tf_max_penalty
    )
    # Only exact agreement is adjusted.
    match = scoring.decide(
        d(family="Smith", given="John"), d(family="Smith", given="Johm"), names=INDEX
    )
    assert levels(match)["given_name"] == "similar"
    assert _weight(match, "given_name") == pytest.approx(model.weight("given_name", "similar"))


@pytest.mark.parametrize("first", ["Beth", "Alice"])
def test_twins_with_a_rare_name_never_link_automatically(first: str) -> None:
    # The rare family name lifts the weight; the twins rules still hold (Amy and Beth: two
    # people; Amy and Alice, sharing an initial: at most a review).
    rare = NameCounts(
        {("family_name", "okafor"): 2, ("given_name", "amy"): 2, ("given_name", "alice"): 2},
        {"family_name": 1_000_000, "given_name": 1_000_000},
    )
    twin = {"family": "Okafor", "birth": "2001-05-06", "phone": "01632 960001"}
    match = scoring.decide(d(given="Amy", **twin), d(given=first, **twin), names=rare)
    assert match.weight >= DEFAULT_MODEL.link_weight
    assert match.decision != "link"


# First names of an index of 100,000 records: Amelia and Emily, Charles and Charlie are each
# common; Bill is William's short form, rarely anyone's recorded first name.
FIRST_NAMES = NameCounts(
    {
        ("given_name", "amelia"): 11_000,
        ("given_name", "emily"): 2_200,
        ("given_name", "charlie"): 2_700,
        ("given_name", "charles"): 1_100,
        ("given_name", "william"): 1_900,
        ("given_name", "bill"): 70,
    },
    {"family_name": 100_000, "given_name": 100_000},
)
HOUSEHOLD = {"family": "Hartley", "birth": "2015-04-09", "phone": "01632 960003"}


@pytest.mark.parametrize(("first", "second"), [("Amelia", "Emily"), ("Charles", "Charlie")])
def test_twins_named_as_forms_of_one_name_are_reviewed(first: str, second: str) -> None:
    """The nickname data relates them (Emily to Amelia, Charlie to Charles), but each is a
    first name in its own right: at one address, on one birth date, with no NHS number to
    tell them apart, they may be twins, so a human decides."""
    one, other = d(given=first, **HOUSEHOLD), d(given=second, **HOUSEHOLD)
    assert levels(scoring.decide(one, other))["given_name"] == "nickname"
    # Without counts nothing says they are names in their own right: the score links.
    assert scoring.decide(one, other).decision == "link"
    match = scoring.decide(one, other, names=FIRST_NAMES)
    assert match.weight >= DEFAULT_MODEL.link_weight
    assert match.decision == "review"
    assert any("each common in its own right" in reason for reason in match.reasons)
    # An NHS number on both that agrees says they are one person.
    numbered = scoring.decide(
        d(given=first, nhs_number=NUMBER_A, **HOUSEHOLD),
        d(given=second, nhs_number=NUMBER_A, **HOUSEHOLD),
        names=FIRST_NAMES,
    )
    assert numbered.decision == "link"


def test_a_short_form_still_links_to_its_name() -> None:
    match = scoring.decide(
        d(given="William", **HOUSEHOLD), d(given="Bill", **HOUSEHOLD), names=FIRST_NAMES
    )
    assert levels(match)["given_name"] == "nickname"
    assert match.decision == "link"


@pytest.mark.parametrize(
    ("counts", "own"),
    [
        ((11_000, 2_200), True),  # a fifth: a name in its own right
        ((19_854, 693), False),  # Ollie beside Oliver: 3.5 %, a short form
        ((1_500, 225), True),  # exactly the share
        ((1_500, 224), False),
        ((19, 19), False),  # too few records to tell
        ((20, 20), True),
        ((5_000, 0), False),
    ],
)
def test_own_names_by_their_counts(counts: tuple[int, int], own: bool) -> None:
    names = NameCounts(
        {("given_name", "a"): counts[0], ("given_name", "b"): counts[1]},
        {"given_name": 100_000},
    )
    assert scoring.own_names("a", "b", names) is own
    assert scoring.own_names("b", "a", names) is own


def _namesakes(count: int) -> list[dict[str, Any]]:
    """``count`` unrelated people each named Amelia, Emily and Oliver (``am3``, ``em3``,
    ``ol3``...): enough for the index to count each as a first name in its own right."""
    return [
        source_patient(
            f"{given[:2].lower()}{n}",
            "urn:ods:Z90001",
            given=given,
            family=f"Family{n:02d}x",
            birth=f"19{40 + n}-0{1 + n % 9}-1{n % 10}",
            postcode=f"LS{n} 1AA",
        )
        for n in range(count)
        for given in ("Amelia", "Emily", "Oliver")
    ]


def test_the_batch_linker_reviews_twins_named_as_forms_of_one_name() -> None:
    """The linker counts the names of the records it links: among a population where both
    names are common, twins Amelia and Emily are a review, not one person; a short form of
    a name (Ollie, rare as a first name there) still links to its person."""
    population = _namesakes(30)
    twins = [
        source_patient("twin-1", "urn:ods:Z90001", given="Amelia", postcode="YO1 7AA", **HOUSEHOLD),
        source_patient("twin-2", "urn:ods:Z90002", given="Emily", postcode="YO1 7AA", **HOUSEHOLD),
    ]
    oliver = [
        source_patient(
            "ol-1",
            "urn:ods:Z90001",
            given="Oliver",
            postcode="YO1 7AB",
            family="Pendle",
            birth="1988-02-03",
            phone="01632 960004",
        ),
        source_patient(
            "ol-2",
            "urn:ods:Z90002",
            given="Ollie",
            postcode="YO1 7AB",
            family="Pendle",
            birth="1988-02-03",
            phone="01632 960004",
        ),
    ]
    patients = [*population, *twins, *oliver]
    records = batch.records_from_patients(patients)
    plan = batch.plan_links(records, workers=1)
    index = {p["id"]: n for n, p in enumerate(patients)}
    find = plan.clusters.find
    assert find(index["twin-1"]) != find(index["twin-2"])
    reviewed = {frozenset((i, j)) for i, j, *_ in plan.reviews}
    assert frozenset((index["twin-1"], index["twin-2"])) in reviewed
    assert find(index["ol-1"]) == find(index["ol-2"])


def test_the_evidence_shows_the_adjusted_weight_and_the_share() -> None:
    match = scoring.decide(
        d(family="Smith", given="John"), d(family="Smith", given="John"), names=INDEX
    )
    family = next(e for e in match.evidence if e.field == "family_name")
    weight, share = DEFAULT_MODEL.tf_weight("family_name", 5_000, 100_000)
    assert family.weight == weight
    assert family.frequency == share
    assert family.as_json()["frequency"] == pytest.approx(share, rel=1e-3)
    birth = next(e for e in match.evidence if e.field == "birth_date")
    assert birth.frequency is None
    assert "frequency" not in birth.as_json()


# -- counts kept with the index (both databases) -----------------------------------------


def _counts(session: Session) -> dict[tuple[str, str], int]:
    rows = session.execute(
        select(IdentityNameCount.field, IdentityNameCount.value, func.sum(IdentityNameCount.n))
        .group_by(IdentityNameCount.field, IdentityNameCount.value)
        .having(func.sum(IdentityNameCount.n) != 0)
    ).all()
    return {(f, v): int(n) for f, v, n in rows}


def _recount(session: Session) -> dict[tuple[str, str], int]:
    """The counts as they should be: from identity's records themselves."""
    people = [identity._load(f) for f in session.scalars(select(IdentityRecord.features))]
    names = NameCounts.of(people)
    expected = dict(names.counts)
    expected.update({(f, ""): n for f, n in names.totals.items()})
    return expected


def test_name_counts_follow_records_added_changed_relinked_unlinked_and_removed(
    session: Session,
) -> None:
    def file(patient_id: str, **kwargs: Any) -> identity.LinkOutcome:
        return identity.link_patient(
            session, source_patient(patient_id, "urn:ods:Z90001", **kwargs), now=NOW
        )

    file("gp-n1", family="Smith", given="John", birth="1950-01-01")
    file("rh-n1", family="Smith", given="John", birth="1950-01-01")  # links to gp-n1
    file("gp-n2", family="Smith", given="Mary", birth="1960-02-02", postcode="M1 1AE")
    file("gp-n3", family="Okafor", given="Adaeze", birth="1970-03-03", postcode="B1 1AA")
    assert (
        _counts(session)
        == _recount(session)
        == {
            ("family_name", "smith"): 3,
            ("family_name", "okafor"): 1,
            ("family_name", ""): 4,
            ("given_name", "john"): 2,
            ("given_name", "mary"): 1,
            ("given_name", "adaeze"): 1,
            ("given_name", ""): 4,
        }
    )
    # A changed record (a married name) moves its count.
    file("gp-n2", family="Okafor", given="Mary", birth="1960-02-02", postcode="M1 1AE")
    assert _counts(session)[("family_name", "smith")] == 2
    assert _counts(session)[("family_name", "okafor")] == 2
    assert _counts(session) == _recount(session)
    # Stewards' links and unlinks move records between Persons, not names.
    before = _counts(session)
    identity.link(session, "gp-n3", "gp-n2", steward="steward-1", now=NOW, reason="same")
    identity.unlink(session, "gp-n3", steward="steward-1", now=NOW, reason="not the same")
    identity.unlink(session, "rh-n1", steward="steward-1", now=NOW, reason="not the same")
    assert _counts(session) == before
    # A removed record takes its names with it.
    identity.forget_patient(session, "gp-n3", now=NOW)
    assert _counts(session) == _recount(session)
    assert ("given_name", "adaeze") not in _counts(session)
    # Folding leaves one row per name with a count, and the same counts.
    rows_before = session.scalar(select(func.count()).select_from(IdentityNameCount))
    identity._folded_through.clear()  # another test's (rolled back) fold is not this one's
    assert identity.fold_name_counts(session) > 0
    assert identity.fold_name_counts(session) == 0
    assert identity.fold_name_counts(session) == 0  # nothing added since: not even looked at
    rows = session.execute(
        select(IdentityNameCount.field, IdentityNameCount.value, IdentityNameCount.n)
    ).all()
    assert len(rows) < (rows_before or 0)
    assert len({(f, v) for f, v, _n in rows}) == len(rows)
    assert all(n != 0 for _f, _v, n in rows)
    assert _counts(session) == _recount(session)
    assert identity.name_counts(session, d(family="Smith", given="John")).counts == {
        ("family_name", "smith"): 2,
        ("given_name", "john"): 2,
    }


def test_the_link_provenance_carries_the_adjusted_weight(session: Session) -> None:
    for n in range(3):  # three other Smiths in the index
        identity.link_patient(
            session,
            source_patient(
                f"gp-s{n}", "urn:ods:Z90001", family="Smith", given="Ann", birth=f"19{40 + n}-01-01"
            ),
            now=NOW,
        )
    identity.link_patient(
        session, source_patient("gp-j", "urn:ods:Z90001", family="Smith", given="Jane"), now=NOW
    )
    outcome = identity.link_patient(
        session, source_patient("rh-j", "urn:ods:Z9H", family="Smith", given="Jane"), now=NOW
    )
    assert outcome.action == "linked"
    assert outcome.match is not None
    # 5 records, 5 of them Smith; 2 of them Jane.
    family_weight, family_share = DEFAULT_MODEL.tf_weight("family_name", 5, 5)
    given_weight, given_share = DEFAULT_MODEL.tf_weight("given_name", 2, 5)
    evidence = {e.field: e for e in outcome.match.evidence}
    assert evidence["family_name"].weight == pytest.approx(family_weight)
    assert evidence["given_name"].weight == pytest.approx(given_weight)

    (provenance,) = [
        orjson.loads(row.body)
        for row in session.execute(
            select(repository.ResourceRow.body).where(
                repository.ResourceRow.resource_type == "Provenance"
            )
        )
        if {"reference": "Patient/rh-j"} in orjson.loads(row.body)["target"]
    ]
    fields = {
        next(x["valueCode"] for x in e["extension"] if x["url"] == "name"): {
            x["url"]: x.get("valueDecimal", x.get("valueCode")) for x in e["extension"]
        }
        for e in provenance["extension"][0]["extension"]
        if e["url"] == "field"
    }
    assert fields["family_name"]["weight"] == round(family_weight, 3)
    assert fields["family_name"]["frequency"] == pytest.approx(family_share, rel=1e-3)
    assert fields["given_name"]["weight"] == round(given_weight, 3)
    assert fields["given_name"]["frequency"] == pytest.approx(given_share, rel=1e-3)
    assert "frequency" not in fields["birth_date"]


def test_records_filed_one_by_one_review_twins_named_as_forms_of_one_name(
    session: Session,
) -> None:
    """As the batch linker: the index's counts (read for the candidate's first name too,
    since it is a form of the new record's) say Amelia and Emily are each a name."""
    for patient in _namesakes(21):
        identity.link_patient(session, patient, now=NOW)

    def file(patient_id: str, source: str, **kwargs: Any) -> identity.LinkOutcome:
        return identity.link_patient(
            session, source_patient(patient_id, source, postcode="YO1 7AA", **kwargs), now=NOW
        )

    first = file("twin-1", "urn:ods:Z90001", given="Amelia", **HOUSEHOLD)
    second = file("twin-2", "urn:ods:Z90002", given="Emily", **HOUSEHOLD)
    assert second.person_id != first.person_id
    assert second.reviews  # queued for a human, with the reason
    matches = identity.match_patients(
        session,
        source_patient("probe", "urn:ods:Z9H", given="Emily", postcode="YO1 7AA", **HOUSEHOLD),
    )
    grades = {patient_id: match.decision for patient_id, _person, match in matches}
    assert grades["twin-1"] == "review"
    assert grades["twin-2"] == "link"
    # A short form, rare as a first name in the index, still joins its person.
    ollie = identity.link_patient(
        session,
        source_patient(
            "ol-2",
            "urn:ods:Z90002",
            given="Ollie",
            family="Family03x",
            birth="1943-04-13",
            postcode="LS3 1AA",
        ),
        now=NOW,
    )
    assert ollie.person_id == identity.person_of(session, "ol3")


# -- incremental and batch agree for the same index --------------------------------------

PEOPLE = [
    {"family": "Smith", "given": "John", "birth": "1950-01-01"},
    {"family": "Smith", "given": "John", "birth": "1950-01-01", "postcode": "M1 1AE"},
    {"family": "Smith", "given": "Mary", "birth": "1950-01-01"},
    {"family": "Smith", "given": "Jon", "birth": "1950-01-01", "postcode": "B1 1AA"},
    {"family": "Okafor", "given": "John", "birth": "1950-01-01"},
    {"family": "Okafor", "given": "Adaeze", "birth": "1950-01-01", "postcode": "M1 1AE"},
]


def test_matching_one_record_weighs_names_as_the_batch_linker_does(
    connection: Connection,
) -> None:
    patients = [
        source_patient(f"p{n}", "urn:ods:Z90001", **person) for n, person in enumerate(PEOPLE)
    ]
    factory = sessionmaker(bind=connection, join_transaction_mode="create_savepoint")
    with factory.begin() as session:
        for p in patients:
            store.update(session, "Patient", p["id"], p, now=NOW)
    batch.link_all(factory, now=NOW)
    people: list[Demographics] = [from_patient(p) for p in patients]
    names = NameCounts.of(people)
    with factory.begin() as session:
        pks = dict(session.execute(select(IdentityRecord.patient_id, IdentityRecord.pk)).all())
        for n, p in enumerate(patients):
            found = identity._record_matches(
                session, people[n], exclude_pk=pks[p["id"]], model=DEFAULT_MODEL
            )
            assert found
            for other_id, _person, match in found:
                other = people[int(other_id[1:])]
                assert match == scoring.decide(people[n], other, DEFAULT_MODEL, names)
        # $match: a probe not in the index is counted as the batch linker counts every record.
        probe = source_patient("probe", "urn:ods:Z9H", family="Smith", given="John")
        with_probe = NameCounts.of([*people, from_patient(probe)])
        for other_id, _person, match in identity.match_patients(session, probe):
            other = people[int(other_id[1:])]
            assert match == scoring.decide(from_patient(probe), other, DEFAULT_MODEL, with_probe)


def test_the_migration_counts_the_records_already_filed(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'before-0015.db'}")
    try:
        migrate.upgrade(engine, "0014")
        people = [d(family="Smith", given="John"), d(family="Smith", given="Ann"), d(given="Ann")]
        with engine.begin() as conn:
            for n, person in enumerate(people):
                conn.execute(
                    insert(IdentityRecord.__table__).values(
                        patient_id=f"p{n}",
                        person_id=f"person-{n}",
                        nhs_verified=False,
                        features=identity._dump(person),
                        updated_at=NOW,
                    )
                )
        migrate.upgrade(engine)
        with Session(engine) as session:
            assert _counts(session) == {
                ("family_name", "smith"): 2,
                ("family_name", "okafor"): 1,
                ("family_name", ""): 3,
                ("given_name", "john"): 1,
                ("given_name", "ann"): 2,
                ("given_name", ""): 3,
            }
    finally:
        engine.dispose()

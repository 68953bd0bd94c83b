"""Identity's service on both databases: Persons, links, Provenance, the review queue."""

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fhir_gateway.identity import blocking
from fhir_gateway.identity import service as identity
from fhir_gateway.identity.demographics import from_patient
from fhir_gateway.identity.models import IdentityRecord, IdentityReview
from fhir_gateway.outcomes import Invalid
from fhir_gateway.store import repository
from tests.fhir_gateway.identity.test_scoring import NUMBER_A, NUMBER_B, patient

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def source_patient(patient_id: str, source: str, **kwargs: Any) -> dict[str, Any]:
    resource = patient(**kwargs)
    resource["id"] = patient_id
    resource["meta"] = {"source": source}
    return resource


def person(session: Session, person_id: str) -> dict[str, Any]:
    stored = repository.get_current(session, "Person", person_id)
    assert stored is not None
    assert stored.body is not None
    body: dict[str, Any] = orjson.loads(stored.body)
    return body


def linked(session: Session, person_id: str) -> set[str]:
    return {link["target"]["reference"] for link in person(session, person_id).get("link", [])}


def test_first_record_gets_a_person_of_its_own(session: Session) -> None:
    outcome = identity.link_patient(
        session, source_patient("gp-1", "urn:ods:Z90001", nhs_number=NUMBER_A), now=NOW
    )
    assert outcome.action == "new-person"
    body = person(session, outcome.person_id)
    assert body["resourceType"] == "Person"
    assert body["active"] is True
    assert body["link"] == [{"target": {"reference": "Patient/gp-1"}, "assurance": "level4"}]
    assert identity.person_of(session, "gp-1") == outcome.person_id


def test_same_verified_number_from_another_source_joins_the_person(session: Session) -> None:
    first = identity.link_patient(
        session,
        source_patient("gp-2", "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True),
        now=NOW,
    )
    second = identity.link_patient(
        session,
        source_patient(
            "rh-2",
            "urn:ods:Z9H",
            nhs_number=NUMBER_A,
            verified=True,
            given="Ada",
            postcode="M1 1AE",
        ),
        now=NOW,
    )
    assert second.action == "linked"
    assert second.person_id == first.person_id
    body = person(session, first.person_id)
    assert {(link["target"]["reference"], link.get("assurance")) for link in body["link"]} == {
        ("Patient/gp-2", "level4"),
        ("Patient/rh-2", "level4"),
    }
    assert body["identifier"] == [
        {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NUMBER_A}
    ]
    # The link's evidence is kept as a Provenance naming the matcher.
    provenances = [
        orjson.loads(row.body)
        for row in session.execute(
            select(repository.ResourceRow.body).where(
                repository.ResourceRow.resource_type == "Provenance"
            )
        )
    ]
    (provenance,) = [p for p in provenances if {"reference": "Patient/rh-2"} in p["target"]]
    assert provenance["agent"][0]["who"]["display"] == identity.MATCHER
    evidence = provenance["extension"][0]["extension"]
    fields = {
        next(x["valueCode"] for x in e["extension"] if x["url"] == "name")
        for e in evidence
        if e["url"] == "field"
    }
    assert {"nhs_number", "birth_date", "given_name"} <= fields


def test_resending_the_same_record_changes_nothing(session: Session) -> None:
    record = source_patient("gp-3", "urn:ods:Z90001")
    first = identity.link_patient(session, record, now=NOW)
    again = identity.link_patient(session, record, now=NOW)
    assert again.action == "unchanged"
    assert again.person_id == first.person_id
    assert person(session, first.person_id)["meta"]["versionId"] == "1"


def test_twins_get_a_person_each(session: Session) -> None:
    first = identity.link_patient(
        session, source_patient("gp-4", "urn:ods:Z90001", given="Adaeze"), now=NOW
    )
    second = identity.link_patient(
        session, source_patient("gp-5", "urn:ods:Z90001", given="Chioma"), now=NOW
    )
    assert second.person_id != first.person_id
    assert second.action == "new-person"


def test_a_baby_carrying_a_parents_number_is_reviewed_not_linked(session: Session) -> None:
    parent = identity.link_patient(
        session,
        source_patient("gp-6", "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True),
        now=NOW,
    )
    baby = identity.link_patient(
        session,
        source_patient(
            "rh-6",
            "urn:ods:Z9H",
            nhs_number=NUMBER_A,
            verified=True,
            given="Chidi",
            birth="2026-10-30",
        ),
        now=NOW,
    )
    assert baby.person_id != parent.person_id
    assert len(baby.reviews) == 1
    (review,) = [r for r in identity.open_reviews(session) if r["patient"] == "Patient/rh-6"]
    assert review["candidatePerson"] == f"Person/{parent.person_id}"
    assert any("birth_date" in reason for reason in review["reasons"])


def test_a_person_never_holds_two_verified_numbers(session: Session) -> None:
    first = identity.link_patient(
        session,
        source_patient("gp-7", "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True),
        now=NOW,
    )
    # The same demographics with another verified number (a re-issued number).
    other = identity.link_patient(
        session,
        source_patient("asc-7", "urn:ods:Z9C01", nhs_number=NUMBER_B, verified=True),
        now=NOW,
    )
    assert other.person_id != first.person_id
    (review_pk,) = other.reviews
    with pytest.raises(Invalid):
        identity.accept_review(session, review_pk, steward="steward-1", now=NOW)


def test_a_record_that_would_bridge_two_persons_goes_to_review(session: Session) -> None:
    a = identity.link_patient(
        session,
        source_patient("gp-8", "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True),
        now=NOW,
    )
    b = identity.link_patient(
        session,
        # Two people by the national index with the same demographics (a re-issued number).
        source_patient("gp-9", "urn:ods:Z90002", nhs_number=NUMBER_B, verified=True),
        now=NOW,
    )
    assert a.person_id != b.person_id
    # No NHS number: its demographics link to both Persons.
    bridge = identity.link_patient(session, source_patient("asc-8", "urn:ods:Z9C01"), now=NOW)
    assert bridge.action == "new-person"
    assert bridge.person_id not in (a.person_id, b.person_id)
    candidates = {
        r["candidatePerson"]
        for r in identity.open_reviews(session)
        if r["patient"] == "Patient/asc-8"
    }
    assert candidates == {f"Person/{a.person_id}", f"Person/{b.person_id}"}


def test_accepting_a_review_moves_the_record_and_rejecting_keeps_it(session: Session) -> None:
    parent = identity.link_patient(
        session,
        source_patient("gp-10", "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True),
        now=NOW,
    )
    doubtful = identity.link_patient(
        session,
        source_patient("rh-10", "urn:ods:Z9H", nhs_number=NUMBER_A, verified=True, gender="male"),
        now=NOW,
    )
    (review_pk,) = doubtful.reviews
    moved_to = identity.accept_review(session, review_pk, steward="steward-1", now=NOW)
    assert moved_to == parent.person_id
    assert linked(session, parent.person_id) == {"Patient/gp-10", "Patient/rh-10"}
    # The Person the record had on its own is kept (history) but has no links now.
    emptied = person(session, doubtful.person_id)
    assert emptied["active"] is False
    assert "link" not in emptied
    with pytest.raises(Invalid):
        identity.reject_review(session, review_pk, steward="steward-1", now=NOW)
    review = session.get(IdentityReview, review_pk)
    assert review is not None
    assert review.status == "accepted"
    assert review.decided_by == "steward-1"


def test_unlinking_restores_separate_persons(session: Session) -> None:
    first = identity.link_patient(
        session,
        source_patient("gp-11", "urn:ods:Z90001", nhs_number=NUMBER_A, verified=True),
        now=NOW,
    )
    identity.link_patient(
        session,
        source_patient("rh-11", "urn:ods:Z9H", nhs_number=NUMBER_A, verified=True),
        now=NOW,
    )
    assert linked(session, first.person_id) == {"Patient/gp-11", "Patient/rh-11"}
    new_person = identity.unlink(
        session, "rh-11", steward="steward-1", now=NOW, reason="different people"
    )
    assert linked(session, first.person_id) == {"Patient/gp-11"}
    assert linked(session, new_person) == {"Patient/rh-11"}
    with pytest.raises(Invalid):
        identity.unlink(session, "gp-11", steward="steward-1", now=NOW, reason="alone")


def test_a_deleted_source_patient_leaves_its_person(session: Session) -> None:
    only = identity.link_patient(session, source_patient("gp-12", "urn:ods:Z90001"), now=NOW)
    identity.forget_patient(session, "gp-12", now=NOW)
    assert identity.person_of(session, "gp-12") is None
    stored = repository.get_current(session, "Person", only.person_id)
    assert stored is not None
    assert stored.deleted
    assert (
        session.execute(select(IdentityRecord).where(IdentityRecord.patient_id == "gp-12")).first()
        is None
    )


def test_a_block_larger_than_the_bound_is_not_compared(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three people share a postcode and an initial (and nothing else with the probe); one
    # shares the probe's NHS number, in a block that is compared whatever its size.
    monkeypatch.setattr(blocking, "MAX_BLOCK", 2)
    for n, (given, birth) in enumerate(
        [("Amy", "1950-01-01"), ("Ann", "1960-02-02"), ("Ava", "1970-03-03")]
    ):
        identity.link_patient(
            session,
            source_patient(f"gp-pc{n}", "urn:ods:Z90001", given=given, birth=birth),
            now=NOW,
        )
    probe = source_patient("rh-pc", "urn:ods:Z9H", given="Adaeze", birth="1941-03-12")
    assert identity.candidates(session, from_patient(probe)) == []
    monkeypatch.setattr(blocking, "MAX_BLOCK", 3)
    assert len(identity.candidates(session, from_patient(probe))) == 3


def test_stored_features_are_written_as_they_always_were() -> None:
    """identity_record.features is compared as text to see whether a re-sent record changed,
    so the hand-built JSON must be what dataclasses.asdict gave, for every field."""
    import dataclasses
    import json

    from benchmarks.identity_population import population
    from fhir_gateway.identity.demographics import Demographics, from_patient
    from fhir_gateway.identity.service import _dump, _load

    def reference(features: Demographics) -> str:
        data = dataclasses.asdict(features)
        data["family_names"] = sorted(features.family_names)
        data["given_names"] = sorted(features.given_names)
        data["phones"] = sorted(features.phones)
        data["birth_date"] = features.birth_date.isoformat() if features.birth_date else None
        return json.dumps(data, sort_keys=True)

    people = [from_patient(patient) for _key, patient in population(300, 5, version=3)]
    people.append(Demographics())
    for features in people:
        assert _dump(features) == reference(features)
        assert _load(_dump(features)) == features

"""Legitimate relationships derived from the record itself (pure)."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consent.relationships import Relationship, relationships_from

PATIENT = "source-patient-1"
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
LATER = "2026-06-30T00:00:00+00:00"
EARLIER = "2026-05-01T00:00:00+00:00"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
ORGANISATIONS = {"Organization/riverside": "Z10002", "Organization/hospital": "Z10H"}


def _resolve(reference: str) -> str | None:
    return ORGANISATIONS.get(reference)


def _instant(text: str, end: bool) -> datetime:
    return datetime.fromisoformat(text)


def _org(ods: str) -> dict[str, Any]:
    return {"identifier": {"system": ODS, "value": ods}}


def _derive(
    resource: dict[str, Any], *, source: str | None = "Z10001", patient: str | None = PATIENT
) -> list[Relationship]:
    return relationships_from(
        resource,
        patient_id=patient,
        source_organisation=source,
        resolve_organisation=_resolve,
        parse_instant=_instant,
        now=NOW,
    )


def _r(kind: str, source: str | None = "Z10001", **fields: Any) -> Relationship:
    return Relationship(PATIENT, kind, source_organisation=source, **fields)


def _key(r: Relationship) -> tuple[str, str, str]:
    return (r.kind, r.organisation or "", r.practitioner or "")


LATER_AT = datetime.fromisoformat(LATER)


@pytest.mark.parametrize(
    ("resource", "source", "expected"),
    [
        pytest.param(
            {"resourceType": "Patient"},
            "Z10001",
            [_r("registered", organisation="Z10001")],
            id="patient-registered-at-the-recording-practice",
        ),
        pytest.param(
            {
                "resourceType": "Patient",
                "active": True,
                "generalPractitioner": [
                    _org("Z10001"),
                    {"reference": "Organization/riverside"},
                    {"reference": "Organization/unknown"},
                    {"reference": "Practitioner/gp1"},
                    {"identifier": {"system": ODS, "value": ""}},
                    {"identifier": {"system": "urn:other", "value": "Z1"}},
                ],
            },
            "Z10001",
            [_r("registered", organisation="Z10001"), _r("registered", organisation="Z10002")],
            id="patient-general-practitioners-by-identifier-and-reference",
        ),
        pytest.param(
            {"resourceType": "Patient", "generalPractitioner": [_org("Z10001")]},
            "Z10H",
            [
                _r("registered", "Z10H", organisation="Z10H"),
                _r("registered", "Z10H", organisation="Z10001"),
            ],
            id="hospital-copy-of-gp-details-keeps-its-source",
        ),
        pytest.param(
            {"resourceType": "Patient", "generalPractitioner": [_org("Z10001")]},
            None,
            [_r("registered", None, organisation="Z10001")],
            id="patient-from-an-unknown-source",
        ),
        pytest.param(
            {"resourceType": "Patient", "active": False, "generalPractitioner": [_org("Z1")]},
            "Z10001",
            [],
            id="inactive-patient",
        ),
        pytest.param(
            {"resourceType": "Encounter", "status": "in-progress", "serviceProvider": _org("Z10H")},
            "Z10H",
            [_r("encounter", "Z10H", organisation="Z10H")],
            id="open-encounter",
        ),
        pytest.param(
            {
                "resourceType": "Encounter",
                "status": "onleave",
                "serviceProvider": {"reference": "Organization/hospital"},
                "period": {"start": EARLIER, "end": LATER},
            },
            None,
            [_r("encounter", None, organisation="Z10H", ends_at=LATER_AT)],
            id="encounter-on-leave-planned-end",
        ),
        pytest.param(
            {"resourceType": "Encounter", "status": "arrived"},
            "Z10H",
            [_r("encounter", "Z10H", organisation="Z10H")],
            id="encounter-at-the-recording-organisation",
        ),
        pytest.param(
            {"resourceType": "Encounter", "status": "triaged"},
            None,
            [],
            id="encounter-with-no-organisation",
        ),
        pytest.param(
            {"resourceType": "Encounter", "status": "finished", "serviceProvider": _org("Z10H")},
            "Z10H",
            [],
            id="finished-encounter",
        ),
        pytest.param(
            {
                "resourceType": "Encounter",
                "status": "in-progress",
                "period": {"start": "2026-04-01T00:00:00+00:00", "end": EARLIER},
            },
            "Z10H",
            [],
            id="open-encounter-with-end-in-the-past",
        ),
        pytest.param(
            {
                "resourceType": "EpisodeOfCare",
                "status": "active",
                "managingOrganization": _org("Z10C"),
                "careManager": {"reference": "Practitioner/sw1"},
            },
            "Z10C",
            [
                _r("episode", "Z10C", organisation="Z10C"),
                _r("care-manager", "Z10C", practitioner="Practitioner/sw1"),
            ],
            id="episode-with-care-manager",
        ),
        pytest.param(
            {
                "resourceType": "EpisodeOfCare",
                "status": "waitlist",
                "careManager": {"reference": "PractitionerRole/r1"},
                "period": {"end": LATER},
            },
            "Z10C",
            [_r("episode", "Z10C", organisation="Z10C", ends_at=LATER_AT)],
            id="episode-manager-not-a-practitioner",
        ),
        pytest.param(
            {
                "resourceType": "EpisodeOfCare",
                "status": "onhold",
                "careManager": {"reference": "Practitioner/sw1"},
            },
            None,
            [_r("care-manager", None, practitioner="Practitioner/sw1")],
            id="episode-without-organisation",
        ),
        pytest.param(
            {"resourceType": "EpisodeOfCare", "status": "finished"},
            "Z10C",
            [],
            id="finished-episode",
        ),
        pytest.param(
            {"resourceType": "EpisodeOfCare", "status": "active", "period": {"end": EARLIER}},
            "Z10C",
            [],
            id="ended-episode",
        ),
        pytest.param(
            {
                "resourceType": "CareTeam",
                "status": "active",
                "participant": [
                    {"member": {"reference": "Practitioner/n1"}},
                    {"member": {"reference": "RelatedPerson/daughter"}},
                    {"member": {"display": "on call"}},
                    {"role": []},
                    {"member": {"reference": "Practitioner/sw1"}},
                ],
                "managingOrganization": [_org("Z10C"), {"reference": "Organization/nowhere"}],
                "period": {"end": LATER},
            },
            "Z10001",
            [
                _r("care-team", practitioner="Practitioner/n1", ends_at=LATER_AT),
                _r("care-team", practitioner="Practitioner/sw1", ends_at=LATER_AT),
                _r("care-team", organisation="Z10C", ends_at=LATER_AT),
            ],
            id="care-team-participants-and-managing-organisation",
        ),
        pytest.param(
            {
                "resourceType": "CareTeam",
                "status": "inactive",
                "participant": [{"member": {"reference": "Practitioner/n1"}}],
            },
            "Z10001",
            [],
            id="inactive-care-team",
        ),
        pytest.param(
            {
                "resourceType": "CareTeam",
                "status": "active",
                "participant": [{"member": {"reference": "Practitioner/n1"}}],
                "period": {"end": EARLIER},
            },
            "Z10001",
            [],
            id="ended-care-team",
        ),
        pytest.param(
            {"resourceType": "Observation", "status": "final"},
            "Z10001",
            [],
            id="other-types-establish-nothing",
        ),
    ],
)
def test_relationships_derived_from_a_resource(
    resource: dict[str, Any], source: str | None, expected: list[Relationship]
) -> None:
    assert sorted(_derive(resource, source=source), key=_key) == sorted(expected, key=_key)


def test_a_resource_with_no_patient_establishes_nothing() -> None:
    assert _derive({"resourceType": "Patient"}, patient=None) == []


def test_an_encounter_ending_exactly_now_is_not_open() -> None:
    resource = {
        "resourceType": "Encounter",
        "status": "in-progress",
        "period": {"end": NOW.isoformat()},
    }
    assert _derive(resource, source="Z10H") == []


REGISTERING = frozenset({"Z10001", "Z10002"})


@pytest.mark.parametrize(
    ("relationship", "organisation", "practitioner", "opens"),
    [
        pytest.param(
            _r("registered", "Z10001", organisation="Z10001"),
            "Z10001",
            None,
            True,
            id="registered-recorded-by-the-practice",
        ),
        pytest.param(
            _r("registered", "Z10002", organisation="Z10001"),
            "Z10001",
            None,
            True,
            id="registered-recorded-by-another-practice",
        ),
        pytest.param(
            _r("registered", "Z10H", organisation="Z10001"),
            "Z10001",
            None,
            False,
            id="registered-recorded-by-a-hospital",
        ),
        pytest.param(
            _r("registered", None, organisation="Z10001"),
            "Z10001",
            None,
            False,
            id="registered-recorded-by-nobody-known",
        ),
        pytest.param(
            _r("registered", "Z10001", organisation="Z10001"),
            "Z10002",
            None,
            False,
            id="registered-elsewhere",
        ),
        pytest.param(
            _r("encounter", "Z10H", organisation="Z10H"), "Z10H", None, True, id="encounter"
        ),
        pytest.param(
            _r("encounter", "Z10H", organisation="Z10H"),
            "Z10C",
            "Practitioner/sw1",
            False,
            id="encounter-elsewhere",
        ),
        pytest.param(
            _r("care-manager", "Z10C", practitioner="Practitioner/sw1"),
            "Z10H",
            "Practitioner/sw1",
            True,
            id="care-manager-wherever-they-work",
        ),
        pytest.param(
            _r("care-manager", "Z10C", practitioner="Practitioner/sw1"),
            "Z10C",
            "Practitioner/sw2",
            False,
            id="another-user",
        ),
        pytest.param(
            _r("care-team", "Z10C", practitioner="Practitioner/sw1"),
            "Z10C",
            None,
            False,
            id="user-unknown",
        ),
        pytest.param(
            _r("care-team", "Z10C", organisation="Z10C"), None, None, False, id="no-organisation"
        ),
    ],
)
def test_whom_a_relationship_opens_the_record_to(
    relationship: Relationship, organisation: str | None, practitioner: str | None, opens: bool
) -> None:
    assert (
        relationship.opens_to(
            organisation=organisation, practitioner=practitioner, registering=REGISTERING
        )
        is opens
    )


@pytest.mark.parametrize(
    ("ends_at", "in_force"),
    [
        pytest.param(None, True, id="open"),
        pytest.param(NOW + timedelta(microseconds=1), True, id="ends-soon"),
        pytest.param(NOW, False, id="ended-now"),
        pytest.param(NOW - timedelta(days=1), False, id="ended"),
    ],
)
def test_when_a_relationship_is_in_force(ends_at: datetime | None, in_force: bool) -> None:
    assert _r("encounter", organisation="Z10H", ends_at=ends_at).in_force(NOW) is in_force

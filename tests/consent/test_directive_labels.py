"""Consent provisions narrowed by security label, read into directives (pure)."""

from typing import Any

import pytest

from consent.directives import Directive, DirectiveError, label_covers
from tests.consent.test_directives import PATIENT, _consent, _custodian, _org, _read, _recipient

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
STU3_ACT_CODE = "http://hl7.org/fhir/v3/ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
CAREJOIN = "https://fhir.carejoin.example/CodeSystem/sensitivity"


def _label(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code}


@pytest.mark.parametrize(
    ("coding", "label"),
    [
        pytest.param(_label(ACT_CODE, "PSY"), "mental_health", id="ds4p-code"),
        pytest.param(_label(ACT_CODE, "MH"), "mental_health", id="newer-hl7-code"),
        pytest.param(_label(STU3_ACT_CODE, "HIV"), "hiv", id="stu3-uri"),
        pytest.param(_label(CAREJOIN, "FERT"), "fertility", id="carejoin-code"),
        pytest.param(_label(ACT_CODE, "GENDER"), "gender_identity", id="recognised-label"),
        pytest.param(_label(CONFIDENTIALITY, "R"), "R", id="confidentiality-R"),
        pytest.param(_label(CONFIDENTIALITY, "V"), "V", id="confidentiality-V"),
    ],
)
def test_a_label_names_a_category_or_a_confidentiality(coding: dict[str, str], label: str) -> None:
    (found,) = _read(_consent({"type": "deny", "securityLabel": [coding]}))
    assert found == Directive(PATIENT, "deny", 1, label=label)


def test_levels_count_the_label_as_one_more_thing_named() -> None:
    psy = [_label(ACT_CODE, "PSY")]
    council, hospital = _recipient(_org("Z10C")), _custodian(_org("Z10H"))
    levels = {
        name: [d.level for d in _read(_consent({"type": "deny", "securityLabel": psy, **extra}))]
        for name, extra in {
            "label": {},
            "label+recipient": {"actor": [council]},
            "label+source": {"actor": [hospital]},
            "label+source+recipient": {"actor": [council, hospital]},
        }.items()
    }
    assert levels == {
        "label": [1],
        "label+recipient": [2],
        "label+source": [2],
        "label+source+recipient": [3],
    }


def test_one_directive_per_label_each_with_the_provision_s_actors_and_period() -> None:
    provision = {
        "type": "permit",
        "actor": [_recipient(_org("Z10C"))],
        "period": {"start": "2026-01-01T00:00:00+00:00"},
        "securityLabel": [
            _label(ACT_CODE, "PSY"),
            _label(ACT_CODE, "ETH"),
            _label(ACT_CODE, "MH"),  # the same category again: one directive
        ],
    }
    found = _read(_consent(provision))
    assert [(d.label, d.level, d.recipient_organisation) for d in found] == [
        ("mental_health", 2, "Z10C"),
        ("substance_misuse", 2, "Z10C"),
    ]
    assert all(d.starts_at is not None for d in found)


def test_a_nested_label_exception_is_recorded_with_its_own_type() -> None:
    provision = {
        "type": "permit",
        "provision": [{"type": "deny", "securityLabel": [_label(ACT_CODE, "PSY")]}],
    }
    assert [(d.decision, d.level, d.label) for d in _read(_consent(provision))] == [
        ("permit", 0, None),
        ("deny", 1, "mental_health"),
    ]


@pytest.mark.parametrize(
    "provision",
    [
        pytest.param({"securityLabel": [_label(ACT_CODE, "NOSUCH")]}, id="unknown-code"),
        pytest.param({"securityLabel": [_label("urn:other", "PSY")]}, id="unknown-system"),
        pytest.param({"securityLabel": [{"code": "PSY"}]}, id="no-system"),
        pytest.param({"securityLabel": [_label(CONFIDENTIALITY, "N")]}, id="confidentiality-N"),
        pytest.param({"securityLabel": ["PSY"]}, id="not-a-coding"),
        pytest.param(
            {
                "securityLabel": [_label(ACT_CODE, "PSY")],
                "data": [{"meaning": "instance", "reference": {"reference": "Condition/c1"}}],
            },
            id="label-and-item",
        ),
    ],
)
def test_a_label_that_cannot_be_enforced_is_refused(provision: dict[str, Any]) -> None:
    with pytest.raises(DirectiveError):
        _read(_consent({"type": "deny", **provision}))


@pytest.mark.parametrize(
    ("label", "sensitivity", "security", "covers"),
    [
        (None, set(), set(), True),
        ("mental_health", {"mental_health", "hiv"}, set(), True),
        ("mental_health", {"hiv"}, {"PSY"}, False),  # categories, not codes, decide
        ("R", set(), {"R"}, True),
        ("R", set(), {"V"}, True),
        ("V", set(), {"R"}, False),
        ("V", set(), {"V", "NOPAT"}, True),
        ("R", {"mental_health"}, set(), False),
    ],
)
def test_what_a_label_covers(
    label: str | None, sensitivity: set[str], security: set[str], covers: bool
) -> None:
    assert label_covers(label, frozenset(sensitivity), frozenset(security)) is covers

"""A person's Consent resources read into directives (pure)."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consent.directives import (
    ODS_SYSTEM,
    ROLE_SYSTEM,
    SCOPE_SYSTEM,
    Directive,
    DirectiveError,
    directives_from_consent,
    is_privacy_consent,
)

PATIENT = "gp-patient-1"
ORGANISATIONS = {"Organization/hospital": "Z10H", "Organization/council": "Z10C"}


def _resolve(reference: str) -> str | None:
    return ORGANISATIONS.get(reference)


def _instant(text: str, end: bool) -> datetime:
    """A FHIR date or dateTime: a date stands for the whole day."""
    if len(text) == 10:
        day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return day + timedelta(days=1) if end else day
    return datetime.fromisoformat(text)


def _consent(provision: dict[str, Any] | None, **changes: Any) -> dict[str, Any]:
    consent: dict[str, Any] = {
        "resourceType": "Consent",
        "id": "c1",
        "status": "active",
        "scope": {"coding": [{"system": SCOPE_SYSTEM, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{PATIENT}"},
    }
    if provision is not None:
        consent["provision"] = provision
    consent.update(changes)
    return consent


def _org(ods: str) -> dict[str, Any]:
    return {"identifier": {"system": ODS_SYSTEM, "value": ods}}


def _recipient(reference: dict[str, Any]) -> dict[str, Any]:
    return {"role": {"coding": [{"code": "IRCP"}]}, "reference": reference}


def _custodian(reference: dict[str, Any]) -> dict[str, Any]:
    return {"role": {"coding": [{"code": "CST"}]}, "reference": reference}


def _role(code: str) -> dict[str, Any]:
    return {"identifier": {"system": ROLE_SYSTEM, "value": code}}


def _read(consent: dict[str, Any]) -> list[Directive]:
    return directives_from_consent(
        consent, patient_id=PATIENT, resolve_organisation=_resolve, parse_instant=_instant
    )


def _d(decision: str, level: int, **fields: Any) -> Directive:
    return Directive(patient_id=PATIENT, decision=decision, level=level, **fields)


JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
MAR_END = datetime(2026, 4, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("provision", "expected"),
    [
        pytest.param({"type": "deny"}, [_d("deny", 0)], id="blanket-objection"),
        pytest.param({"type": "permit"}, [_d("permit", 0)], id="blanket-consent"),
        pytest.param(
            {"type": "deny", "actor": [_recipient(_org("Z10H"))]},
            [_d("deny", 1, recipient_organisation="Z10H")],
            id="objection-to-recipient-by-ods-identifier",
        ),
        pytest.param(
            {"type": "deny", "actor": [_recipient({"reference": "Organization/council"})]},
            [_d("deny", 1, recipient_organisation="Z10C")],
            id="objection-to-recipient-by-organization-reference",
        ),
        pytest.param(
            {"type": "deny", "actor": [_recipient(_role("CJ0001"))]},
            [_d("deny", 1, recipient_role="CJ0001")],
            id="objection-to-a-role",
        ),
        pytest.param(
            {"type": "deny", "actor": [_custodian(_org("Z10001"))]},
            [_d("deny", 1, source_organisation="Z10001")],
            id="source-only",
        ),
        pytest.param(
            {"type": "deny", "actor": [_custodian(_org("Z10001")), _recipient(_org("Z10C"))]},
            [_d("deny", 2, source_organisation="Z10001", recipient_organisation="Z10C")],
            id="source-and-recipient",
        ),
        pytest.param(
            {
                "type": "permit",
                "actor": [
                    _custodian(_org("Z10001")),
                    _custodian({"reference": "Organization/hospital"}),
                    _recipient(_org("Z10C")),
                    _recipient(_role("CJ0002")),
                ],
            },
            [
                _d("permit", 2, source_organisation="Z10001", recipient_organisation="Z10C"),
                _d("permit", 2, source_organisation="Z10001", recipient_role="CJ0002"),
                _d("permit", 2, source_organisation="Z10H", recipient_organisation="Z10C"),
                _d("permit", 2, source_organisation="Z10H", recipient_role="CJ0002"),
            ],
            id="every-source-with-every-recipient",
        ),
        pytest.param(
            {
                "type": "deny",
                "data": [
                    {"meaning": "instance", "reference": {"reference": "Condition/c9"}},
                    {
                        "meaning": "instance",
                        "reference": {"reference": "https://ehr.example/fhir/Observation/o9"},
                    },
                ],
            },
            [_d("deny", 3, item="Condition/c9"), _d("deny", 3, item="Observation/o9")],
            id="sealed-items",
        ),
        pytest.param(
            {
                "type": "permit",
                "actor": [_recipient(_org("Z10C"))],
                "data": [{"meaning": "instance", "reference": {"reference": "CarePlan/cp1"}}],
            },
            [_d("permit", 3, recipient_organisation="Z10C", item="CarePlan/cp1")],
            id="one-item-permitted-to-a-recipient",
        ),
        pytest.param(
            {"type": "deny", "period": {"start": "2026-01-01", "end": "2026-03-31"}},
            [_d("deny", 0, starts_at=JAN, ends_at=MAR_END)],
            id="objection-for-a-period",
        ),
        pytest.param(
            {
                "type": "deny",
                "period": {"start": "2026-01-01"},
                "provision": [
                    {
                        "type": "permit",
                        "actor": [_recipient(_org("Z10H"))],
                        "period": {"end": "2026-03-31"},
                        "provision": [
                            {
                                "type": "deny",
                                "actor": [_custodian(_org("Z10001")), _recipient(_org("Z10H"))],
                            },
                            {
                                "type": "deny",
                                "period": {"start": "2026-02-01T00:00:00+00:00"},
                                "data": [{"reference": {"reference": "Condition/c1"}}],
                            },
                        ],
                    },
                    {"type": "permit", "actor": [_custodian(_org("Z10H"))]},
                ],
            },
            [
                _d("deny", 0, starts_at=JAN),
                _d("permit", 1, recipient_organisation="Z10H", starts_at=JAN, ends_at=MAR_END),
                _d(
                    "deny",
                    2,
                    source_organisation="Z10001",
                    recipient_organisation="Z10H",
                    starts_at=JAN,
                    ends_at=MAR_END,
                ),
                _d("deny", 3, item="Condition/c1", starts_at=FEB, ends_at=MAR_END),
                _d("permit", 1, source_organisation="Z10H", starts_at=JAN),
            ],
            id="nested-exceptions-inherit-and-narrow-periods",
        ),
    ],
)
def test_a_consent_records_directives(provision: dict[str, Any], expected: list[Directive]) -> None:
    assert _read(_consent(provision)) == expected


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"status": "inactive"}, id="inactive"),
        pytest.param({"status": "draft"}, id="draft"),
        pytest.param({"status": "rejected"}, id="rejected"),
        pytest.param({"status": None}, id="no-status"),
        pytest.param(
            {"scope": {"coding": [{"system": SCOPE_SYSTEM, "code": "treatment"}]}},
            id="treatment-consent",
        ),
        pytest.param({"scope": {"coding": [{"system": SCOPE_SYSTEM}]}}, id="scope-without-code"),
        pytest.param({"scope": None}, id="no-scope"),
        pytest.param({"scope": "patient-privacy"}, id="scope-not-a-concept"),
    ],
)
def test_other_consents_record_nothing(changes: dict[str, Any]) -> None:
    # Even a malformed provision is not read when the Consent records no directive.
    assert _read(_consent({"type": "maybe"}, **changes)) == []


@pytest.mark.parametrize(
    ("provision", "message"),
    [
        pytest.param(
            None, "A privacy Consent needs a provision saying deny or permit", id="no-provision"
        ),
        pytest.param(
            {}, "A privacy Consent needs a provision saying deny or permit", id="empty-provision"
        ),
        pytest.param({"actor": []}, "provision.type must be deny or permit", id="no-type"),
        pytest.param({"type": "allow"}, "provision.type must be deny or permit", id="bad-type"),
        pytest.param(
            {"type": "deny", "provision": [{"type": "permit"}, {"type": "x"}]},
            "provision.provision[1].type must be deny or permit",
            id="nested-bad-type",
        ),
        pytest.param(
            {
                "type": "deny",
                "actor": [{"role": {"coding": [{"code": "PRCP"}]}, "reference": _org("Z1")}],
            },
            "provision.actor[0].role must be IRCP or CST",
            id="unknown-actor-role",
        ),
        pytest.param(
            {"type": "deny", "actor": [{"reference": _org("Z1")}]},
            "provision.actor[0].role must be IRCP or CST",
            id="actor-without-role",
        ),
        pytest.param(
            {"type": "deny", "actor": [_recipient(_org("Z1")), _custodian(_role("CJ0001"))]},
            "provision.actor[1]: a custodian must be an organisation",
            id="custodian-is-a-role",
        ),
        pytest.param(
            {"type": "deny", "actor": [_recipient({"reference": "Organization/unknown"})]},
            "provision.actor[0]: Organization/unknown is not an organisation known here",
            id="unresolved-organization",
        ),
        pytest.param(
            {"type": "deny", "actor": [_recipient({"reference": "Practitioner/p1"})]},
            "provision.actor[0].reference must be an Organization (ODS identifier or reference)"
            " or a role",
            id="practitioner-actor",
        ),
        pytest.param(
            {
                "type": "deny",
                "actor": [_recipient({"identifier": {"system": ODS_SYSTEM, "value": ""}})],
            },
            "provision.actor[0].reference must be an Organization (ODS identifier or reference)"
            " or a role",
            id="empty-ods-identifier",
        ),
        pytest.param(
            {"type": "deny", "actor": [_recipient({"identifier": {"system": ROLE_SYSTEM}})]},
            "provision.actor[0].reference must be an Organization (ODS identifier or reference)"
            " or a role",
            id="role-without-value",
        ),
        pytest.param(
            {
                "type": "deny",
                "provision": [{"type": "permit", "actor": [_recipient({"display": "someone"})]}],
            },
            "provision.provision[0].actor[0].reference must be an Organization (ODS identifier"
            " or reference) or a role",
            id="nested-bad-actor",
        ),
    ],
)
def test_a_consent_that_cannot_be_enforced_is_refused(
    provision: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(DirectiveError) as raised:
        _read(_consent(provision))
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("scope", "privacy"),
    [
        pytest.param({"coding": [{"code": "patient-privacy"}]}, True, id="privacy"),
        pytest.param(
            {"coding": [{"code": "research"}, {"code": "patient-privacy"}]}, True, id="among"
        ),
        pytest.param({"coding": [{"code": "research"}]}, False, id="research"),
        pytest.param({"coding": ["patient-privacy"]}, False, id="coding-not-an-object"),
        pytest.param({}, False, id="empty"),
    ],
)
def test_is_privacy_consent(scope: dict[str, Any], privacy: bool) -> None:
    assert is_privacy_consent({"scope": scope}) is privacy


NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("starts_at", "ends_at", "in_force"),
    [
        pytest.param(None, None, True, id="open"),
        pytest.param(NOW, None, True, id="starts-now"),
        pytest.param(NOW + timedelta(microseconds=1), None, False, id="not-yet"),
        pytest.param(None, NOW, False, id="ended-now"),
        pytest.param(None, NOW + timedelta(microseconds=1), True, id="ends-soon"),
        pytest.param(NOW - timedelta(days=1), NOW + timedelta(days=1), True, id="within"),
    ],
)
def test_when_a_directive_is_in_force(
    starts_at: datetime | None, ends_at: datetime | None, in_force: bool
) -> None:
    assert _d("deny", 0, starts_at=starts_at, ends_at=ends_at).in_force(NOW) is in_force


@pytest.mark.parametrize(
    ("directive", "sealed"),
    [
        pytest.param(_d("deny", 3, item="Condition/c1"), True, id="denied-item"),
        pytest.param(_d("permit", 3, item="Condition/c1"), False, id="permitted-item"),
        pytest.param(_d("deny", 0), False, id="objection"),
    ],
)
def test_only_a_denied_item_is_sealed(directive: Directive, sealed: bool) -> None:
    assert directive.sealed is sealed


CONSENT_ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
SNOMED = "http://snomed.info/sct"


def _action(code: str) -> dict[str, str]:
    return {"system": CONSENT_ACTION, "code": code}


@pytest.mark.parametrize(
    "narrowing",
    [
        pytest.param(
            {"class": [{"system": "urn:ietf:bcp:13", "code": "application/pdf"}]},
            id="class-not-a-resource-type",
        ),
        pytest.param({"code": [{"coding": [{"code": "386661006"}]}]}, id="code-without-system"),
        pytest.param({"code": [{"text": "my depression"}]}, id="code-as-text-only"),
        pytest.param({"action": [{"coding": [{"code": "access"}]}]}, id="action-without-system"),
        pytest.param({"action": [{"coding": [_action("collect")]}]}, id="action-collect"),
        pytest.param(
            {"action": [{"coding": [_action("access")]}, {"coding": [_action("correct")]}]},
            id="action-access-and-correct",
        ),
        pytest.param({"purpose": [{"code": "HRESCH"}]}, id="purpose"),
        pytest.param({"securityLabel": [{"code": "N"}]}, id="security-label"),
        pytest.param({"dataPeriod": {}}, id="data-period-empty"),
        pytest.param(
            {"dataPeriod": {"start": "2015-01-01", "end": "2010-12-31"}}, id="data-period-backwards"
        ),
        pytest.param(
            {"data": [{"meaning": "instance", "reference": {"identifier": {"value": "cp1"}}}]},
            id="data-by-identifier-only",
        ),
    ],
)
def test_a_permit_narrowed_beyond_what_is_enforced_is_refused(narrowing: dict[str, Any]) -> None:
    # "Consent to the council seeing my care plans" must not become "the council may see
    # everything" (which, where the agreement requires explicit consent, opens all of the
    # person's health data to social care).
    provision = {"type": "permit", "actor": [_recipient(_org("Z10C"))], **narrowing}
    with pytest.raises(DirectiveError):
        _read(_consent(provision))


def test_a_sealed_item_given_with_its_version_seals_the_resource() -> None:
    provision = {
        "type": "deny",
        "data": [{"meaning": "instance", "reference": {"reference": "Condition/c1/_history/2"}}],
    }
    try:
        found = _read(_consent(provision))
    except DirectiveError:
        return  # refusing what cannot be enforced is as good
    assert [d.item for d in found] == ["Condition/c1"]


ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
CAREJOIN_PURPOSE = "https://fhir.carejoin.example/CodeSystem/purpose-of-use"


def _purpose(code: str, system: str = ACT_REASON) -> dict[str, str]:
    return {"system": system, "code": code}


def test_a_purpose_narrows_a_directive_and_counts_as_one_more_thing_named() -> None:
    casefinding = _purpose("CASEFIND", CAREJOIN_PURPOSE)
    assert _read(_consent({"type": "deny", "purpose": [casefinding]})) == [
        _d("deny", 1, purpose="CASEFIND")
    ]
    to_council = {
        "type": "deny",
        "actor": [_recipient(_org("Z10C"))],
        "purpose": [_purpose("TREAT")],
    }
    assert _read(_consent(to_council)) == [
        _d("deny", 2, recipient_organisation="Z10C", purpose="TREAT")
    ]
    # Several purposes: any of them, one directive each (a repeated one once).
    both = {"type": "deny", "purpose": [_purpose("TREAT"), casefinding, _purpose("TREAT")]}
    assert _read(_consent(both)) == [
        _d("deny", 1, purpose="TREAT"),
        _d("deny", 1, purpose="CASEFIND"),
    ]
    # Everything named at once stays below nothing: at most as specific as an item.
    everything = {
        "type": "deny",
        "actor": [_recipient(_org("Z10C")), _custodian(_org("Z10H"))],
        "securityLabel": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}
        ],
        "purpose": [_purpose("TREAT")],
    }
    [found] = _read(_consent(everything))
    assert found.level == 3
    assert (found.label, found.purpose) == ("mental_health", "TREAT")


@pytest.mark.parametrize(
    ("purposes", "says"),
    [
        ([_purpose("HRESCH")], "not a purpose of use callers declare here"),
        ([_purpose("CASEFIND")], "not a purpose of use"),  # ours, not an ActReason code
        ([_purpose("TREAT", CAREJOIN_PURPOSE)], "not a purpose of use"),
        ([{"code": "TREAT"}], "a Coding with a system and a code"),
        ([{"system": ACT_REASON}], "a Coding with a system and a code"),
    ],
)
def test_a_purpose_callers_never_declare_is_refused(
    purposes: list[dict[str, str]], says: str
) -> None:
    with pytest.raises(DirectiveError, match=says):
        _read(_consent({"type": "deny", "purpose": purposes}))


def test_an_item_is_not_narrowed_to_a_purpose() -> None:
    provision = {
        "type": "deny",
        "data": [{"meaning": "instance", "reference": {"reference": "Condition/c1"}}],
        "purpose": [_purpose("TREAT")],
    }
    with pytest.raises(DirectiveError, match="items or purposes"):
        _read(_consent(provision))


RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"


def _class(code: str, system: str = RESOURCE_TYPES) -> dict[str, str]:
    return {"system": system, "code": code}


def _read_known(consent: dict[str, Any]) -> list[Directive]:
    return directives_from_consent(
        consent,
        patient_id=PATIENT,
        resolve_organisation=_resolve,
        parse_instant=_instant,
        resource_types=frozenset({"CarePlan", "Condition"}),
    )


def test_a_class_narrows_a_directive_to_a_resource_type() -> None:
    to_council = {
        "type": "deny",
        "actor": [_recipient(_org("Z10C"))],
        "class": [_class("CarePlan"), _class("Condition"), _class("CarePlan")],
    }
    assert _read_known(_consent(to_council)) == [
        _d("deny", 2, recipient_organisation="Z10C", resource_class="CarePlan"),
        _d("deny", 2, recipient_organisation="Z10C", resource_class="Condition"),
    ]
    found = _read_known(_consent({"type": "permit", "class": [_class("CarePlan")]}))
    assert found == [_d("permit", 1, resource_class="CarePlan")]
    assert found[0].covers_type("CarePlan")
    assert not found[0].covers_type("Condition")
    assert _d("deny", 0).covers_type("Condition")


@pytest.mark.parametrize(
    ("classes", "says"),
    [
        ([_class("Nonsense")], "not a resource type this service keeps"),
        ([_class("application/pdf", "urn:ietf:bcp:13")], "only resource types"),
        ([{"code": "CarePlan"}], "only resource types"),
    ],
)
def test_a_class_that_is_not_a_kept_resource_type_is_refused(
    classes: list[dict[str, str]], says: str
) -> None:
    with pytest.raises(DirectiveError, match=says):
        _read_known(_consent({"type": "deny", "class": classes}))


def test_an_item_is_not_narrowed_to_a_class() -> None:
    provision = {
        "type": "deny",
        "data": [{"meaning": "instance", "reference": {"reference": "Condition/c1"}}],
        "class": [_class("Condition")],
    }
    with pytest.raises(DirectiveError, match="items or classes"):
        _read_known(_consent(provision))


DEPRESSION = {"system": SNOMED, "code": "35489007"}
DEPRESSION_READ = {"system": "http://read.info/ctv3", "code": "E2B.."}


def test_a_code_narrows_a_directive_and_counts_as_one_more_thing_named() -> None:
    not_my_depression = {"type": "deny", "code": [{"coding": [DEPRESSION]}]}
    assert _read(_consent(not_my_depression)) == [_d("deny", 1, code=(SNOMED, "35489007"))]
    # A concept's codings are its translations, several concepts any of them: one directive
    # each, a repeated one once.
    to_council = {
        "type": "deny",
        "actor": [_recipient(_org("Z10C"))],
        "code": [{"coding": [DEPRESSION, DEPRESSION_READ]}, {"coding": [DEPRESSION]}],
    }
    assert _read(_consent(to_council)) == [
        _d("deny", 2, recipient_organisation="Z10C", code=(SNOMED, "35489007")),
        _d("deny", 2, recipient_organisation="Z10C", code=("http://read.info/ctv3", "E2B..")),
    ]
    # Named with everything else, at most as specific as an item.
    everything = {
        "type": "deny",
        "actor": [_recipient(_org("Z10C")), _custodian(_org("Z10H"))],
        "code": [{"coding": [DEPRESSION]}],
        "purpose": [_purpose("TREAT")],
    }
    [found] = _read(_consent(everything))
    assert (found.level, found.code, found.purpose) == (3, (SNOMED, "35489007"), "TREAT")


def test_a_code_with_an_item_is_refused() -> None:
    provision = {
        "type": "deny",
        "code": [{"coding": [DEPRESSION]}],
        "data": [{"meaning": "instance", "reference": {"reference": "Condition/c1"}}],
    }
    with pytest.raises(DirectiveError, match="items or codes"):
        _read(_consent(provision))


@pytest.mark.parametrize(
    "actions",
    [["access"], ["use"], ["disclose"], ["access", "use", "disclose"]],
)
def test_the_actions_directives_govern_record_the_choice_as_naming_none(
    actions: list[str],
) -> None:
    # "Do not disclose my record to the council": what the council may see is what carejoin
    # discloses to it, so the action adds nothing to the directive.
    provision = {
        "type": "deny",
        "actor": [_recipient(_org("Z10C"))],
        "action": [{"coding": [_action(a)]} for a in actions],
    }
    assert _read(_consent(provision)) == [_d("deny", 1, recipient_organisation="Z10C")]


@pytest.mark.parametrize(
    ("tokens", "indexed", "deny_covers", "permit_covers"),
    [
        pytest.param({("code", SNOMED, "35489007")}, True, True, True, id="held"),
        pytest.param({("value-concept", SNOMED, "35489007")}, True, True, True, id="any-param"),
        pytest.param({("code", None, "35489007")}, True, False, False, id="no-system"),
        pytest.param({("code", "http://other", "35489007")}, True, False, False, id="other-system"),
        pytest.param(set(), True, False, False, id="not-held"),
        # A past version or a deleted resource: its tokens are not known.
        pytest.param(set(), False, True, False, id="not-indexed"),
    ],
)
def test_what_a_code_directive_covers(
    tokens: set[tuple[str, str | None, str]], indexed: bool, deny_covers: bool, permit_covers: bool
) -> None:
    code = (SNOMED, "35489007")
    assert _d("deny", 1, code=code).covers_code(tokens, indexed=indexed) is deny_covers
    assert _d("permit", 1, code=code).covers_code(tokens, indexed=indexed) is permit_covers
    # A directive naming no code covers everything, known or not.
    assert _d("deny", 0).covers_code(tokens, indexed=indexed)


Y2010 = datetime(2010, 1, 1, tzinfo=UTC)
Y2015_END = datetime(2015, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)  # closed, as the store reads


def test_a_data_period_narrows_a_directive_and_counts_as_one_more_thing_named() -> None:
    # "Not my records from 2010 to 2015 to the council".
    provision = {
        "type": "deny",
        "actor": [_recipient(_org("Z10C"))],
        "dataPeriod": {"start": "2010-01-01", "end": "2015-12-31"},
    }
    assert _read(_consent(provision)) == [
        _d(
            "deny",
            2,
            recipient_organisation="Z10C",
            data_from=Y2010,
            data_to=_instant("2015-12-31", True),
        )
    ]
    # Either end may be open: "nothing from before 2010".
    before = {"type": "deny", "dataPeriod": {"end": "2009-12-31"}}
    assert _read(_consent(before)) == [_d("deny", 1, data_to=_instant("2009-12-31", True))]


def test_a_data_period_with_an_item_is_refused() -> None:
    provision = {
        "type": "deny",
        "dataPeriod": {"start": "2010-01-01"},
        "data": [{"meaning": "instance", "reference": {"reference": "Condition/c1"}}],
    }
    with pytest.raises(DirectiveError, match="dataPeriod"):
        _read(_consent(provision))


def _range(low: str, high: str) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(low).replace(tzinfo=UTC), datetime.fromisoformat(high).replace(
        tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("care_dates", "indexed", "deny_covers", "permit_covers"),
    [
        pytest.param((_range("2012-03-01", "2012-03-01"),), True, True, True, id="within"),
        pytest.param((_range("2009-06-01", "2011-01-01"),), True, True, False, id="straddles"),
        pytest.param((_range("2016-01-01", "2016-02-01"),), True, False, False, id="after"),
        pytest.param((_range("2009-01-01", "2009-12-31"),), True, False, False, id="before"),
        pytest.param(
            (_range("2012-01-01", "2012-01-01"), _range("2018-01-01", "2018-01-01")),
            True,
            True,
            False,
            id="one-within-one-after",
        ),
        # A dated type whose date is not known: none recorded, or not indexed.
        pytest.param((), True, True, False, id="no-date-recorded"),
        pytest.param((_range("2012-03-01", "2012-03-01"),), False, True, False, id="not-indexed"),
        # A type that records no care date is not data of a period.
        pytest.param(None, True, False, False, id="undated-type"),
        pytest.param(None, False, False, False, id="undated-type-not-indexed"),
    ],
)
def test_what_a_data_period_directive_covers(
    care_dates: tuple[tuple[datetime, datetime], ...] | None,
    indexed: bool,
    deny_covers: bool,
    permit_covers: bool,
) -> None:
    period = {"data_from": Y2010, "data_to": Y2015_END}
    deny, permit = _d("deny", 1, **period), _d("permit", 1, **period)
    assert deny.covers_period(care_dates, indexed=indexed) is deny_covers
    assert permit.covers_period(care_dates, indexed=indexed) is permit_covers
    assert _d("deny", 0).covers_period(care_dates, indexed=indexed)


def test_a_data_period_open_at_one_end_reaches_as_far_as_it_says() -> None:
    since_2015 = _d("deny", 1, data_from=datetime(2015, 1, 1, tzinfo=UTC))
    assert since_2015.covers_period((_range("2020-01-01", "9999-12-31"),))
    assert not since_2015.covers_period((_range("2014-01-01", "2014-12-31"),))
    # The ends are closed: a care date ending the microsecond before the start misses it.
    assert not since_2015.covers_period((_range("2014-01-01", "2014-12-31T23:59:59.999999"),))
    assert since_2015.covers_period((_range("2014-01-01", "2015-01-01"),))

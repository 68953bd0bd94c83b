"""The sharing agreement: strict parsing that names where a document is wrong (pure)."""

import copy
from typing import Any

import pytest

from consent.agreements import (
    DATA_CATEGORIES,
    DIRECTORY_TYPES,
    AccessRule,
    Agreement,
    AgreementError,
    Party,
    parse_agreement,
    types_of,
)
from consent.labels import default_value_sets
from tests.factories.agreement import demo_agreement

SENSITIVE = frozenset({"hiv", "mental_health", "termination", "safeguarding"})


def _document(**changes: Any) -> dict[str, Any]:
    """A small valid agreement: a practice, a hospital and a council."""
    document: dict[str, Any] = {
        "version": "t-1",
        "organisations": [
            {"ods": "Z10001", "kind": "gp", "name": "Synthetic Surgery"},
            {"ods": "Z10H", "kind": "hospital", "name": "Synthetic Hospital"},
            {"ods": "Z10C", "kind": "social-care", "name": "Synthetic Council"},
        ],
        "contributions": {"Z10001": ["problems"], "Z10H": ["problems", "encounters"]},
        "access": [
            {
                "name": "direct care",
                "to": ["gp", "Z10H"],
                "roles": ["R8000"],
                "purposes": ["TREAT"],
                "categories": ["problems"],
                "from": ["gp", "Z10H"],
                "sensitive": ["mental_health"],
            }
        ],
        "system_clients": [{"client_id": "pas", "categories": ["demographics"], "from": ["Z10H"]}],
    }
    document.update(changes)
    return document


def _rule(**changes: Any) -> dict[str, Any]:
    rule: dict[str, Any] = copy.deepcopy(_document()["access"][0])
    rule.update(changes)
    for key, value in changes.items():
        if value is None:
            del rule[key]
    return rule


def _parse(document: dict[str, Any]) -> Agreement:
    return parse_agreement(document, sensitive_categories=SENSITIVE)


def test_the_demo_agreement_parses() -> None:
    codes = frozenset(c.code for c in default_value_sets().categories)
    agreement = parse_agreement(demo_agreement(), sensitive_categories=codes)
    assert agreement.version == "demo-2026-11-29"
    assert len(agreement.parties) == 10
    assert agreement.kind_of("Z9H") == "hospital"
    assert agreement.kind_of("Z9C01") == "social-care"
    assert agreement.social_care_health_consent == "implied"
    assert agreement.never_share == {"fertility", "gender_identity", "termination"}
    assert agreement.break_glass_roles == {"R8000"}
    assert agreement.break_glass_hours == 4.0
    assert agreement.rules[0].name.startswith("Direct care")
    assert agreement.rules[0].to_kinds == {"gp", "hospital"}
    assert agreement.rules[0].to_organisations == frozenset()
    assert agreement.rules[0].sensitive == {"mental_health", "substance_misuse"}
    assert set(agreement.system_clients) == {"integration", "hospital-pas"}
    assert agreement.system_clients["integration"].match is True
    assert "Condition" not in agreement.contributed_types("Z9C01")
    assert "Encounter" in agreement.contributed_types("Z9C01")


def test_a_small_agreement_and_its_defaults() -> None:
    agreement = _parse(_document())
    assert agreement.parties["Z10001"] == Party("Z10001", "gp", "Synthetic Surgery")
    assert agreement.contributions == {
        "Z10001": frozenset({"problems"}),
        "Z10H": frozenset({"problems", "encounters"}),
    }
    assert agreement.rules == (
        AccessRule(
            name="direct care",
            to_organisations=frozenset({"Z10H"}),
            to_kinds=frozenset({"gp"}),
            roles=frozenset({"R8000"}),
            purposes=frozenset({"TREAT"}),
            categories=frozenset({"problems"}),
            from_organisations=frozenset({"Z10H"}),
            from_kinds=frozenset({"gp"}),
            sensitive=frozenset({"mental_health"}),
        ),
    )
    # What the document leaves out: explicit consent, no never-share, 4 and 24 hours.
    assert agreement.social_care_health_consent == "explicit"
    assert agreement.never_share == frozenset()
    assert agreement.break_glass_roles == frozenset()
    assert (agreement.break_glass_hours, agreement.self_claim_hours) == (4.0, 24.0)
    clause = agreement.system_clients["pas"]
    assert clause.purposes == {"TREAT"}
    assert clause.match is False
    assert clause.from_organisations == {"Z10H"}


def test_optional_parts_are_read() -> None:
    agreement = _parse(
        _document(
            description="synthetic",
            social_care_health_consent="implied",
            never_share=["termination"],
            break_glass_roles=["R8000"],
            break_glass_hours=1.5,
            self_claim_roles=["R8001"],
            self_claim_hours=168,
            case_finding_roles=["CJ0002"],
            privacy_officer_roles=["CJ0003"],
            contributions=None,
            access=None,
            system_clients=None,
        )
    )
    assert agreement.social_care_health_consent == "implied"
    assert agreement.never_share == {"termination"}
    assert agreement.break_glass_roles == {"R8000"}
    assert agreement.break_glass_hours == 1.5
    assert agreement.self_claim_roles == {"R8001"}
    assert agreement.self_claim_hours == 168.0
    assert agreement.case_finding_roles == {"CJ0002"}
    assert agreement.privacy_officer_roles == {"CJ0003"}
    assert agreement.contributions == {}
    assert agreement.rules == ()
    assert agreement.system_clients == {}


def test_a_rule_without_a_name_is_named_by_its_path() -> None:
    agreement = _parse(_document(access=[_rule(name=None), _rule(name="")]))
    assert [r.name for r in agreement.rules] == ["access[0]", "access[1]"]


ORGS = _document()["organisations"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param(
            {"bogus": 1, "another": 2}, "Unknown parts: another, bogus", id="unknown-part"
        ),
        pytest.param({"version": None}, "version must be a non-empty string", id="no-version"),
        pytest.param({"version": "  "}, "version must be a non-empty string", id="blank-version"),
        pytest.param({"version": 3}, "version must be a non-empty string", id="version-number"),
        pytest.param(
            {"organisations": None},
            "organisations must name at least one party",
            id="no-organisations",
        ),
        pytest.param(
            {"organisations": []},
            "organisations must name at least one party",
            id="empty-organisations",
        ),
        pytest.param(
            {"organisations": {"ods": "Z1"}},
            "organisations must be a list of objects",
            id="organisations-not-a-list",
        ),
        pytest.param(
            {"organisations": ["Z1"]},
            "organisations must be a list of objects",
            id="organisation-not-an-object",
        ),
        pytest.param(
            {"organisations": [ORGS[0], {"kind": "gp"}]},
            "organisations[1].ods must be an ODS code",
            id="organisation-without-ods",
        ),
        pytest.param(
            {"organisations": [{"ods": "Z1-2", "kind": "gp"}]},
            "organisations[0].ods must be an ODS code",
            id="organisation-ods-not-alphanumeric",
        ),
        pytest.param(
            {"organisations": [{"ods": "Z1", "kind": "pharmacy"}]},
            "organisations[0].kind must be one of community, gp, hospital, other, social-care",
            id="organisation-unknown-kind",
        ),
        pytest.param(
            {"organisations": [ORGS[0], ORGS[1], ORGS[0]]},
            "organisations[2] repeats Z10001",
            id="organisation-repeated",
        ),
        pytest.param(
            {"contributions": ["Z10001"]},
            "contributions must map ODS codes to lists of categories",
            id="contributions-not-a-map",
        ),
        pytest.param(
            {"contributions": {"Z99999": ["problems"]}},
            "contributions.Z99999 is not an organisation of the agreement",
            id="contribution-from-a-stranger",
        ),
        pytest.param(
            {"contributions": {"Z10001": "problems"}},
            "contributions.Z10001 must be a list of non-empty strings",
            id="contribution-not-a-list",
        ),
        pytest.param(
            {"contributions": {"Z10001": ["problems", ""]}},
            "contributions.Z10001 must be a list of non-empty strings",
            id="contribution-empty-string",
        ),
        pytest.param(
            {"contributions": {"Z10001": ["problems", "gossip", "rumour"]}},
            "contributions.Z10001 names gossip, rumour, which are not known",
            id="contribution-unknown-category",
        ),
        pytest.param({"access": {}}, "access must be a list of objects", id="access-not-a-list"),
        pytest.param(
            {"access": [_rule(), _rule(extra=1)]},
            "access[1] has unknown parts: extra",
            id="rule-unknown-part",
        ),
        pytest.param(
            {"access": [_rule(to=["gp", "Z99999"])]},
            "access[0].to names Z99999, which are not known",
            id="rule-to-stranger",
        ),
        pytest.param(
            {"access": [_rule(**{"from": ["pharmacy"]})]},
            "access[0].from names pharmacy, which are not known",
            id="rule-from-unknown-kind",
        ),
        pytest.param(
            {"access": [_rule(roles="R8000")]},
            "access[0].roles must be a list of non-empty strings",
            id="rule-roles-not-a-list",
        ),
        pytest.param(
            {"access": [_rule(purposes=["TREAT", "RESEARCH"])]},
            "access[0].purposes names RESEARCH, which are not known",
            id="rule-unknown-purpose",
        ),
        pytest.param(
            {"access": [_rule(categories=["problems", "gossip"])]},
            "access[0].categories names gossip, which are not known",
            id="rule-unknown-category",
        ),
        pytest.param(
            {"access": [_rule(sensitive=["fertility"])]},
            "access[0].sensitive names fertility, which are not known",
            id="rule-sensitive-not-in-force",
        ),
        pytest.param(
            {"access": [_rule(to=None)]}, "access[0].to must name at least one", id="rule-no-to"
        ),
        pytest.param(
            {"access": [_rule(**{"from": []})]},
            "access[0].from must name at least one",
            id="rule-no-from",
        ),
        pytest.param(
            {"access": [_rule(roles=None)]},
            "access[0].roles must name at least one",
            id="rule-no-roles",
        ),
        pytest.param(
            {"access": [_rule(purposes=None)]},
            "access[0].purposes must name at least one",
            id="rule-no-purposes",
        ),
        pytest.param(
            {"access": [_rule(categories=[])]},
            "access[0].categories must name at least one",
            id="rule-no-categories",
        ),
        pytest.param(
            {"access": [_rule(to=["*"])]},
            "access[0]: 'to', 'from' and 'purposes' must be named, not '*'",
            id="rule-to-wildcard",
        ),
        pytest.param(
            {"access": [_rule(**{"from": ["*"]})]},
            "access[0]: 'to', 'from' and 'purposes' must be named, not '*'",
            id="rule-from-wildcard",
        ),
        pytest.param(
            {"access": [_rule(purposes=["*"])]},
            "access[0]: 'to', 'from' and 'purposes' must be named, not '*'",
            id="rule-purposes-wildcard",
        ),
        pytest.param(
            {"access": [_rule(purposes=["TREAT", "PATRQT"])]},
            "access[0]: the person's own access is not a sharing rule",
            id="rule-patient-purpose",
        ),
        pytest.param(
            {"social_care_health_consent": "assumed"},
            "social_care_health_consent must be 'implied' or 'explicit'",
            id="consent-mode-unknown",
        ),
        pytest.param(
            {"never_share": ["fertility"]},
            "never_share names fertility, which are not known",
            id="never-share-not-in-force",
        ),
        pytest.param(
            {"never_share": "termination"},
            "never_share must be a list of non-empty strings",
            id="never-share-not-a-list",
        ),
        pytest.param(
            {"break_glass_roles": [1]},
            "break_glass_roles must be a list of non-empty strings",
            id="break-glass-roles-not-strings",
        ),
        pytest.param(
            {"self_claim_roles": "R8000"},
            "self_claim_roles must be a list of non-empty strings",
            id="self-claim-roles-not-a-list",
        ),
        pytest.param(
            {"case_finding_roles": [""]},
            "case_finding_roles must be a list of non-empty strings",
            id="case-finding-roles-empty-string",
        ),
        pytest.param(
            {"privacy_officer_roles": {}},
            "privacy_officer_roles must be a list of non-empty strings",
            id="privacy-officer-roles-not-a-list",
        ),
        pytest.param(
            {"break_glass_hours": 0},
            "break_glass_hours must be a number of hours between 0 and 168",
            id="break-glass-hours-zero",
        ),
        pytest.param(
            {"break_glass_hours": 169},
            "break_glass_hours must be a number of hours between 0 and 168",
            id="break-glass-hours-over-a-week",
        ),
        pytest.param(
            {"break_glass_hours": True},
            "break_glass_hours must be a number of hours between 0 and 168",
            id="break-glass-hours-boolean",
        ),
        pytest.param(
            {"self_claim_hours": "24"},
            "self_claim_hours must be a number of hours between 0 and 168",
            id="self-claim-hours-text",
        ),
        pytest.param(
            {"system_clients": {"client_id": "pas"}},
            "system_clients must be a list of objects",
            id="system-clients-not-a-list",
        ),
        pytest.param(
            {"system_clients": [{"categories": ["*"]}]},
            "system_clients[0].client_id must be a non-empty string",
            id="system-client-without-id",
        ),
        pytest.param(
            {"system_clients": [{"client_id": ""}]},
            "system_clients[0].client_id must be a non-empty string",
            id="system-client-empty-id",
        ),
        pytest.param(
            {"system_clients": [{"client_id": "pas", "match": "yes"}]},
            "system_clients[0].match must be true or false",
            id="system-client-match-not-boolean",
        ),
        pytest.param(
            {"system_clients": [{"client_id": "pas", "purposes": ["AUDIT"]}]},
            "system_clients[0].purposes names AUDIT, which are not known",
            id="system-client-unknown-purpose",
        ),
        pytest.param(
            {"system_clients": [{"client_id": "pas", "categories": ["gossip"]}]},
            "system_clients[0].categories names gossip, which are not known",
            id="system-client-unknown-category",
        ),
        pytest.param(
            {"system_clients": [{"client_id": "pas", "from": ["gp"]}]},
            "system_clients[0].from names gp, which are not known",
            id="system-client-from-a-kind",
        ),
        pytest.param(
            {"system_clients": [{"client_id": "pas"}, {"client_id": "pas"}]},
            "system_clients[1] repeats client pas",
            id="system-client-repeated",
        ),
    ],
)
def test_a_bad_document_is_refused_naming_where(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(AgreementError) as raised:
        _parse(_document(**changes))
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("organisation", "kind", "role", "purpose", "applies"),
    [
        pytest.param("Z10H", "hospital", "R8000", "TREAT", True, id="by-code"),
        pytest.param("Z10002", "gp", "R8000", "TREAT", True, id="by-kind"),
        pytest.param("Z10C", "social-care", "R8000", "TREAT", False, id="other-kind"),
        pytest.param("Z10H", "hospital", "R8001", "TREAT", False, id="other-role"),
        pytest.param("Z10H", "hospital", "R8000", "BTG", False, id="other-purpose"),
        pytest.param("Z10H", "hospital", "R8000", "CASEFIND", False, id="case-finding"),
    ],
)
def test_which_callers_a_rule_applies_to(
    organisation: str, kind: str, role: str, purpose: str, applies: bool
) -> None:
    rule = _parse(_document()).rules[0]
    assert rule.applies_to(organisation=organisation, kind=kind, role=role, purpose=purpose) is (
        applies
    )


@pytest.mark.parametrize(
    ("role", "applies"),
    [pytest.param("R8000", True, id="any-role"), pytest.param("CJ0001", True, id="another")],
)
def test_a_wildcard_role_applies_to_every_role(role: str, applies: bool) -> None:
    rule = _parse(_document(access=[_rule(roles=["*"])])).rules[0]
    assert rule.applies_to(organisation="Z10H", kind="hospital", role=role, purpose="TREAT") is (
        applies
    )


@pytest.mark.parametrize(
    ("ods", "kind"),
    [
        pytest.param("Z10001", "gp", id="party"),
        pytest.param("Z99999", None, id="stranger"),
        pytest.param(None, None, id="none"),
    ],
)
def test_kind_of(ods: str | None, kind: str | None) -> None:
    assert _parse(_document()).kind_of(ods) == kind


def test_contributions_and_category_types() -> None:
    agreement = _parse(_document())
    assert agreement.contributed_types("Z10H") == {"Condition", "Encounter", "EpisodeOfCare"}
    assert agreement.contributed_types("Z10C") == frozenset()  # contributes nothing
    every = types_of(frozenset({"*"}))
    assert every == frozenset().union(*DATA_CATEGORIES.values())
    assert types_of(frozenset()) == frozenset()
    assert not every & DIRECTORY_TYPES  # the directory is nobody's record

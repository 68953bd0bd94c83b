"""Cohort rules kept as data: the defaults, evaluation, and refusing a malformed file."""

import copy
import json
from datetime import date
from typing import Any

import pytest

from coordination.case_finding.cohorts import (
    All,
    AnyOf,
    CohortError,
    Measure,
    Not,
    default_cohorts,
    evaluate,
    load_cohorts,
    matching_cohorts,
    parse_cohorts,
)
from coordination.case_finding.rules import Assessment, assess
from tests.coordination.case_finding.builders import AS_OF, dx, person, service, snomed, stay

DEFAULTS = default_cohorts()


def assessed(
    age: int | None,
    *,
    codes: tuple[str, ...] = (),
    emergencies: int = 0,
    gp: tuple[str, ...] = (),
    services: int = 0,
) -> Assessment:
    stays = tuple(stay(date(2026, 1 + i, 1), date(2026, 1 + i, 4)) for i in range(emergencies))
    record = person(
        age,
        diagnoses=(*(dx(c) for c in codes), *(snomed(c) for c in gp)),
        admissions=stays,
        services=tuple(service(date(2025, 1, 1)) for _ in range(services)),
    )
    return assess(record, as_of=AS_OF)


def matched(a: Assessment) -> list[str]:
    return [c.code for c in matching_cohorts(a, DEFAULTS)]


def test_default_cohorts() -> None:
    assert DEFAULTS.version == "1.0.0"
    assert [(c.code, c.name) for c in DEFAULTS] == [
        ("frail-75-plus", "75 and over with HFRS intermediate or high"),
        (
            "repeat-emergency-65-plus",
            "65 and over with two or more emergency admissions in 12 months",
        ),
        (
            "multimorbidity-emergency",
            "Three or more long-term conditions with an emergency admission in 12 months",
        ),
        (
            "social-care-emergency",
            "Current social care services with an emergency admission in 12 months",
        ),
    ]
    assert DEFAULTS.cohort("frail-75-plus").rule == All(
        (Measure("age_at_least", 75), Measure("hfrs_band_in", frozenset({"intermediate", "high"})))
    )
    with pytest.raises(KeyError):
        DEFAULTS.cohort("nobody")


def test_frail_over_75s() -> None:
    assert matched(assessed(80, codes=("F00", "W19", "R26"))) == ["frail-75-plus"]
    assert matched(assessed(80, codes=("F00", "G81", "N39", "F05"))) == ["frail-75-plus"]
    assert matched(assessed(80, codes=("J18",))) == []  # low
    assert matched(assessed(74, codes=("F00", "W19", "R26"))) == []  # not scored
    assert matched(assessed(None, codes=("F00", "W19", "R26"))) == []


def test_repeat_emergency_admissions_from_65() -> None:
    assert matched(assessed(65, emergencies=2)) == ["repeat-emergency-65-plus"]
    assert matched(assessed(64, emergencies=3)) == []
    assert matched(assessed(70, emergencies=1)) == []


def test_multimorbidity_with_an_emergency_admission() -> None:
    three = ("44054006", "38341003", "13645005")
    assert matched(assessed(50, gp=three, emergencies=1)) == ["multimorbidity-emergency"]
    assert matched(assessed(50, gp=three)) == []
    assert matched(assessed(50, gp=three[:2], emergencies=1)) == []


def test_social_care_with_an_emergency_admission() -> None:
    assert matched(assessed(70, services=1, emergencies=1)) == ["social-care-emergency"]
    assert matched(assessed(70, services=1)) == []


def test_one_person_in_every_default_cohort() -> None:
    a = assessed(
        85,
        codes=("F00", "W19", "R26"),
        gp=("44054006", "38341003"),
        emergencies=2,
        services=1,
    )
    assert matched(a) == [c.code for c in DEFAULTS]


def test_any_not_and_every_measure() -> None:
    a = assessed(80, codes=("F00", "I50.0"), emergencies=2, services=1)
    assert a.frailty is not None
    assert (a.frailty.band, a.charlson.index, a.conditions.count) == ("intermediate", 4, 2)
    assert (a.emergency.emergency_admissions, a.emergency.emergency_bed_days) == (2, 6)
    true = [
        Measure("age_at_least", 80),
        Measure("hfrs_band_in", frozenset({"intermediate"})),
        Measure("charlson_at_least", 4),
        Measure("ltc_count_at_least", 2),
        Measure("emergency_admissions_at_least", 2),
        Measure("emergency_bed_days_at_least", 6),
        Measure("ae_attendances_at_least", 0),
        Measure("has_current_social_care_service", True),
    ]
    false = [
        Measure("age_at_least", 81),
        Measure("hfrs_band_in", frozenset({"low", "high"})),
        Measure("charlson_at_least", 5),
        Measure("ltc_count_at_least", 3),
        Measure("emergency_admissions_at_least", 3),
        Measure("emergency_bed_days_at_least", 7),
        Measure("ae_attendances_at_least", 1),
        Measure("has_current_social_care_service", False),
    ]
    assert [evaluate(m, a) for m in true] == [True] * 8
    assert [evaluate(m, a) for m in false] == [False] * 8
    assert evaluate(AnyOf((false[0], true[0])), a)
    assert not evaluate(All((false[0], true[0])), a)
    assert evaluate(Not(false[0]), a)
    assert not evaluate(Not(Not(false[0])), a)


def test_unknown_age_never_meets_an_age_threshold() -> None:
    a = assessed(None)
    assert not evaluate(Measure("age_at_least", 0), a)
    assert evaluate(Not(Measure("age_at_least", 18)), a)


def test_a_rule_file_loads_from_text() -> None:
    rules = load_cohorts(
        json.dumps(
            {
                "version": "2",
                "cohorts": [
                    {
                        "code": "no-services",
                        "name": "No social care",
                        "rule": {"not": {"has_current_social_care_service": True}},
                    }
                ],
            }
        )
    )
    (cohort,) = rules
    assert (cohort.code, cohort.description) == ("no-services", "")
    assert cohort.matches(assessed(70))
    assert not cohort.matches(assessed(70, services=1))


# --- malformed files ----------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "version": "1",
    "cohorts": [
        {
            "code": "a",
            "name": "A",
            "rule": {"all": [{"age_at_least": 75}, {"any": [{"hfrs_band_in": ["high"]}]}]},
        },
        {"code": "b", "name": "B", "rule": {"ltc_count_at_least": 3}},
    ],
}


def rule_of(rule: Any) -> dict[str, Any]:
    document = copy.deepcopy(GOOD)
    document["cohorts"][1]["rule"] = rule
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (rule_of({"age_over": 75}), "cohorts[1] 'b': rule: unknown rule or measure 'age_over'"),
        (
            rule_of({"hfrs_band_in": ["medium"]}),
            "cohorts[1] 'b': rule.hfrs_band_in: 'medium' is not a band",
        ),
        (rule_of({"hfrs_band_in": []}), "rule.hfrs_band_in: must be a non-empty list of bands"),
        (rule_of({"hfrs_band_in": "high"}), "rule.hfrs_band_in: must be a non-empty list of bands"),
        (
            rule_of({"charlson_at_least": -1}),
            "rule.charlson_at_least: must be a whole number, 0 or more (got -1)",
        ),
        (rule_of({"charlson_at_least": True}), "rule.charlson_at_least: must be a whole number"),
        (
            rule_of({"age_at_least": "75"}),
            "rule.age_at_least: must be a whole number, 0 or more (got '75')",
        ),
        (rule_of({"age_at_least": 74.5}), "rule.age_at_least: must be a whole number"),
        (
            rule_of({"has_current_social_care_service": 1}),
            "rule.has_current_social_care_service: must be true or false",
        ),
        (rule_of({"all": []}), "cohorts[1] 'b': rule.all: must be a non-empty list of rules"),
        (rule_of({"any": {"age_at_least": 1}}), "rule.any: must be a non-empty list of rules"),
        (
            rule_of({"all": [{"age_at_least": 1}, {"oops": 1}]}),
            "rule.all[1]: unknown rule or measure 'oops'",
        ),
        (
            rule_of({"not": {"not": {"emergency_bed_days_at_least": -2}}}),
            "rule.not.not.emergency_bed_days_at_least: must be a whole number",
        ),
        (
            rule_of({"age_at_least": 75, "ltc_count_at_least": 2}),
            "rule: a rule must be an object with exactly one key",
        ),
        (rule_of([{"age_at_least": 75}]), "rule: a rule must be an object with exactly one key"),
        (rule_of({}), "rule: a rule must be an object with exactly one key"),
    ],
)
def test_malformed_rules_are_refused_naming_the_bad_part(document: Any, message: str) -> None:
    with pytest.raises(CohortError) as caught:
        parse_cohorts(document)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith("Cohort rules: ")


def broken(change: Any) -> str:
    document = copy.deepcopy(GOOD)
    change(document)
    with pytest.raises(CohortError) as caught:
        parse_cohorts(document)
    return str(caught.value)


def test_malformed_documents_are_refused() -> None:
    with pytest.raises(CohortError, match="document: must be an object"):
        parse_cohorts([])
    assert "document: unknown field(s) extra" in broken(lambda d: d.update(extra=1))
    assert "document: 'version' must be a non-empty string" in broken(lambda d: d.pop("version"))
    assert "'cohorts' must be a non-empty list" in broken(lambda d: d.update(cohorts=[]))
    assert "cohorts[1]: duplicate cohort code 'a'" in broken(
        lambda d: d["cohorts"][1].update(code="a")
    )
    assert "cohorts[0] 'a': missing 'rule'" in broken(lambda d: d["cohorts"][0].pop("rule"))
    assert "cohorts[0] 'a': 'name' must be a non-empty string" in broken(
        lambda d: d["cohorts"][0].update(name=" ")
    )
    assert "cohorts[0]: code 'Frail 75' must be lower case" in broken(
        lambda d: d["cohorts"][0].update(code="Frail 75")
    )
    assert "cohorts[0] 'a': unknown field(s) when" in broken(
        lambda d: d["cohorts"][0].update(when="now")
    )
    assert "cohorts[1]: must be an object" in broken(lambda d: d["cohorts"].__setitem__(1, "b"))


def test_rules_nested_too_deep_are_refused() -> None:
    rule: Any = {"age_at_least": 1}
    for _ in range(30):
        rule = {"not": rule}
    with pytest.raises(CohortError, match="nest more than 20 deep"):
        parse_cohorts(rule_of(rule))


def test_text_that_is_not_json_is_refused() -> None:
    with pytest.raises(CohortError, match="document: not valid JSON"):
        load_cohorts("{cohorts: [")

"""The Hospital Frailty Risk Score and the Charlson comorbidity index, against the reference."""

from datetime import date, timedelta

import pytest

from carejoin.synthetic import DIAGNOSES
from coordination.case_finding.rules import (
    charlson,
    charlson_conditions,
    hfrs,
    hfrs_band,
    hfrs_weights,
    icd10_category,
    years_before,
)
from tests.coordination.case_finding.builders import AS_OF, born_aged, dx, person

TWO_YEARS_AGO = date(2024, 11, 1)


def frailty_of(*codes: str) -> tuple[float, str, list[str]]:
    result = hfrs(person(80, diagnoses=tuple(dx(c) for c in codes)), as_of=AS_OF)
    assert result is not None
    return result.score, result.band, [c.key for c in result.contributions]


# --- reference data -----------------------------------------------------------------------


def test_hfrs_weights_are_the_papers_109_categories() -> None:
    weights = hfrs_weights()
    assert len(weights) == 109
    assert sum(weights.values()) == 1732  # 173.2 in tenths
    assert weights["F00"] == 71
    assert weights["R50"] == 1
    assert weights["W19"] == 32
    assert weights["R26"] == 26
    assert weights["J18"] == 11
    assert max(weights.values()) == weights["F00"]


def test_charlson_reference_has_17_conditions_and_289_prefixes() -> None:
    conditions = {c.code: c for c in charlson_conditions()}
    assert len(conditions) == 17
    assert sum(len(c.prefixes) for c in conditions.values()) == 289
    assert {code: c.quan2011_weight for code, c in conditions.items()} == {
        "mi": 0,
        "chf": 2,
        "pvd": 0,
        "cevd": 0,
        "dementia": 2,
        "cpd": 1,
        "rheumd": 1,
        "pud": 0,
        "mld": 2,
        "diab": 0,
        "diabwc": 1,
        "hp": 2,
        "rend": 1,
        "canc": 2,
        "msld": 4,
        "metacanc": 6,
        "aids": 4,
    }
    assert conditions["aids"].charlson1987_weight == 6
    assert "I252" in conditions["mi"].prefixes


# --- HFRS ---------------------------------------------------------------------------------


def test_worked_example_dementia_fall_gait_is_12_9_intermediate() -> None:
    assert frailty_of("F00", "W19", "R26") == (12.9, "intermediate", ["F00", "W19", "R26"])


def test_worked_example_pneumonia_alone_is_1_1_low() -> None:
    assert frailty_of("J18") == (1.1, "low", ["J18"])


def test_contributions_name_the_facts_and_points() -> None:
    falls = dx("W19", date(2026, 3, 2))
    delirium = dx("F05.9", date(2026, 5, 1))
    result = hfrs(person(88, diagnoses=(falls, delirium)), as_of=AS_OF)
    assert result is not None
    assert [(c.key, c.points, c.facts) for c in result.contributions] == [
        ("F05", 3.2, (delirium.fact,)),
        ("W19", 3.2, (falls.fact,)),
    ]
    assert result.score == 6.4
    assert result.lookback_years == 2


@pytest.mark.parametrize("code", ["F00.1", "F001", "F00X", "f00.1", " F00.1 ", "F00.1D"])
def test_codes_are_normalised_to_their_three_character_category(code: str) -> None:
    assert icd10_category(code) == "F00"
    assert frailty_of(code) == (7.1, "intermediate", ["F00"])


def test_the_three_spellings_of_one_category_count_once() -> None:
    diagnoses = (dx("F00.1"), dx("F001"), dx("F00X"))
    result = hfrs(person(80, diagnoses=diagnoses), as_of=AS_OF)
    assert result is not None
    assert result.score == 7.1
    (contribution,) = result.contributions
    assert set(contribution.facts) == {d.fact for d in diagnoses}


def test_a_category_recorded_twice_counts_once() -> None:
    assert frailty_of("J18.9", "J18.0", "J18.9") == (1.1, "low", ["J18"])


@pytest.mark.parametrize(
    ("codes", "score", "band"),
    [
        (("W19", "L89"), 4.9, "low"),
        (("W19", "R55"), 5.0, "intermediate"),
        (("F00", "G81", "N39", "R11"), 15.0, "intermediate"),
        (("F00", "G81", "N39", "R11", "R50"), 15.1, "high"),
        (("F00", "G81", "N39", "F05", "W19"), 21.1, "high"),
    ],
)
def test_band_boundaries(codes: tuple[str, ...], score: float, band: str) -> None:
    assert frailty_of(*codes)[:2] == (score, band)


def test_hfrs_band_on_tenths() -> None:
    assert [hfrs_band(t) for t in (0, 49, 50, 150, 151)] == [
        "low",
        "low",
        "intermediate",
        "intermediate",
        "high",
    ]


def test_no_hospital_diagnoses_scores_zero_low_for_the_over_75s() -> None:
    result = hfrs(person(90), as_of=AS_OF)
    assert result is not None
    assert (result.score, result.band, result.contributions) == (0.0, "low", ())


@pytest.mark.parametrize("age", [74, 60, 18])
def test_under_75_is_not_scored(age: int) -> None:
    assert hfrs(person(age, diagnoses=(dx("F00"), dx("W19"))), as_of=AS_OF) is None


def test_75_on_the_day_is_scored_and_the_day_before_is_not() -> None:
    record = person(None, birth_date=born_aged(75), diagnoses=(dx("F00"),))
    assert hfrs(record, as_of=AS_OF) is not None
    assert hfrs(record, as_of=AS_OF - timedelta(days=1)) is None


def test_unknown_or_impossible_age_is_not_scored() -> None:
    assert hfrs(person(None, diagnoses=(dx("F00"),)), as_of=AS_OF) is None
    future = person(None, birth_date=AS_OF + timedelta(days=1), diagnoses=(dx("F00"),))
    assert hfrs(future, as_of=AS_OF) is None


def test_lookback_is_the_preceding_two_years_inclusive() -> None:
    assert years_before(AS_OF, 2) == TWO_YEARS_AGO
    on_the_day = dx("F00", TWO_YEARS_AGO)
    a_day_early = dx("W19", TWO_YEARS_AGO - timedelta(days=1))
    today = dx("R26", AS_OF)
    tomorrow = dx("J18", AS_OF + timedelta(days=1))
    record = person(80, diagnoses=(on_the_day, a_day_early, today, tomorrow))
    result = hfrs(record, as_of=AS_OF)
    assert result is not None
    assert [c.key for c in result.contributions] == ["F00", "R26"]
    assert result.score == 9.7
    wider = hfrs(record, as_of=AS_OF, lookback_years=3)
    assert wider is not None
    assert wider.score == 12.9


def test_undated_hospital_diagnoses_are_not_counted_but_are_reported() -> None:
    result = hfrs(person(80, diagnoses=(dx("F00", None), dx("J18"))), as_of=AS_OF)
    assert result is not None
    assert (result.score, result.undated_excluded) == (1.1, 1)


def test_lookback_from_29_february() -> None:
    assert years_before(date(2028, 2, 29), 2) == date(2026, 2, 28)
    as_of = date(2028, 2, 29)
    record = person(None, birth_date=date(1940, 1, 1), diagnoses=(dx("F00", date(2026, 2, 28)),))
    result = hfrs(record, as_of=as_of)
    assert result is not None
    assert result.score == 7.1


def test_gp_recorded_icd10_is_not_counted() -> None:
    record = person(80, diagnoses=(dx("F00", hospital=False), dx("J18")))
    result = hfrs(record, as_of=AS_OF)
    assert result is not None
    assert (result.score, [c.key for c in result.contributions]) == (1.1, ["J18"])


def test_hospital_snomed_and_icd10_cm_are_not_counted() -> None:
    record = person(
        80,
        diagnoses=(
            dx("52448006", system="http://snomed.info/sct"),
            dx("F00.1", system="http://hl7.org/fhir/sid/icd-10-cm"),
        ),
    )
    result = hfrs(record, as_of=AS_OF)
    assert result is not None
    assert result.score == 0.0


@pytest.mark.parametrize(
    "system",
    [
        "http://hl7.org/fhir/sid/icd-10",
        "http://hl7.org/fhir/sid/icd-10-uk",
        "https://fhir.hl7.org.uk/Id/icd10",
    ],
)
def test_icd10_system_uris_as_english_hospitals_send_them(system: str) -> None:
    result = hfrs(person(80, diagnoses=(dx("F00.1", system=system),)), as_of=AS_OF)
    assert result is not None
    assert result.score == 7.1


def test_synthetic_hospital_diagnoses_map_to_hfrs_categories() -> None:
    weights = hfrs_weights()
    categories = {icd10_category(code) for code, _ in DIAGNOSES}
    assert {c for c in categories if c not in weights} == {"I50", "J44"}


def test_as_of_must_be_a_date() -> None:
    from datetime import datetime

    with pytest.raises(TypeError):
        hfrs(person(80), as_of=datetime(2026, 11, 1))  # type: ignore[arg-type]


# --- Charlson -----------------------------------------------------------------------------


def index_of(*codes: str, **kwargs: object) -> tuple[int, list[tuple[str, float]], list[str]]:
    result = charlson(person(70, diagnoses=tuple(dx(c) for c in codes)), as_of=AS_OF, **kwargs)  # type: ignore[arg-type]
    return (
        result.index,
        [(c.key, c.points) for c in result.contributions],
        [f"{s.suppressed.key}<{s.by}" for s in result.hierarchy_applied],
    )


def test_charlson_of_nothing_is_zero() -> None:
    assert index_of() == (0, [], [])


def test_liver_hierarchy_counts_only_moderate_or_severe() -> None:
    assert index_of("K70.0") == (2, [("mld", 2)], [])
    assert index_of("K70.0", "K72.1") == (4, [("msld", 4)], ["mld<msld"])


def test_diabetes_hierarchy_counts_only_with_complications() -> None:
    assert index_of("E11.9") == (0, [("diab", 0)], [])
    assert index_of("E11.9", "E11.2") == (1, [("diabwc", 1)], ["diab<diabwc"])


def test_cancer_hierarchy_counts_only_metastatic() -> None:
    assert index_of("C50.9") == (2, [("canc", 2)], [])
    assert index_of("C50.9", "C78.0") == (6, [("metacanc", 6)], ["canc<metacanc"])


def test_all_three_hierarchies_at_once() -> None:
    codes = ("K70.0", "K72.1", "E11.9", "E11.2", "C50.9", "C78.0")
    assert index_of(*codes) == (
        11,
        [("diabwc", 1), ("msld", 4), ("metacanc", 6)],
        ["mld<msld", "diab<diabwc", "canc<metacanc"],
    )


def test_suppressed_condition_keeps_its_facts() -> None:
    mild = dx("K70.0")
    result = charlson(person(70, diagnoses=(mild, dx("K72.1"))), as_of=AS_OF)
    (step,) = result.hierarchy_applied
    assert (step.suppressed.key, step.suppressed.points, step.suppressed.facts, step.by) == (
        "mld",
        2,
        (mild.fact,),
        "msld",
    )


def test_hiv_weighs_4_under_quan_2011_and_6_under_charlson_1987() -> None:
    assert index_of("B20.1") == (4, [("aids", 4)], [])
    assert index_of("B24", weights="charlson1987") == (6, [("aids", 6)], [])


def test_four_character_prefixes_match_by_prefix() -> None:
    assert index_of("I25.2") == (0, [("mi", 0)], [])
    assert index_of("I252") == (0, [("mi", 0)], [])
    assert index_of("I25.2", weights="charlson1987") == (1, [("mi", 1)], [])
    assert index_of("I25.1") == (0, [], [])  # I25 alone is in no condition
    assert index_of("I25.5") == (2, [("chf", 2)], [])
    assert index_of("N18.4", "I12.0") == (1, [("rend", 1)], [])  # N18 (3) and I120 (4)


def test_each_condition_counts_once() -> None:
    assert index_of("I50.0", "I11.0", "I50.9") == (2, [("chf", 2)], [])


def test_index_is_the_sum_of_weights_in_reference_order() -> None:
    assert index_of("F00.1", "J44.1", "I50.0", "I63.9", "N18.3") == (
        6,
        [("chf", 2), ("cevd", 0), ("dementia", 2), ("cpd", 1), ("rend", 1)],
        [],
    )


def test_charlson_lookback_is_configurable() -> None:
    old = dx("I50.0", TWO_YEARS_AGO - timedelta(days=1))
    edge = dx("J44.1", TWO_YEARS_AGO)
    record = person(70, diagnoses=(old, edge))
    assert charlson(record, as_of=AS_OF).index == 1
    assert charlson(record, as_of=AS_OF, lookback_years=5).index == 3
    assert charlson(record, as_of=AS_OF, lookback_years=5).lookback_years == 5


def test_charlson_counts_gp_icd10_unless_hospital_only() -> None:
    record = person(70, diagnoses=(dx("I50.0", hospital=False), dx("J44.1")))
    assert charlson(record, as_of=AS_OF).index == 3
    assert charlson(record, as_of=AS_OF, hospital_only=True).index == 1


def test_charlson_ignores_undated_and_non_icd10() -> None:
    record = person(
        70, diagnoses=(dx("I50.0", None), dx("84114007", system="http://snomed.info/sct"))
    )
    result = charlson(record, as_of=AS_OF)
    assert (result.index, result.undated_excluded) == (0, 1)


def test_charlson_is_scored_at_any_age() -> None:
    record = person(30, diagnoses=(dx("B20"),))
    assert charlson(record, as_of=AS_OF).index == 4


def test_unknown_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown Charlson weights"):
        charlson(person(70), as_of=AS_OF, weights="elixhauser")  # type: ignore[arg-type]

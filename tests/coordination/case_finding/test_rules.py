"""Long-term conditions, emergency use, social care services, ages and the whole assessment."""

import copy
import json
from datetime import UTC, date, datetime, timedelta
from importlib.resources import files
from typing import Any

import pytest

from carejoin.synthetic import CONDITIONS
from consent.labels import default_value_sets, is_concept_id
from coordination.case_finding.rules import (
    EMERGENCY_ADMISSION_METHODS,
    Admission,
    Attendance,
    ScoringSettings,
    admission_is_emergency,
    age_on,
    assess,
    current_services,
    emergency_use,
    long_term_condition_list,
    long_term_conditions,
    parse_long_term_conditions,
    rank,
)
from fhir_gateway.feeds.hl7v2 import ADMISSION_METHODS
from tests.coordination.case_finding.builders import (
    AS_OF,
    attendance,
    dx,
    fact,
    person,
    service,
    snomed,
    stay,
)

WINDOW_START = date(2025, 11, 1)


# --- ages ---------------------------------------------------------------------------------


def test_age_on() -> None:
    assert age_on(date(1950, 11, 1), AS_OF) == 76
    assert age_on(date(1950, 11, 2), AS_OF) == 75
    assert age_on(AS_OF, AS_OF) == 0


def test_born_on_29_february_is_a_year_older_on_1_march() -> None:
    leapling = date(1952, 2, 29)
    assert age_on(leapling, date(2027, 2, 28)) == 74
    assert age_on(leapling, date(2027, 3, 1)) == 75
    assert age_on(leapling, date(2028, 2, 29)) == 76


def test_age_before_birth_is_refused() -> None:
    with pytest.raises(ValueError, match="before the birth date"):
        age_on(date(2027, 1, 1), AS_OF)


# --- admission method ---------------------------------------------------------------------


def test_admission_method_decides_emergency() -> None:
    for code, display in ADMISSION_METHODS.items():
        assert admission_is_emergency(code) is display.startswith("Emergency"), code
    assert {c for c, d in ADMISSION_METHODS.items() if d.startswith("Emergency")} == set(
        EMERGENCY_ADMISSION_METHODS
    )
    assert admission_is_emergency(" 2a ") is True
    assert admission_is_emergency("11") is False
    assert admission_is_emergency(None) is None
    assert admission_is_emergency("") is None
    assert admission_is_emergency("99") is None


# --- long-term conditions -----------------------------------------------------------------


def ltc_codes(*diagnoses: Any) -> tuple[str, ...]:
    return long_term_conditions(person(70, diagnoses=diagnoses), as_of=AS_OF).codes


def test_packaged_list_has_the_qof_registers() -> None:
    ltc = long_term_condition_list()
    assert [c.code for c in ltc.conditions] == [
        "af",
        "asthma",
        "cancer",
        "chd",
        "ckd",
        "copd",
        "dementia",
        "depression",
        "diabetes",
        "epilepsy",
        "heart_failure",
        "hypertension",
        "learning_disability",
        "serious_mental_illness",
        "osteoporosis",
        "pad",
        "rheumatoid_arthritis",
        "stroke_tia",
    ]
    assert all(is_concept_id(code) for c in ltc.conditions for code in c.snomed)
    cancer = next(c for c in ltc.conditions if c.code == "cancer")
    assert len(cancer.icd10_prefixes) == 97  # C00-C97 without C44
    assert "C44" not in cancer.icd10_prefixes


def test_synthetic_gp_conditions_map_to_registers() -> None:
    mapped = {code: ltc_codes(snomed(code)) for code, *_ in CONDITIONS}
    assert mapped == {
        "38341003": ("hypertension",),
        "44054006": ("diabetes",),
        "13645005": ("copd",),
        "84114007": ("heart_failure",),
        "49436004": ("af",),
        "709044004": ("ckd",),
        "52448006": ("dementia",),
        "195967001": ("asthma",),
        "35489007": ("depression",),
        "396275006": (),  # osteoarthritis: no QOF register
        "414545008": ("chd",),
        "64859006": ("osteoporosis",),
    }


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("I48.0", ("af",)),
        ("I48", ("af",)),
        ("N18.3", ("ckd",)),
        ("N184", ("ckd",)),
        ("N18.1", ()),
        ("C50.9", ("cancer",)),
        ("C44.3", ()),
        ("C97", ("cancer",)),
        ("D05.1", ()),
        ("I11.0", ("heart_failure", "hypertension")),
        ("I11.9", ("hypertension",)),
        ("G45.9", ("stroke_tia",)),
        ("G45.4", ()),
        ("F31.2", ("serious_mental_illness",)),
        ("F32.1", ("depression",)),
        ("E11.9", ("diabetes",)),
        ("I25.2", ("chd",)),
        ("M81.0", ("osteoporosis",)),
        ("R26.8", ()),
    ],
)
def test_icd10_matches_by_prefix(code: str, expected: tuple[str, ...]) -> None:
    assert ltc_codes(dx(code)) == expected


def test_snomed_matches_exactly_and_only_under_snomed() -> None:
    assert ltc_codes(snomed("44054006")) == ("diabetes",)
    assert ltc_codes(snomed(" 44054006 ")) == ("diabetes",)
    assert ltc_codes(snomed("4405400")) == ()
    assert ltc_codes(dx("44054006")) == ()  # an SNOMED id under ICD-10 is nothing
    assert ltc_codes(dx("E11", system="http://read.info/ctv3")) == ()


def test_each_condition_counts_once_with_all_its_facts() -> None:
    gp = snomed("44054006")
    hospital = dx("E11.9")
    again = snomed("73211009", date(2020, 1, 1))
    result = long_term_conditions(
        person(70, diagnoses=(gp, hospital, again, snomed("38341003"))), as_of=AS_OF
    )
    assert (result.count, result.codes) == (2, ("diabetes", "hypertension"))
    diabetes = result.contributions[0]
    assert (diabetes.key, diabetes.display, diabetes.points) == ("diabetes", "Diabetes mellitus", 1)
    assert diabetes.facts == (gp.fact, again.fact, hospital.fact)  # date order


def test_ltc_has_no_lookback_but_ignores_the_future() -> None:
    result = long_term_conditions(
        person(
            70,
            diagnoses=(
                snomed("49436004", date(1990, 1, 1)),
                snomed("13645005", None),
                snomed("84114007", AS_OF + timedelta(days=1)),
            ),
        ),
        as_of=AS_OF,
    )
    assert result.codes == ("af", "copd")


def test_ltc_list_is_refused_when_malformed() -> None:
    document = json.loads(
        (files("coordination") / "data" / "long_term_conditions.json").read_text("utf-8")
    )

    def broken(change: Any) -> str:
        doc = copy.deepcopy(document)
        change(doc)
        with pytest.raises(ValueError, match="Long-term condition list") as caught:
            parse_long_term_conditions(doc)
        return str(caught.value)

    first = "conditions[0] 'af'"
    assert f"{first}: snomed[0]: '49436005' is not a valid" in broken(
        lambda d: d["conditions"][0]["snomed"][0].update(code="49436005")
    )
    assert "malformed ICD-10 prefix or range 'I4'" in broken(
        lambda d: d["conditions"][0]["icd10_prefixes"][0].update(prefix="I4")
    )
    assert "malformed ICD-10 prefix or range 'C43-C00'" in broken(
        lambda d: d["conditions"][2]["icd10_prefixes"][0].update(prefix="C43-C00")
    )
    assert "ICD-10 prefix I481 is already covered" in broken(
        lambda d: d["conditions"][0]["icd10_prefixes"].append({"prefix": "I48.1", "display": "x"})
    )
    assert "duplicate condition 'af'" in broken(
        lambda d: d["conditions"].append(copy.deepcopy(d["conditions"][0]))
    )
    assert "unknown field(s) register" in broken(lambda d: d["conditions"][0].update(register="AF"))
    assert "'source' must be a non-empty string" in broken(lambda d: d.pop("source"))


def test_depression_and_smi_overlap_the_mental_health_labels() -> None:
    # Those registers' ICD-10 codes are sensitive: a counted diagnosis keeps its labels.
    mental_health = default_value_sets().category("mental_health").icd10_prefixes
    assert {"F32", "F33", "F20", "F31"} <= set(mental_health)
    labelled = dx("F32.1", labels=frozenset({"mental_health"}))
    result = long_term_conditions(person(70, diagnoses=(labelled,)), as_of=AS_OF)
    assert result.contributions[0].facts[0].labels == frozenset({"mental_health"})


# --- emergency use ------------------------------------------------------------------------


def use(*admissions: Admission, attendances: tuple[Attendance, ...] = (), months: int = 12) -> Any:
    record = person(80, admissions=admissions, attendances=attendances)
    result = emergency_use(record, as_of=AS_OF, months=months)
    return (result.emergency_admissions, result.emergency_bed_days, result.ae_attendances)


def test_window_is_the_preceding_12_months() -> None:
    result = emergency_use(person(80), as_of=AS_OF)
    assert (result.window_start, result.months, result.contributions) == (WINDOW_START, 12, ())
    assert emergency_use(person(80), as_of=date(2026, 8, 31), months=6).window_start == date(
        2026, 2, 28
    )


def test_emergency_is_told_by_the_admission_method_not_the_class() -> None:
    # Both are inpatient stays (class IMP); method 21 (via A&E) is an emergency, 11 is not.
    by_method = {
        code: stay(
            date(2026, 5, 1), date(2026, 5, 6), emergency=admission_is_emergency(code) is True
        )
        for code in ("21", "11")
    }
    assert use(by_method["21"]) == (1, 5, 0)
    assert use(by_method["11"]) == (0, 0, 0)
    assert use(*by_method.values()) == (1, 5, 0)


def test_admissions_count_when_they_start_in_the_window() -> None:
    assert use(stay(WINDOW_START, WINDOW_START)) == (1, 0, 0)
    assert use(stay(WINDOW_START - timedelta(days=1), WINDOW_START - timedelta(days=1))) == (
        0,
        0,
        0,
    )
    assert use(stay(AS_OF, None)) == (1, 0, 0)
    assert use(stay(AS_OF + timedelta(days=1), None)) == (0, 0, 0)


def test_bed_days_are_clipped_to_the_window() -> None:
    across_the_start = stay(WINDOW_START - timedelta(days=5), WINDOW_START + timedelta(days=3))
    assert use(across_the_start) == (0, 3, 0)
    ended_before = stay(WINDOW_START - timedelta(days=9), WINDOW_START - timedelta(days=2))
    assert use(ended_before) == (0, 0, 0)
    past_as_of = stay(AS_OF - timedelta(days=2), AS_OF + timedelta(days=4))
    assert use(past_as_of) == (1, 2, 0)


def test_an_open_stay_counts_to_as_of() -> None:
    assert use(stay(AS_OF - timedelta(days=10), None)) == (1, 10, 0)
    whole_year = stay(WINDOW_START - timedelta(days=40), None)
    assert use(whole_year) == (0, 365, 0)


def test_bed_days_add_up_across_stays() -> None:
    stays = (
        stay(date(2026, 1, 10), date(2026, 1, 14)),
        stay(date(2026, 6, 1), date(2026, 6, 1)),
        stay(date(2026, 9, 1), date(2026, 9, 20)),
        stay(date(2026, 10, 1), date(2026, 10, 30), emergency=False),
    )
    result = emergency_use(person(80, admissions=stays), as_of=AS_OF)
    assert (result.emergency_admissions, result.emergency_bed_days) == (3, 23)
    admissions, bed_days = result.contributions
    assert (admissions.key, admissions.points, admissions.facts) == (
        "emergency_admissions",
        3,
        tuple(s.fact for s in stays[:3]),
    )
    assert (bed_days.key, bed_days.points, bed_days.facts) == (
        "emergency_bed_days",
        23,
        (stays[0].fact, stays[2].fact),
    )


def test_days_are_calendar_days_in_england() -> None:
    # 23:30 UTC on 31 October 2025 is 23:30 GMT: outside a window from 1 November 2025.
    # 23:30 UTC on 31 March 2026 is 00:30 BST on 1 April: inside a window from 1 April 2026.
    late = Admission(datetime(2025, 10, 31, 23, 30, tzinfo=UTC), None, True, fact("Encounter/late"))
    assert use(late)[0] == 0
    bst = Admission(datetime(2026, 3, 31, 23, 30, tzinfo=UTC), None, True, fact("Encounter/bst"))
    result = emergency_use(person(80, admissions=(bst,)), as_of=date(2027, 4, 1))
    assert result.window_start == date(2026, 4, 1)
    assert result.emergency_admissions == 1
    naive = Admission(datetime(2025, 11, 1, 0, 5), None, True, fact("Encounter/naive"))
    assert use(naive)[0] == 1


def test_ae_attendances_in_the_window() -> None:
    visits = (
        attendance(WINDOW_START - timedelta(days=1)),
        attendance(WINDOW_START),
        attendance(date(2026, 7, 7)),
        attendance(AS_OF),
        attendance(AS_OF + timedelta(days=1)),
    )
    assert use(attendances=visits) == (0, 0, 3)
    assert use(attendances=visits, months=3) == (0, 0, 1)


# --- social care services -----------------------------------------------------------------


def test_current_services_on_as_of() -> None:
    running = service(date(2025, 1, 1))
    ends_today = service(date(2024, 5, 1), AS_OF, code="meals")
    ended = service(date(2024, 5, 1), AS_OF - timedelta(days=1), code="respite")
    not_yet = service(AS_OF + timedelta(days=1), code="telecare")
    undated = service(None, code="day-centre")
    record = person(80, services=(running, ends_today, ended, not_yet, undated))
    assert current_services(record, as_of=AS_OF) == (undated, ends_today, running)


# --- the assessment -----------------------------------------------------------------------

MH = frozenset({"mental_health"})
SAFEGUARDING = frozenset({"safeguarding"})


def test_assessment_brings_every_measure_together() -> None:
    record = person(
        84,
        diagnoses=(
            dx("F00.1"),
            dx("W19"),
            dx("I50.0"),
            snomed("44054006"),
            snomed("38341003"),
            snomed("13645005"),
        ),
        admissions=(stay(date(2026, 2, 1), date(2026, 2, 8)), stay(date(2026, 9, 1), None)),
        attendances=(attendance(date(2026, 4, 4)),),
        services=(service(date(2025, 6, 1)),),
        person_id="p-84",
    )
    a = assess(record, as_of=AS_OF)
    assert (a.person_id, a.as_of, a.age) == ("p-84", AS_OF, 84)
    assert a.frailty is not None
    assert (a.frailty.score, a.frailty.band) == (10.3, "intermediate")
    assert a.charlson.index == 4  # chf 2, dementia 2
    assert a.conditions.codes == ("copd", "dementia", "diabetes", "heart_failure", "hypertension")
    assert (a.emergency.emergency_admissions, a.emergency.emergency_bed_days) == (2, 68)
    assert a.emergency.ae_attendances == 1
    assert len(a.services) == 1
    assert a.labels == frozenset()
    assert tuple(a.need) == (1, 2, 4, 5, 68, 1, 103)


def test_assessment_under_75_has_no_frailty_and_ranks_as_low() -> None:
    a = assess(person(60, diagnoses=(dx("F00"),)), as_of=AS_OF)
    assert (a.age, a.frailty) == (60, None)
    assert a.need.frailty_band == 0
    assert a.need.hfrs_tenths == 0


def test_assessment_uses_its_settings() -> None:
    record = person(
        80,
        diagnoses=(dx("I50.0", date(2023, 1, 1)),),
        admissions=(stay(date(2026, 1, 5), date(2026, 1, 6)),),
    )
    default = assess(record, as_of=AS_OF)
    wide = assess(
        record,
        as_of=AS_OF,
        settings=ScoringSettings(
            hfrs_lookback_years=5,
            charlson_lookback_years=5,
            charlson_weights="charlson1987",
            emergency_months=6,
        ),
    )
    assert (default.charlson.index, default.emergency.emergency_admissions) == (0, 1)
    assert (wide.charlson.index, wide.emergency.emergency_admissions) == (1, 0)
    assert wide.frailty is not None
    assert wide.frailty.lookback_years == 5


def test_labels_are_the_union_of_every_fact_carried() -> None:
    record = person(
        80,
        diagnoses=(
            dx("F32.1", labels=MH),  # HFRS F32 and the depression register
            dx("K70.0", labels=frozenset({"substance_misuse"})),  # mld, suppressed by msld
            dx("K72.1"),
            dx("F10.2", date(2010, 1, 1), labels=frozenset({"hiv"})),  # outside every window
        ),
        admissions=(stay(date(2026, 3, 1), date(2026, 3, 3), labels=SAFEGUARDING),),
        services=(
            service(date(2026, 1, 1), labels=frozenset({"sexual_health"})),
            service(date(2020, 1, 1), date(2021, 1, 1), labels=frozenset({"fertility"})),
        ),
    )
    a = assess(record, as_of=AS_OF)
    assert a.labels == frozenset(
        {"mental_health", "substance_misuse", "safeguarding", "sexual_health"}
    )


def test_a_label_only_reaches_the_assessment_through_a_fact_it_carries() -> None:
    unlabelled = assess(person(80, diagnoses=(dx("J18.9"),)), as_of=AS_OF)
    assert unlabelled.labels == frozenset()
    gp_only = assess(person(60, diagnoses=(dx("R26", labels=MH, hospital=False),)), as_of=AS_OF)
    assert gp_only.labels == frozenset()  # not scored anywhere: carried nowhere


def test_rank_orders_by_need_then_person_id() -> None:
    def a(pid: str, age: int, *codes: str, admissions: int = 0) -> Any:
        stays = tuple(stay(date(2026, 1 + i, 1), date(2026, 1 + i, 3)) for i in range(admissions))
        return assess(
            person(age, person_id=pid, diagnoses=tuple(dx(c) for c in codes), admissions=stays),
            as_of=AS_OF,
        )

    people = [
        a("low-b", 80, "J18"),
        a("high", 80, "F00", "G81", "N39", "F05"),
        a("young-admitted", 60, admissions=3),
        a("low-a", 80, "J18"),
        a("intermediate", 90, "F00"),
        a("intermediate-admitted", 90, "F00", admissions=1),
    ]
    assert [p.person_id for p in rank(people)] == [
        "high",
        "intermediate-admitted",
        "intermediate",
        "young-admitted",
        "low-a",
        "low-b",
    ]

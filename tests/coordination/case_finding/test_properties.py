"""Properties of the scores over generated records."""

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from coordination.case_finding.rules import (
    CHARLSON_HIERARCHIES,
    Frailty,
    age_on,
    charlson,
    charlson_conditions,
    emergency_use,
    hfrs,
    hfrs_weights,
    years_before,
)
from tests.coordination.case_finding.builders import AS_OF, dx, person, stay

CATEGORIES = sorted(hfrs_weights())
PREFIXES = sorted(p for c in charlson_conditions() for p in c.prefixes)
WEIGHT = {c.code: c.quan2011_weight for c in charlson_conditions()}
OF_PREFIX = {p: c.code for c in charlson_conditions() for p in c.prefixes}


@st.composite
def spelling(draw: st.DrawFn, category: str) -> str:
    """One of the ways a hospital might send a code in ``category``."""
    digit = draw(st.sampled_from(["", "0", "1", "9"]))
    dot = "." if digit and draw(st.booleans()) else ""
    code = f"{category}{dot}{digit}" + draw(st.sampled_from(["", "X", "D", "-"]))
    return code.lower() if draw(st.booleans()) else code


def frailty(codes: list[str]) -> Frailty:
    result = hfrs(person(80, diagnoses=tuple(dx(c) for c in codes)), as_of=AS_OF)
    assert result is not None
    return result


@given(st.data(), st.lists(st.sampled_from(CATEGORIES), max_size=25))
def test_hfrs_is_the_sum_of_distinct_category_weights(
    data: st.DataObject, chosen: list[str]
) -> None:
    codes = [data.draw(spelling(c)) for c in chosen]
    result = frailty(codes)
    expected = sum((Decimal(hfrs_weights()[c]) / 10 for c in set(chosen)), Decimal(0))
    assert Decimal(str(result.score)) == expected
    assert {c.key for c in result.contributions} == set(chosen)
    band = "low" if expected < 5 else "intermediate" if expected <= 15 else "high"
    assert result.band == band


@given(
    st.lists(st.sampled_from(CATEGORIES), max_size=20),
    st.lists(st.sampled_from(CATEGORIES), max_size=20),
)
def test_hfrs_is_monotone_in_the_set_of_codes(some: list[str], more: list[str]) -> None:
    smaller = frailty(some)
    larger = frailty(some + more)
    assert smaller.score <= larger.score
    order = ["low", "intermediate", "high"]
    assert order.index(smaller.band) <= order.index(larger.band)


@given(st.lists(st.sampled_from([*CATEGORIES, "I50", "J44", "Z00", "A00"]), max_size=20))
def test_hfrs_ignores_gp_diagnoses_and_codes_outside_the_list(codes: list[str]) -> None:
    hospital = tuple(dx(c) for c in codes)
    gp = tuple(dx(c, hospital=False) for c in CATEGORIES)
    alone = hfrs(person(80, diagnoses=hospital), as_of=AS_OF)
    assert alone is not None
    assert hfrs(person(80, diagnoses=hospital + gp), as_of=AS_OF) == alone
    assert {c.key for c in alone.contributions} == set(codes) & set(CATEGORIES)


@given(st.data(), st.lists(st.sampled_from(PREFIXES), max_size=15))
def test_charlson_never_counts_both_levels_of_a_hierarchy(
    data: st.DataObject, chosen: list[str]
) -> None:
    codes = [
        p + (data.draw(st.sampled_from(["", "0", "9"])) if len(p) == 3 else "") for p in chosen
    ]
    result = charlson(person(70, diagnoses=tuple(dx(c) for c in codes)), as_of=AS_OF)
    counted = {c.key for c in result.contributions}
    present = {OF_PREFIX[p] for p in chosen}
    for milder, severe in CHARLSON_HIERARCHIES:
        assert not {milder, severe} <= counted
        if {milder, severe} <= present:
            assert severe in counted
            assert milder in {s.suppressed.key for s in result.hierarchy_applied}
    suppressed = {s.suppressed.key for s in result.hierarchy_applied}
    assert counted | suppressed == present
    assert result.index == sum(WEIGHT[c] for c in counted)
    assert result.index <= sum(WEIGHT[c] for c in present)


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-800, max_value=30),
            st.one_of(st.none(), st.integers(min_value=0, max_value=400)),
            st.booleans(),
        ),
        max_size=8,
    ),
    st.integers(min_value=1, max_value=36),
)
def test_emergency_use_stays_within_its_window(
    stays: list[tuple[int, int | None, bool]], months: int
) -> None:
    admissions = tuple(
        stay(
            AS_OF + timedelta(days=start),
            None if length is None else AS_OF + timedelta(days=start + length),
            emergency=emergency,
        )
        for start, length, emergency in stays
    )
    result = emergency_use(person(80, admissions=admissions), as_of=AS_OF, months=months)
    window = (AS_OF - result.window_start).days
    emergencies = [s for s in stays if s[2]]
    assert 0 <= result.emergency_admissions <= len(emergencies)
    assert 0 <= result.emergency_bed_days <= window * len(emergencies)
    assert result.emergency_admissions == sum(
        1 for start, _, _ in emergencies if -window <= start <= 0
    )


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2026, 11, 1)), st.integers(0, 60))
def test_age_grows_by_one_a_year(birth: date, years: int) -> None:
    if (birth.month, birth.day) == (2, 29):
        birth = birth - timedelta(days=1)
    as_of = birth.replace(year=birth.year + years)
    assert age_on(birth, as_of) == years
    if years:
        assert age_on(birth, as_of - timedelta(days=1)) == years - 1
    assert years_before(as_of, years) == birth

"""SMART v2 scopes narrowed by search parameters: parsing, and what they narrow (pure)."""

import pytest

from consent.context import (
    AccessContext,
    CallerKind,
    TokenCriterion,
    context_from_claims,
    parse_scope,
    query_text,
    token_matches,
)

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LAB = f"patient/Observation.rs?category={CATEGORY}|laboratory"


def _patient(scope: str) -> AccessContext:
    return context_from_claims({"sub": "p", "patient": "gp1-1", "scope": scope})


def test_a_narrowed_scope_is_parsed_into_token_criteria() -> None:
    scope = parse_scope(LAB)
    assert scope is not None
    assert (scope.context, scope.resource_type, scope.permissions) == (
        "patient",
        "Observation",
        frozenset("rs"),
    )
    assert scope.query == (TokenCriterion("category", ((CATEGORY, "laboratory"),)),)


def test_every_form_of_a_token_value_and_several_parameters() -> None:
    scope = parse_scope(
        "user/Condition.rs?category=problem-list-item,http://snomed.info/sct|&clinical-status=|active"
    )
    assert scope is not None
    assert scope.query == (
        TokenCriterion("category", (("http://snomed.info/sct", None), (None, "problem-list-item"))),
        TokenCriterion("clinical-status", (("", "active"),)),
    )
    # Written back as it means: the same scope again.
    assert parse_scope(f"user/Condition.rs?{query_text(scope.query)}") == scope


def test_percent_encoding_is_read_as_the_character() -> None:
    assert parse_scope("user/Observation.rs?category=%7Cvital-signs") == parse_scope(
        "user/Observation.rs?category=|vital-signs"
    )


def test_a_narrowed_scope_keeps_only_its_read_and_search_letters() -> None:
    scope = parse_scope("user/Observation.cruds?category=laboratory")
    assert scope is not None
    assert scope.permissions == frozenset("rs")
    context = context_from_claims(
        {
            "sub": "u1",
            "organization": "Z90001",
            "role": "R8000",
            "scope": "user/Observation.cruds?category=laboratory",
        }
    )
    assert context.allows("Observation", "r")
    assert context.allows("Observation", "s")
    assert not context.allows("Observation", "c")
    assert not context.allows("Observation", "u")


@pytest.mark.parametrize(
    ("value", "system", "code", "expected"),
    [
        ((None, "laboratory"), CATEGORY, "laboratory", True),
        ((None, "laboratory"), None, "laboratory", True),
        ((None, "laboratory"), CATEGORY, "vital-signs", False),
        ((CATEGORY, "laboratory"), CATEGORY, "laboratory", True),
        ((CATEGORY, "laboratory"), "http://other", "laboratory", False),
        ((CATEGORY, "laboratory"), None, "laboratory", False),
        (("", "laboratory"), None, "laboratory", True),
        (("", "laboratory"), CATEGORY, "laboratory", False),
        ((CATEGORY, None), CATEGORY, "anything", True),
        ((CATEGORY, None), "http://other", "anything", False),
    ],
)
def test_token_values_match_as_a_token_search_does(
    value: tuple[str | None, str | None], system: str | None, code: str | None, expected: bool
) -> None:
    assert token_matches(value, system, code) is expected


def test_the_narrowed_types_and_their_queries() -> None:
    context = _patient(f"{LAB} patient/Observation.rs?category=vital-signs patient/Condition.rs")
    assert context.kind is CallerKind.PATIENT
    lab, vitals = (
        (TokenCriterion("category", ((CATEGORY, "laboratory"),)),),
        (TokenCriterion("category", ((None, "vital-signs"),)),),
    )
    ((resource_type, queries),) = context.narrowed_reads()
    assert resource_type == "Observation"
    assert set(queries) == {lab, vitals}
    assert context.readable_types(["Observation", "Condition", "Patient"]) == {
        "Observation",
        "Condition",
    }


@pytest.mark.parametrize(
    ("scopes", "narrowed"),
    [
        # A whole-type scope for reads and searches makes the narrowed one add nothing.
        (f"{LAB} patient/Observation.rs", False),
        (f"{LAB} patient/*.rs", False),
        (f"{LAB} patient/*.read", False),
        # Only one of the two whole: the narrowing holds for both (less, never more).
        (f"{LAB} patient/Observation.r", True),
        (f"{LAB} patient/Observation.s", True),
        (f"{LAB} patient/*.cud", True),
        (LAB, True),
        ("patient/Observation.rs", False),
    ],
)
def test_when_a_type_is_narrowed(scopes: str, narrowed: bool) -> None:
    assert bool(_patient(scopes).narrowed_reads()) is narrowed


def test_scopes_of_another_context_narrow_nothing() -> None:
    # A user's token cannot carry patient/ scopes (refused), and a scope whose context is not
    # the caller's is not theirs: built directly, it neither grants nor narrows.
    context = AccessContext(
        kind=CallerKind.SYSTEM,
        subject="sys",
        scopes=tuple(s for s in (parse_scope(LAB), parse_scope("system/*.rs")) if s),
        client_id="sys",
    )
    assert context.narrowed_reads() == ()
    assert context.allows("Observation", "r")

"""SMART scopes and token claims -> access context (pure)."""

import pytest

from consent.context import (
    CallerKind,
    InvalidClaims,
    Purpose,
    context_from_claims,
    parse_scope,
    parse_scopes,
)


@pytest.mark.parametrize(
    ("text", "context", "resource_type", "permissions"),
    [
        ("user/Observation.rs", "user", "Observation", "rs"),
        ("patient/*.r", "patient", "*", "r"),
        ("system/*.cruds", "system", "*", "cruds"),
        ("user/Patient.read", "user", "Patient", "rs"),  # SMART v1
        ("user/Patient.write", "user", "Patient", "cud"),
        ("system/*.*", "system", "*", "cruds"),
    ],
    ids=["v2", "wildcard-type", "all", "v1-read", "v1-write", "v1-all"],
)
def test_scopes_parse(text: str, context: str, resource_type: str, permissions: str) -> None:
    scope = parse_scope(text)
    assert scope is not None
    assert (scope.context, scope.resource_type, scope.permissions) == (
        context,
        resource_type,
        frozenset(permissions),
    )


@pytest.mark.parametrize(
    "text",
    [
        "openid",
        "fhirUser",
        "launch/patient",
        "user/Observation",
        "user/Observation.rx",
        "user/Observation.sr",  # v2 letters must be in c r u d s order
        "user/Observation.rr",
        "user/*.rs?category=laboratory",  # narrowing a wildcard type: no
        "user/Observation.cud?category=vital-signs",  # a narrowed scope grants no writes
        "user/Observation.rs?",
        "user/Observation.rs?category=",
        "user/Observation.rs?category=a,,b",
        "user/Observation.rs?category=|",
        "user/Observation.rs?category:not=laboratory",  # modifiers: no
        "user/Observation.rs?subject.name=x",  # chains: no
        "user/Observation.rs?code=a\\|b",  # escapes: no
        "user/Observation.rs?category",  # no value
        "user/Observation.rs?category=a%00b",  # control characters
        "admin/*.cruds",
        "user/.rs",
    ],
)
def test_other_and_malformed_scopes_grant_nothing(text: str) -> None:
    assert parse_scope(text) is None


def _user(**claims: object) -> dict[str, object]:
    return {
        "sub": "u1",
        "fhirUser": "Practitioner/u1",
        "organization": "Z90001",
        "role": "R8000",
        "scope": "user/Patient.rs user/Observation.r openid",
        **claims,
    }


def test_a_user_context_and_its_permissions() -> None:
    context = context_from_claims(_user())
    assert context.kind is CallerKind.USER
    assert context.purpose is Purpose.TREAT
    assert (context.user, context.organisation, context.role) == (
        "Practitioner/u1",
        "Z90001",
        "R8000",
    )
    assert context.allows("Patient", "r")
    assert context.allows("Patient", "s")
    assert context.allows("Observation", "r")
    assert not context.allows("Observation", "s")
    assert not context.allows("Patient", "u")
    assert not context.allows("Condition", "r")
    assert not context.allows("*", "r")  # no wildcard scope
    assert context.readable_types(["Patient", "Condition", "Observation"]) == {
        "Patient",
        "Observation",
    }


def test_a_scope_of_another_context_grants_nothing_to_this_caller() -> None:
    context = context_from_claims({"sub": "sys", "scope": "system/*.cruds"})
    assert context.kind is CallerKind.SYSTEM
    assert context.client_id == "sys"
    assert context.allows("Observation", "d")
    patient = context_from_claims({"sub": "p", "patient": "gp1-1", "scope": "patient/*.rs"})
    assert patient.kind is CallerKind.PATIENT
    assert patient.purpose is Purpose.PATRQT
    assert patient.allows("Observation", "r")
    assert not patient.allows("Observation", "c")


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"scope": "user/*.rs"}, "subject"),
        (_user(organization=None), "organisation"),
        (_user(role=None), "role"),
        (_user(purpose_of_use="MARKETING"), "Unknown purpose"),
        (_user(purpose_of_use="PATRQT"), "patient's own purpose"),
        (_user(scope="user/*.rs system/*.rs"), "not a mixture"),
        (_user(scope=["user/*.rs"]), "space-separated"),
        (_user(role=""), "non-empty"),
        ({"sub": "p", "scope": "patient/*.rs"}, "launch context"),
        ({"sub": "s", "scope": "system/*.rs", "purpose_of_use": "BTG"}, "system client"),
    ],
    ids=[
        "no-sub",
        "no-org",
        "no-role",
        "unknown-purpose",
        "staff-as-patient",
        "mixed-scopes",
        "scope-not-string",
        "empty-role",
        "patient-no-context",
        "system-break-glass",
    ],
)
def test_claims_that_describe_no_servable_caller_are_refused(
    claims: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidClaims, match=message):
        context_from_claims(claims)


def test_break_glass_and_case_finding_are_purposes_of_use() -> None:
    assert context_from_claims(_user(purpose_of_use="BTG")).purpose is Purpose.BTG
    assert context_from_claims(_user(purpose_of_use="CASEFIND")).purpose is Purpose.CASEFIND


def test_scopes_are_parsed_from_a_list_too() -> None:
    assert len(parse_scopes(["user/*.rs", "openid"])) == 1

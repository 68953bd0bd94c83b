"""The development issuer's grant: what was asked for and held, narrowed scopes included."""

import pytest

from fhir_gateway.auth.authorize import grant_scope

LAB = "patient/Observation.rs?category=laboratory"


@pytest.mark.parametrize(
    ("asked", "held", "granted"),
    [
        ("patient/*.rs", "patient/*.rs", "patient/*.rs"),
        # A narrowed scope asked of a wider one held: the narrowed one.
        (f"{LAB} patient/Condition.rs", "patient/*.rs", f"{LAB} patient/Condition.rs"),
        # A wider scope asked of a narrowed one held: the narrowed one, its type.
        ("patient/*.rs", LAB, LAB),
        # Both narrowed alike: that scope; differently: nothing (not one query).
        (LAB, LAB, LAB),
        (LAB, "patient/Observation.rs?category=vital-signs", ""),
        # Another context, or a narrowed scope's write letters: nothing more.
        (LAB, "user/*.rs", ""),
        ("patient/Observation.cruds?category=laboratory", "patient/*.cruds", LAB),
    ],
)
def test_narrowed_scopes_are_granted_as_the_narrower_of_the_two(
    asked: str, held: str, granted: str
) -> None:
    assert grant_scope(asked, held) == granted

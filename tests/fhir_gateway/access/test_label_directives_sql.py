"""Directives narrowed to a security label, by hand, on both databases.

Each case states what the caller must see (``decide``) and checks that the compiled
predicate, in every form the request paths run, returns exactly that. The random worlds
(``worlds.py``) generate label-narrowed directives too; these pin the documented ordering:
a label is one more thing a directive names (label alone 1, with a source or a recipient 2,
with both 3), deny wins at equal level, a narrowed permit is explicit consent for that
label's data only, and break-glass lifts label objections as it lifts any other.
"""

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from consent.visibility import Grant
from tests.fhir_gateway.access.test_visibility_sql import (
    AGREEMENT,
    C1,
    COUNCIL,
    GP,
    GP_DOC,
    HOSP_BTG,
    HOSPITAL,
    MANAGED,
    PATIENTS,
    REGISTERED,
    SW,
    Case,
    _deny,
    _permit,
)
from tests.fhir_gateway.access.worlds import (
    ACT_CODE,
    CONFIDENTIALITY,
    NOW,
    Resource,
    World,
    compare,
    disagreements,
)

MH = Resource(
    "Condition",
    "hv-mh",
    HOSPITAL,
    "hv-h",
    frozenset({"mental_health"}),
    ((CONFIDENTIALITY, "R"), (ACT_CODE, "PSY")),
)
VERY = Resource("Condition", "hv-v", HOSPITAL, "hv-h", security=((CONFIDENTIALITY, "V"),))
RESTRICTED = Resource("Condition", "hv-r", HOSPITAL, "hv-h", security=((CONFIDENTIALITY, "R"),))
OTHER_CODE_R = Resource("Condition", "hv-o", HOSPITAL, "hv-h", security=((ACT_CODE, "RR"),))
GP_RECORDS = [C1, MH, VERY]
# The GP's records, for a hospital doctor breaking glass.
GP_PLAIN = Resource("Condition", "hv-g1", GP, "hv-gp")
GP_MH = Resource("Condition", "hv-gmh", GP, "hv-gp", frozenset({"mental_health"}))
GP_SEALED = Resource("Condition", "hv-s", GP, "hv-gp")

LABEL_CASES = [
    pytest.param(
        Case(
            GP_DOC,
            GP_RECORDS,
            {"Condition/hv-c1", "Condition/hv-v"},
            [REGISTERED],
            [_deny(1, label="mental_health")],
        ),
        id="label-only-objection-withholds-that-label-only",
    ),
    pytest.param(
        Case(
            GP_DOC,
            GP_RECORDS,
            {"Condition/hv-c1", "Condition/hv-mh", "Condition/hv-v"},
            [REGISTERED],
            [_deny(1, label="hiv")],
        ),
        id="objection-to-a-label-the-data-does-not-carry",
    ),
    pytest.param(
        Case(
            GP_DOC,
            GP_RECORDS,
            {"Condition/hv-mh"},
            [REGISTERED],
            [_deny(0), _permit(2, label="mental_health", recipient_organisation=GP)],
        ),
        id="label-and-recipient-permit-beats-blanket-objection",
    ),
    pytest.param(
        Case(
            GP_DOC,
            GP_RECORDS,
            {"Condition/hv-c1", "Condition/hv-v"},
            [REGISTERED],
            [
                _permit(1, recipient_organisation=GP),
                _deny(2, label="mental_health", recipient_organisation=GP),
            ],
        ),
        id="label-and-recipient-objection-beats-recipient-permit",
    ),
    pytest.param(
        Case(
            GP_DOC,
            GP_RECORDS,
            {"Condition/hv-c1", "Condition/hv-v"},
            [REGISTERED],
            [_permit(1, recipient_organisation=GP), _deny(1, label="mental_health")],
        ),
        id="equal-level-deny-wins",
    ),
    pytest.param(
        Case(
            GP_DOC,
            GP_RECORDS,
            {"Condition/hv-c1", "Condition/hv-v"},
            [REGISTERED],
            [
                _permit(3, item="Condition/hv-mh"),
                _deny(
                    3,
                    label="mental_health",
                    source_organisation=HOSPITAL,
                    recipient_organisation=GP,
                ),
            ],
        ),
        id="item-permit-does-not-lift-a-level-3-label-objection",
    ),
    pytest.param(
        Case(GP_DOC, GP_RECORDS, {"Condition/hv-c1"}, [REGISTERED], [_deny(1, label="R")]),
        id="confidentiality-R-covers-R-and-V",
    ),
    pytest.param(
        Case(
            GP_DOC,
            [*GP_RECORDS, OTHER_CODE_R],
            {"Condition/hv-c1", "Condition/hv-mh", "Condition/hv-o"},
            [REGISTERED],
            [_deny(1, label="V")],
        ),
        id="confidentiality-V-covers-V-only-and-codes-match-whole",
    ),
    pytest.param(
        # Social care sees health data only with explicit consent (the agreement says
        # explicit): a permit narrowed to restricted data is consent for that data only.
        Case(
            SW,
            [C1, RESTRICTED],
            {"Condition/hv-r"},
            [MANAGED],
            [_permit(2, label="R", recipient_organisation=COUNCIL)],
        ),
        id="narrowed-permit-is-explicit-consent-for-that-label-only",
    ),
    pytest.param(
        Case(
            HOSP_BTG,
            [GP_PLAIN, GP_MH, GP_SEALED],
            {"Condition/hv-g1", "Condition/hv-gmh"},
            [],
            [_deny(1, label="mental_health"), _deny(3, item="Condition/hv-s")],
            [Grant("Practitioner/u2", "hv-gp", NOW + timedelta(hours=1))],
        ),
        id="break-glass-lifts-a-label-objection-not-a-sealed-item",
    ),
]


@pytest.mark.parametrize("case", LABEL_CASES)
def test_label_narrowed_directives(session: Session, case: Case) -> None:
    world = World(
        agreement=AGREEMENT,
        patients=PATIENTS,
        resources=case.resources,
        callers=[case.caller],
        relationships=case.relationships,
        directives=case.directives,
        grants=case.grants,
    )
    (answer,) = compare(session, world, per_person=True)
    assert answer.reference == case.visible
    assert disagreements([answer], world) == []


def test_a_label_is_matched_whole_not_as_a_pattern(session: Session) -> None:
    # 'mental_health' stored; a directive naming 'mental%health' or 'mental' must not
    # match it (the SQL compares positions, never LIKE patterns).
    world = World(
        agreement=AGREEMENT,
        patients=PATIENTS,
        resources=[MH],
        callers=[GP_DOC],
        relationships=[REGISTERED],
        directives=[
            _deny(1, label="mental%health"),
            _deny(1, label="mental"),
            _deny(1, label="mental_healt_"),
        ],
    )
    (answer,) = compare(session, world, per_person=True)
    assert answer.reference == {"Condition/hv-mh"}
    assert disagreements([answer], world) == []

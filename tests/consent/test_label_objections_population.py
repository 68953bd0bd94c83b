"""Population work (case-finding) and label-narrowed objections, on both databases.

Decided for now (docs/consent.md, for the information governance lead to confirm or
change): a person with any objection in force is left out of population work, a
label-narrowed one included ("not my mental health detail" leaves the person out of
case-finding altogether, rather than scoring them without that detail). A sealed item is
not an objection, and neither is a permit.
"""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session

from fhir_gateway.access.models import ConsentDirectiveRow
from fhir_gateway.identity.models import IdentityRecord
from fhir_gateway.record.population import persons_with_objections
from fhir_gateway.store.models import ResourceRow

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("directive", "left_out"),
    [
        pytest.param({"decision": "deny", "level": 1, "label": "mental_health"}, True, id="label"),
        pytest.param({"decision": "deny", "level": 1, "label": "R"}, True, id="confidentiality"),
        pytest.param(
            {"decision": "deny", "level": 2, "label": "hiv", "recipient_organisation": "Z1"},
            True,
            id="label-and-recipient",
        ),
        pytest.param({"decision": "deny", "level": 0}, True, id="blanket"),
        pytest.param({"decision": "permit", "level": 1, "label": "hiv"}, False, id="permit"),
        pytest.param(
            {"decision": "deny", "level": 3, "item": "Condition/hv-x"}, False, id="sealed-item"
        ),
        pytest.param(
            {"decision": "deny", "level": 1, "label": "hiv", "ends_at": NOW - timedelta(days=1)},
            False,
            id="ended",
        ),
    ],
)
def test_who_population_work_leaves_out(
    session: Session, directive: dict[str, object], left_out: bool
) -> None:
    consent_pk = session.scalar(
        insert(ResourceRow)
        .values(
            resource_type="Consent",
            resource_id="hv-pop-consent",
            version_id=1,
            last_updated=NOW,
            deleted=False,
            patient_id="hv-pop-pt",
            body="{}",
        )
        .returning(ResourceRow.pk)
    )
    session.execute(
        insert(IdentityRecord).values(
            patient_id="hv-pop-pt", person_id="hv-pop-person", features="{}", updated_at=NOW
        )
    )
    session.execute(
        insert(ConsentDirectiveRow).values(
            resource_pk=consent_pk, patient_id="hv-pop-pt", **directive
        )
    )
    found = persons_with_objections(session, ["hv-pop-person"], now=NOW)
    assert (found == {"hv-pop-person"}) is left_out

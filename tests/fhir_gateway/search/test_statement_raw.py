"""A search's statement on PostgreSQL is compiled once per shape and run raw
(``store.raw.prepare``); a part whose SQL would depend on its values (an expanding ``IN``)
sends the search down the slower path in a session. Derived parameters must not do that."""

import pytest
from sqlalchemy import true

from fhir_gateway.search import statement
from fhir_gateway.search.params import parse_search
from fhir_gateway.store.raw import prepare


@pytest.mark.parametrize(
    "query",
    [
        [("patient", "p1"), ("_sort", "-date")],
        [("patient:missing", "true")],
        [("patient.family", "okafor")],
        [("combo-code", "http://loinc.org|8462-4"), ("_total", "accurate")],
        [("combo-value-quantity", "gt120"), ("_sort", "combo-value-quantity")],
        [("subject", "Patient/p1"), ("code", "85354-9")],
    ],
)
def test_a_search_by_derived_parameters_runs_as_one_prepared_statement(
    query: list[tuple[str, str]],
) -> None:
    request = parse_search("Observation", query, strict=True, default_count=10, max_count=50)
    parts = statement.page_select(
        request,
        base_url="http://test/fhir",
        visible_on=lambda _row: true(),
        visible=true(),
        withholding=None,
    )
    given = {"limit": 11, "count": 10}
    assert prepare(parts.page, given) is not None
    if parts.total is not None:
        assert prepare(parts.total, given) is not None

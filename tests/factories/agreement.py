"""Sharing agreements for tests: the demo's, plus a clause for the test system client."""

import copy
import json
from pathlib import Path
from typing import Any

DEMO = Path(__file__).resolve().parents[2] / "carejoin" / "data" / "demo_agreement.json"


def demo_agreement() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DEMO.read_text())
    return document


def test_agreement(**changes: Any) -> dict[str, Any]:
    """The demo agreement, with the test suite's system client allowed to read everything
    (consent itself is tested with callers the agreement restricts) and ``changes`` applied."""
    document = copy.deepcopy(demo_agreement())
    document["version"] = "test-1"
    document["system_clients"].append(
        {"client_id": "test-system", "categories": ["*"], "from": ["*"], "match": True}
    )
    document.update(changes)
    return document


# A factory, not a test: pytest must not collect it where a test module imports it.
test_agreement.__test__ = False  # type: ignore[attr-defined]

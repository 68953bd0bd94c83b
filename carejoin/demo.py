"""The demo locality's source systems: every GP practice, the hospital trust and the council
send their records, each as a registered source system (``docs/feeds.md``).

The hospital's PAS (persona ``hospital-pas``) sends as the hospital; the partnership's
integration engine (persona ``integration``) may send for every source, naming which in
``meta.source``. ``carejoin demo`` registers these unless source systems are registered
already; ``carejoin sources load`` takes a file of the same shape.
"""

from typing import Any

from carejoin.synthetic import HOSPITAL, ORGANISATIONS, Organisation

INTEGRATION_ENGINE = "integration"
HOSPITAL_PAS = "hospital-pas"
KINDS = {"gp": "gp", "hospital": "hospital", "council": "social-care"}


def _system_id(org: Organisation) -> str:
    return f"{KINDS[org.kind]}-{org.ods.lower()}"


def source_systems() -> dict[str, dict[str, Any]]:
    """The demo's registry document: source systems by id."""
    systems: dict[str, dict[str, Any]] = {}
    for org in ORGANISATIONS:
        clients = [INTEGRATION_ENGINE]
        if org is HOSPITAL:
            clients.insert(0, HOSPITAL_PAS)
        systems[_system_id(org)] = {
            "ods": org.ods,
            "kind": KINDS[org.kind],
            "name": org.name,
            "clients": clients,
        }
    return systems

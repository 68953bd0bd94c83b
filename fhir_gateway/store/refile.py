"""Correcting a record filed against the wrong person: the wrong copy is marked
entered-in-error (never deleted: whoever saw it can still be shown what they saw), a copy is
filed against the right patient, and a Provenance records who did it, when and why.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.orm import Session

from fhir_gateway.outcomes import Invalid
from fhir_gateway.store import service
from fhir_gateway.validation import agent_who

# How each type says "entered in error".
_STATUS = {
    "Observation",
    "Encounter",
    "MedicationStatement",
    "MedicationRequest",
    "Procedure",
    "DiagnosticReport",
    "Immunization",
    "DocumentReference",
    "CarePlan",
    "Task",
    "ServiceRequest",
    "Flag",
    "EpisodeOfCare",
    "QuestionnaireResponse",
    "Communication",
    "CareTeam",
    "Consent",
}
_VERIFICATION = {
    "Condition": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
    "AllergyIntolerance": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
}
_PATIENT_FIELDS = ("subject", "patient", "for", "beneficiary")


def mark_entered_in_error(resource: dict[str, Any]) -> dict[str, Any]:
    kind = str(resource["resourceType"])
    marked = dict(resource)
    if kind in _STATUS:
        marked["status"] = "entered-in-error"
    elif kind in _VERIFICATION:
        marked["verificationStatus"] = {
            "coding": [{"system": _VERIFICATION[kind], "code": "entered-in-error"}]
        }
        marked.pop("clinicalStatus", None)  # R4: no clinical status when entered in error
    elif kind == "Goal":
        marked["lifecycleStatus"] = "entered-in-error"
    else:
        raise Invalid(f"{kind} cannot be marked entered-in-error; it cannot be re-filed")
    return marked


def refile(
    session: Session,
    resource_type: str,
    resource_id: str,
    *,
    patient_id: str,
    steward: str,
    reason: str,
    now: datetime,
) -> tuple[str, str]:
    """Re-file ``resource_type/resource_id`` against ``patient_id``; returns the new copy's id
    and the Provenance's id."""
    current = service.read(session, resource_type, resource_id)
    target = service.read(session, "Patient", patient_id)
    assert current.body is not None
    body: dict[str, Any] = orjson.loads(current.body)
    owner = next(
        (
            field
            for field in _PATIENT_FIELDS
            if isinstance(body.get(field), Mapping)
            and str(body[field].get("reference", "")).startswith("Patient/")
        ),
        None,
    )
    if owner is None:
        raise Invalid(f"{resource_type}/{resource_id} does not refer to a patient to correct")
    if body[owner]["reference"] == f"Patient/{target.resource_id}":
        raise Invalid(
            f"{resource_type}/{resource_id} is already filed against Patient/{patient_id}"
        )
    wrong = mark_entered_in_error({k: v for k, v in body.items() if k != "meta"})
    wrong["meta"] = {
        k: v for k, v in (body.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")
    }
    service.update(session, resource_type, resource_id, wrong, now=now)

    copy = {k: v for k, v in body.items() if k not in ("id", "meta")}
    copy["meta"] = wrong["meta"]
    copy[owner] = dict(body[owner], reference=f"Patient/{target.resource_id}")
    created = service.create(session, copy, now=now)
    provenance = {
        "resourceType": "Provenance",
        "target": [
            {"reference": f"{resource_type}/{created.stored.resource_id}"},
            {"reference": f"{resource_type}/{resource_id}/_history/{current.version_id + 1}"},
        ],
        "recorded": service.format_instant(now),
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "UPDATE",
                }
            ],
            "text": "re-filed against the right patient",
        },
        "reason": [{"text": reason}],
        "agent": [{"who": agent_who(steward)}],
        "entity": [
            {
                "role": "revision",
                "what": {
                    "reference": f"{resource_type}/{resource_id}/_history/{current.version_id}"
                },
            }
        ],
    }
    recorded = service.create(session, provenance, now=now)
    return created.stored.resource_id, recorded.stored.resource_id


REFILABLE_TYPES = frozenset({*_STATUS, *_VERIFICATION, "Goal"})

__all__ = ["REFILABLE_TYPES", "mark_entered_in_error", "refile"]

"""The shared CarePlan and its Provenance (pure)."""

from collections.abc import Sequence
from typing import Any

REVIEW_DATE = "https://fhir.carejoin.example/StructureDefinition/review-date"
SHARED_PLAN = ("https://fhir.carejoin.example/CodeSystem/care-plan-type", "shared-care-plan")
CONTRIBUTION_TYPES = frozenset({"Goal", "Task", "ServiceRequest"})
PROVENANCE_ACTIVITY = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"


def care_plan_resource(
    plan_id: str,
    *,
    patient_id: str,
    team_id: str,
    episode_id: str,
    title: str,
    description: str | None,
    status: str,
    created: str,
    review_date: str | None,
    activities: Sequence[str],
) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": plan_id,
        "status": status,
        "intent": "plan",
        "category": [
            {
                "coding": [
                    {
                        "system": SHARED_PLAN[0],
                        "code": SHARED_PLAN[1],
                        "display": "Shared care plan",
                    }
                ]
            }
        ],
        "title": title,
        "subject": {"reference": f"Patient/{patient_id}"},
        "created": created,
        "author": {"reference": f"Organization/{team_id}"},
        "supportingInfo": [{"reference": f"EpisodeOfCare/{episode_id}"}],
    }
    if description:
        plan["description"] = description
    if review_date:
        plan["extension"] = [{"url": REVIEW_DATE, "valueDate": review_date}]
    # Goals are the plan's goals; Tasks and ServiceRequests its activities (R4 CarePlan).
    goals = [a for a in activities if a.startswith("Goal/")]
    if goals:
        plan["goal"] = [{"reference": g} for g in goals]
    others = [a for a in activities if not a.startswith("Goal/")]
    if others:
        plan["activity"] = [{"reference": {"reference": a}} for a in others]
    return plan


def activities_of(plan: dict[str, Any]) -> list[str]:
    found = [str(g.get("reference")) for g in plan.get("goal") or () if g.get("reference")]
    for activity in plan.get("activity") or ():
        reference = (activity.get("reference") or {}).get("reference")
        if reference:
            found.append(str(reference))
    return found


def provenance_resource(
    provenance_id: str,
    *,
    target: str,
    recorded: str,
    author: str | None,
    organisation: str | None,
    activity: str,
    note: str | None = None,
) -> dict[str, Any]:
    """Who made this version of the plan (``target`` is the versioned reference)."""
    agent: dict[str, Any] = {
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                    "code": "author",
                }
            ]
        },
        "who": {"reference": author} if author else {"display": "carejoin"},
    }
    if organisation:
        agent["onBehalfOf"] = {
            "identifier": {
                "system": "https://fhir.nhs.uk/Id/ods-organization-code",
                "value": organisation,
            }
        }
    provenance: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": provenance_id,
        "target": [{"reference": target}],
        "recorded": recorded,
        "activity": {"coding": [{"system": PROVENANCE_ACTIVITY, "code": activity}]},
        "agent": [agent],
    }
    if note:
        provenance["reason"] = [{"text": note}]
    return provenance

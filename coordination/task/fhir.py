"""A coordination Task as FHIR, and back (pure)."""

from collections.abc import Mapping
from datetime import date
from typing import Any

TASK_SYSTEM = "https://fhir.carejoin.example/CodeSystem/coordination-task"
TRIGGER_SYSTEM = "https://fhir.carejoin.example/Id/coordination-trigger"
KINDS = {
    "admission": "Admitted to hospital: contact the ward and the family",
    "discharge-follow-up": "Discharged from hospital: follow up within two working days",
    "handover": "Handover from the previous coordinator",
    "review": "Review the care plan",
    "notification": "Something changed in the person's record",
    "general": "Task",
}
OPEN = frozenset({"draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold"})
# The workflow of a coordination task (FHIR Task.status): what may follow what.
TRANSITIONS: Mapping[str, frozenset[str]] = {
    "requested": frozenset({"accepted", "rejected", "cancelled", "in-progress", "completed"}),
    "accepted": frozenset({"in-progress", "cancelled", "completed", "on-hold"}),
    "in-progress": frozenset({"completed", "cancelled", "on-hold", "failed"}),
    "on-hold": frozenset({"in-progress", "cancelled"}),
    "rejected": frozenset(),
    "cancelled": frozenset(),
    "completed": frozenset(),
    "failed": frozenset(),
}


def task_resource(
    task_id: str,
    *,
    kind: str,
    patient_id: str,
    owner: str | None,
    team_id: str,
    due: date | None,
    authored: str,
    description: str | None = None,
    focus: str | None = None,
    trigger: str | None = None,
    status: str = "requested",
) -> dict[str, Any]:
    """``owner``: a Practitioner id, or None for the team's unassigned pool (the team owns it)."""
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id,
        "status": status,
        "intent": "order",
        "priority": "urgent" if kind in {"admission", "discharge-follow-up"} else "routine",
        "code": {"coding": [{"system": TASK_SYSTEM, "code": kind, "display": KINDS[kind]}]},
        "description": description or KINDS[kind],
        "for": {"reference": f"Patient/{patient_id}"},
        "authoredOn": authored,
        "lastModified": authored,
        "requester": {"reference": f"Organization/{team_id}"},
        "owner": {"reference": f"Practitioner/{owner}" if owner else f"Organization/{team_id}"},
    }
    if focus:
        task["focus"] = {"reference": focus}
    if trigger:
        task["identifier"] = [{"system": TRIGGER_SYSTEM, "value": trigger}]
    if due is not None:
        task["restriction"] = {"period": {"end": due.isoformat()}}
    return task


def kind_of(task: Mapping[str, Any]) -> str | None:
    for coding in (task.get("code") or {}).get("coding") or ():
        if isinstance(coding, Mapping) and coding.get("system") == TASK_SYSTEM:
            code = coding.get("code")
            return str(code) if code in KINDS else None
    return None


def owner_of(task: Mapping[str, Any]) -> str | None:
    reference = str((task.get("owner") or {}).get("reference") or "")
    return (
        reference.removeprefix("Practitioner/") if reference.startswith("Practitioner/") else None
    )


def due_of(task: Mapping[str, Any]) -> date | None:
    end = ((task.get("restriction") or {}).get("period") or {}).get("end")
    try:
        return date.fromisoformat(str(end)[:10]) if end else None
    except ValueError:
        return None


def trigger_of(task: Mapping[str, Any]) -> str | None:
    for identifier in task.get("identifier") or ():
        if isinstance(identifier, Mapping) and identifier.get("system") == TRIGGER_SYSTEM:
            return str(identifier.get("value") or "") or None
    return None

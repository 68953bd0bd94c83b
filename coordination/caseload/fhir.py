"""A coordination episode as FHIR (pure): an EpisodeOfCare of type care coordination, managed
by the team's host, with the coordinator as ``careManager`` (which is what gives the
coordinator a legitimate relationship under the consent layer)."""

from typing import Any

EPISODE_SYSTEM = "https://fhir.carejoin.example/CodeSystem/episode-type"
TEAM_EXTENSION = "https://fhir.carejoin.example/StructureDefinition/coordinating-team"


def episode_resource(
    case_id: str,
    *,
    patient_id: str,
    team_id: str,
    host: str,
    coordinator: str | None,
    status: str,
    start: str,
    end: str | None = None,
    referral: str | None = None,
) -> dict[str, Any]:
    """``status``: FHIR EpisodeOfCare status (waitlist while in the team's queue, active,
    finished)."""
    episode: dict[str, Any] = {
        "resourceType": "EpisodeOfCare",
        "id": case_id,
        "status": status,
        "type": [
            {
                "coding": [
                    {
                        "system": EPISODE_SYSTEM,
                        "code": "care-coordination",
                        "display": "Care coordination by an integrated team",
                    }
                ]
            }
        ],
        "patient": {"reference": f"Patient/{patient_id}"},
        "managingOrganization": {
            "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": host}
        },
        "extension": [
            {"url": TEAM_EXTENSION, "valueReference": {"reference": f"Organization/{team_id}"}}
        ],
        "period": {"start": start, **({"end": end} if end else {})},
    }
    if coordinator:
        episode["careManager"] = {"reference": f"Practitioner/{coordinator}"}
    if referral:
        episode["referralRequest"] = [{"reference": referral}]
    return episode

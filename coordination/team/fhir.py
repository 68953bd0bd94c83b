"""A team as FHIR: an Organization (type ``team``, part of its host, with its aligned
practices) and a PractitionerRole per member (discipline, hours, caseload capacity)."""

from typing import Any

from coordination.team.schemas import DISCIPLINES, TeamIn
from fhir_gateway.api import organization

EXTENSION = "https://fhir.carejoin.example/StructureDefinition/"
ALIGNED_PRACTICE = EXTENSION + "aligned-practice"
CASELOAD_CAPACITY = EXTENSION + "caseload-capacity"
HOURS_PER_WEEK = EXTENSION + "hours-per-week"
DISCIPLINE_SYSTEM = "https://fhir.carejoin.example/CodeSystem/coordination-discipline"
ROLE_SYSTEM = "https://fhir.carejoin.example/CodeSystem/coordination-role"
TEAM_ID_SYSTEM = "https://fhir.carejoin.example/Id/team"
ROLES = {"coordinator": "Care coordinator", "lead": "Team lead"}


def role_id(team_id: str, practitioner: str) -> str:
    return f"{team_id}.{practitioner}"[:64]


def team_organization(team_id: str, team: TeamIn) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": team_id,
        "identifier": [{"system": TEAM_ID_SYSTEM, "value": team_id}],
        "active": True,
        "type": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                        "code": "team",
                        "display": "Organizational team",
                    }
                ]
            }
        ],
        "name": team.name,
        "partOf": organization(team.host),
        "extension": [
            {"url": ALIGNED_PRACTICE, "valueReference": organization(p)} for p in team.practices
        ],
    }


def member_role(
    team_id: str, practitioner: str, role: str, discipline: str, hours: float, capacity: int
) -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole",
        "id": role_id(team_id, practitioner),
        "active": True,
        "practitioner": {"reference": f"Practitioner/{practitioner}"},
        "organization": {"reference": f"Organization/{team_id}"},
        "code": [{"coding": [{"system": ROLE_SYSTEM, "code": role, "display": ROLES[role]}]}],
        "specialty": [
            {
                "coding": [
                    {
                        "system": DISCIPLINE_SYSTEM,
                        "code": discipline,
                        "display": DISCIPLINES[discipline],
                    }
                ]
            }
        ],
        "extension": [
            {"url": CASELOAD_CAPACITY, "valueInteger": capacity},
            {"url": HOURS_PER_WEEK, "valueDecimal": hours},
        ],
    }

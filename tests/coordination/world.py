"""A small synthetic world for case-finding: people registered at the team's practices, with
hospital diagnoses, admissions and council services, dated relative to today."""

from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.coordination.conftest import write
from tests.factories import fhir

ICD10 = "http://hl7.org/fhir/sid/icd-10"
ADMISSION_METHOD = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-AdmissionMethod"
METHOD_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-AdmissionMethodEngland"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def years_ago(years: int, days: int = 0) -> str:
    today = date.today()
    return (today.replace(year=today.year - years) - timedelta(days=days)).isoformat()


def days_ago(days: int) -> str:
    return (date.today() - timedelta(days=days)).isoformat()


def registered(
    client: TestClient, *, practice: str, nhs: str, born: str, family: str, given: str = "Iris"
) -> str:
    gp = {"identifier": {"system": ODS, "value": practice}}
    return write(
        client,
        fhir.patient(
            family=family, given=given, birth_date=born, nhs_number=nhs, generalPractitioner=[gp]
        ),
        practice,
    )


def hospital_patient(
    client: TestClient, *, nhs: str, born: str, family: str, given: str = "Iris"
) -> str:
    return write(
        client, fhir.patient(family=family, given=given, birth_date=born, nhs_number=nhs), "Z9H"
    )


def diagnosis(client: TestClient, patient: str, code: str, when: str, ods: str = "Z9H") -> str:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "code": {"coding": [{"system": ICD10, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "recordedDate": when,
    }
    return write(client, resource, ods)


def admission(
    client: TestClient,
    patient: str,
    *,
    method: str,
    start: str,
    days: int,
    status: str = "finished",
) -> str:
    begun = datetime.fromisoformat(start).replace(tzinfo=UTC, hour=14)
    period: dict[str, str] = {"start": begun.isoformat()}
    if status == "finished":
        period["end"] = (begun + timedelta(days=days)).isoformat()
    resource = {
        "resourceType": "Encounter",
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "extension": [
            {
                "url": ADMISSION_METHOD,
                "valueCodeableConcept": {"coding": [{"system": METHOD_SYSTEM, "code": method}]},
            }
        ],
        "subject": {"reference": f"Patient/{patient}"},
        "period": period,
    }
    return write(client, resource, "Z9H")

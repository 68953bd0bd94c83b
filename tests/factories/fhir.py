"""Valid synthetic FHIR R4 resources (as JSON dicts) with keyword overrides.

All people here are synthetic; NHS numbers come from the 999 range reserved for testing.
"""

from typing import Any

NHS = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"


def patient(
    *,
    id: str | None = None,
    family: str = "Okafor",
    given: str = "Adaeze",
    birth_date: str = "1941-03-12",
    gender: str = "female",
    nhs_number: str | None = "9990001234",
    **extra: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": family, "given": [given]}],
        "gender": gender,
        "birthDate": birth_date,
    }
    if id is not None:
        data["id"] = id
    if nhs_number is not None:
        data["identifier"] = [{"system": NHS, "value": nhs_number}]
    data.update(extra)
    return data


def observation(
    *,
    patient_id: str,
    code: str = "29463-7",
    system: str = LOINC,
    value: Any = 72.5,
    unit: str = "kg",
    effective: str = "2025-06-01T09:30:00Z",
    id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": effective,
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }
    if id is not None:
        data["id"] = id
    data.update(extra)
    return data


def condition(
    *, patient_id: str, code: str = "38341003", onset: str = "2019-04-02", **extra: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "onsetDateTime": onset,
    }
    data.update(extra)
    return data


def encounter(*, patient_id: str, diagnoses: tuple[str, ...] = ()) -> dict[str, Any]:
    """A finished outpatient Encounter naming these Condition ids as its diagnoses."""
    data: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    if diagnoses:
        data["diagnosis"] = [{"condition": {"reference": f"Condition/{c}"}} for c in diagnoses]
    return data


def care_team(*, patient_id: str, member: str) -> dict[str, Any]:
    """An active CareTeam of the person with one member (``Practitioner/...``)."""
    return {
        "resourceType": "CareTeam",
        "status": "active",
        "subject": {"reference": f"Patient/{patient_id}"},
        "participant": [{"member": {"reference": member}}],
    }


def privacy_consent(
    patient_id: str, provision: dict[str, Any], *, status: str = "active", **extra: Any
) -> dict[str, Any]:
    """A person's privacy choice as FHIR R4 records it (scope patient-privacy, LOINC
    59284-0): ``provision`` says deny or permit, to whom, of what; ``extra`` adds elements
    (``id``, ``meta``, ``policyRule``)."""
    return {
        "resourceType": "Consent",
        **extra,
        "status": status,
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "provision": provision,
    }


def transaction(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post_entry(
    resource: dict[str, Any], full_url: str | None = None, **request: Any
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def put_entry(resource: dict[str, Any], **request: Any) -> dict[str, Any]:
    return {
        "resource": resource,
        "request": {
            "method": "PUT",
            "url": f"{resource['resourceType']}/{resource['id']}",
            **request,
        },
    }

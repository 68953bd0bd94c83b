"""From stored resources to the plain facts the scoring rules read (pure).

What counts, and from whom (the agreement says which party is which kind):
- diagnoses: every coding of a Condition in ICD-10 or SNOMED CT, from any source (HFRS
  counts the hospital's alone); refuted and entered-in-error Conditions are left out;
- admissions and A&E attendances: hospital Encounters (class IMP/ACUTE/NONAC, or EMER);
  emergency or not is told by the admission method, never by the class; cancelled and
  entered-in-error encounters are left out;
- social care services: the council's active or finished ServiceRequests and
  EpisodeOfCares, except the general "involvement" episode that only says the council
  knows the person.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from coordination.alert.rules import parse_instant
from coordination.case_finding.rules import (
    Admission,
    Attendance,
    Diagnosis,
    Fact,
    PersonRecord,
    Service,
    admission_is_emergency,
)
from fhir_gateway.api import SourceRow

ICD10_SYSTEMS = frozenset(
    {
        "http://hl7.org/fhir/sid/icd-10",
        "http://hl7.org/fhir/sid/icd-10-uk",
        "https://fhir.hl7.org.uk/Id/icd10",
    }
)
SNOMED = "http://snomed.info/sct"
ADMISSION_METHOD_EXTENSION = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-AdmissionMethod"
)
INPATIENT_CLASSES = frozenset({"IMP", "ACUTE", "NONAC"})
# Episodes and requests that are not social care services: the council's general
# "involvement" episode, and coordination's own episodes and referrals.
NOT_SERVICES = frozenset(
    {
        ("https://fhir.carejoin.example/CodeSystem/asc-service", "asc"),
        ("https://fhir.carejoin.example/CodeSystem/episode-type", "care-coordination"),
    }
)
TYPES = ("Patient", "Condition", "Encounter", "EpisodeOfCare", "ServiceRequest")


@dataclass(frozen=True, slots=True)
class Kinds:
    """Which contributing organisations are hospitals and which social care."""

    hospitals: frozenset[str]
    social_care: frozenset[str]


@dataclass(frozen=True, slots=True)
class Person:
    record: PersonRecord
    name: str | None


def _date(value: object) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _labels(row: SourceRow) -> frozenset[str]:
    return frozenset((row.sensitivity or "").split())


def _codings(concept: object) -> list[Mapping[str, Any]]:
    if not isinstance(concept, Mapping):
        return []
    return [c for c in concept.get("coding") or () if isinstance(c, Mapping)]


def _code_of(concept: object, system: str | None = None) -> tuple[str | None, str]:
    for coding in _codings(concept):
        if system is None or coding.get("system") == system:
            code = coding.get("code")
            return (str(code) if code else None), str(coding.get("display") or code or "")
    text = concept.get("text") if isinstance(concept, Mapping) else None
    return None, str(text or "")


def _status(resource: Mapping[str, Any], field: str) -> str | None:
    code, _ = _code_of(resource.get(field))
    return code


def _name(patient: Mapping[str, Any]) -> str | None:
    for name in patient.get("name") or ():
        if isinstance(name, Mapping):
            given = " ".join(str(g) for g in name.get("given") or ())
            family = str(name.get("family") or "")
            text = (given + " " + family).strip() or str(name.get("text") or "")
            if text:
                return text
    return None


def service_concept(resource: Mapping[str, Any]) -> object:
    if resource.get("resourceType") == "EpisodeOfCare":
        return (resource.get("type") or [None])[0]
    return resource.get("code")


def is_service(resource: Mapping[str, Any]) -> bool:
    """Whether an EpisodeOfCare or ServiceRequest (from social care) is a service, not the
    council's general involvement or coordination's own episode or referral."""
    codings = _codings(service_concept(resource))
    return not any((c.get("system"), c.get("code")) in NOT_SERVICES for c in codings)


def person_from_rows(
    person_id: str, registered_patient: str | None, rows: Sequence[SourceRow], kinds: Kinds
) -> Person:
    birth: date | None = None
    name: str | None = None
    diagnoses: list[Diagnosis] = []
    admissions: list[Admission] = []
    attendances: list[Attendance] = []
    services: list[Service] = []
    other_births: list[date] = []
    for row in rows:
        resource = orjson.loads(row.body)
        ref = f"{row.resource_type}/{row.resource_id}"
        org = row.source_org or ""
        labels = _labels(row)
        kind = row.resource_type
        if kind == "Patient":
            born = _date(resource.get("birthDate"))
            if row.patient_id == registered_patient:
                birth, name = born, _name(resource)
            elif born is not None:
                other_births.append(born)
        elif kind == "Condition":
            if _status(resource, "verificationStatus") in {"refuted", "entered-in-error"}:
                continue
            when = (
                _date(resource.get("recordedDate"))
                or _date(resource.get("onsetDateTime"))
                or _date((resource.get("onsetPeriod") or {}).get("start"))
            )
            for coding in _codings(resource.get("code")):
                system, code = coding.get("system"), coding.get("code")
                if not code or (system not in ICD10_SYSTEMS and system != SNOMED):
                    continue
                display = f"{code} {coding.get('display') or ''}".strip()
                diagnoses.append(
                    Diagnosis(
                        system=str(system),
                        code=str(code),
                        hospital=org in kinds.hospitals,
                        fact=Fact(ref, org, when, display, labels),
                    )
                )
        elif kind == "Encounter" and org in kinds.hospitals:
            if resource.get("status") in {"cancelled", "entered-in-error", "planned"}:
                continue
            period = resource.get("period") or {}
            start = parse_instant(period.get("start"))
            if start is None:
                continue
            end = parse_instant(period.get("end"))
            klass = (resource.get("class") or {}).get("code")
            method = None
            for extension in resource.get("extension") or ():
                if isinstance(extension, Mapping) and extension.get("url") == (
                    ADMISSION_METHOD_EXTENSION
                ):
                    method, _ = _code_of(extension.get("valueCodeableConcept"))
            if klass in INPATIENT_CLASSES:
                display = "Emergency admission" if admission_is_emergency(method) else "Admission"
                admissions.append(
                    Admission(
                        start=start,
                        end=end if resource.get("status") != "in-progress" else None,
                        emergency=bool(admission_is_emergency(method)),
                        fact=Fact(ref, org, start.date(), display, labels),
                    )
                )
            elif klass == "EMER":
                attendances.append(
                    Attendance(
                        start=start, fact=Fact(ref, org, start.date(), "A&E attendance", labels)
                    )
                )
        elif kind in {"EpisodeOfCare", "ServiceRequest"} and org in kinds.social_care:
            status = resource.get("status")
            if status in {
                "entered-in-error",
                "cancelled",
                "revoked",
                "draft",
                "planned",
                "waitlist",
            }:
                continue
            if not is_service(resource):
                continue
            concept = service_concept(resource)
            code, display = _code_of(concept)
            begins: date | None
            ends: date | None
            if kind == "EpisodeOfCare":
                period = resource.get("period") or {}
                begins, ends = _date(period.get("start")), _date(period.get("end"))
                if status == "finished" and ends is None:
                    continue  # finished with no end date: not current, and not datable
            else:
                begins = _date(resource.get("authoredOn")) or _date(
                    (resource.get("occurrencePeriod") or {}).get("start")
                )
                ends = _date((resource.get("occurrencePeriod") or {}).get("end"))
                if status == "completed" and ends is None:
                    continue
            services.append(
                Service(
                    code=code,
                    display=display or "Social care service",
                    start=begins,
                    end=ends,
                    fact=Fact(ref, org, begins, display or "Social care service", labels),
                )
            )
    if birth is None and other_births:
        birth = max(set(other_births), key=other_births.count)
    record = PersonRecord(
        person_id=person_id,
        birth_date=birth,
        diagnoses=tuple(diagnoses),
        admissions=tuple(admissions),
        attendances=tuple(attendances),
        services=tuple(services),
    )
    return Person(record, name)

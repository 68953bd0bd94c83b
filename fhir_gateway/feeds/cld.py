"""The council's adult social care extract, in the shape of England's Adult Social Care
Client Level Data (CLD) return, mapped to FHIR.

One CSV row is one event about one person. The columns used (others are ignored):

==============================  ==========================================================
``LA_Code``                     the council (ODS-style code, e.g. ``Z9C01``); the source
``Person_ID``                   the council's own person identifier
``NHS_Number``                  optional; checked (Modulus 11) when given
``Given_Name``, ``Family_Name``  optional (the national return is pseudonymised; the local
                                extract for care records is not)
``Date_of_Birth``               ``YYYY-MM-DD``
``Gender``                      Male, Female, Other, Unknown (or M/F/O/U)
``Postcode``                    optional
``Reporting_Period_Start_Date``, ``Reporting_Period_End_Date``   the extract's period
``Event_Type``                  Request, Assessment, Service or Review
``Event_Reference``             the council's id for the event
``Event_Start_Date``, ``Event_End_Date``   ``YYYY-MM-DD``; the end may be empty
``Event_Outcome``               free text code (e.g. "Long Term Support")
``Service_Type``                for a Service (e.g. "Long Term Support: Community")
``Primary_Support_Reason``      e.g. "Physical Support: Personal Care Support"
==============================  ==========================================================

Mapping: the person is a ``Patient`` (id ``<la>-<person id>``); a Service an
``EpisodeOfCare`` (type = the service type; the primary support reason as a social-care need
category in an extension, never as a clinical Condition); an Assessment or Review an
``Encounter`` (class home health, type = the event type); a Request a ``Task``. Every item
carries ``meta.source`` = the council.

CLD is a periodic return of events: an event present in an earlier extract for the same
reporting period and missing from a later one was withdrawn, and is marked entered-in-error.
"""

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhir_gateway.feeds import organization, source_uri
from fhir_gateway.identity.nhs import NHS_NUMBER_SYSTEM, is_valid, normalise

CLD_SYSTEM = "https://fhir.carejoin.example/CodeSystem/asc-cld"
SUPPORT_REASON_EXTENSION = (
    "https://fhir.carejoin.example/StructureDefinition/asc-primary-support-reason"
)
EVENT_TYPES = ("Request", "Assessment", "Service", "Review")
REQUIRED = (
    "LA_Code",
    "Person_ID",
    "Date_of_Birth",
    "Reporting_Period_Start_Date",
    "Reporting_Period_End_Date",
    "Event_Type",
    "Event_Reference",
    "Event_Start_Date",
)
GENDERS = {
    "male": "male",
    "m": "male",
    "female": "female",
    "f": "female",
    "other": "other",
    "o": "other",
    "unknown": "unknown",
    "u": "unknown",
    "": "unknown",
}


class CldError(ValueError):
    pass


@dataclass(frozen=True)
class CldEvent:
    row: int
    la: str
    period: tuple[date, date]
    event_type: str
    event_reference: str
    patient: dict[str, Any]
    resource: dict[str, Any]


@dataclass
class ParsedExtract:
    events: list[CldEvent] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (row number, reason)


def _slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]", "-", value)[:48].strip("-").lower() or "x"


def _date(row: Mapping[str, str], column: str, *, required: bool) -> date | None:
    text = (row.get(column) or "").strip()
    if not text:
        if required:
            raise CldError(f"{column} is empty")
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CldError(f"{column} '{text}' is not a date (YYYY-MM-DD)") from None


def _concept(code: str) -> dict[str, Any]:
    return {"coding": [{"system": CLD_SYSTEM, "code": _slug(code), "display": code}], "text": code}


def map_row(number: int, row: Mapping[str, str]) -> CldEvent:
    missing = [c for c in REQUIRED if not (row.get(c) or "").strip()]
    if missing:
        raise CldError(f"missing {', '.join(missing)}")
    la = row["LA_Code"].strip().upper()
    person_id = row["Person_ID"].strip()
    start = _date(row, "Reporting_Period_Start_Date", required=True)
    end = _date(row, "Reporting_Period_End_Date", required=True)
    assert start is not None
    assert end is not None
    if end < start:
        raise CldError("the reporting period ends before it starts")
    event_type = row["Event_Type"].strip().title()
    if event_type not in EVENT_TYPES:
        raise CldError(f"Event_Type '{row['Event_Type']}' is not one of {', '.join(EVENT_TYPES)}")
    event_start = _date(row, "Event_Start_Date", required=True)
    event_end = _date(row, "Event_End_Date", required=False)
    assert event_start is not None
    if event_end is not None and event_end < event_start:
        raise CldError("Event_End_Date is before Event_Start_Date")
    birth = _date(row, "Date_of_Birth", required=True)
    gender = (row.get("Gender") or "").strip().lower()
    if gender not in GENDERS:
        raise CldError(f"Gender '{row.get('Gender')}' is not Male, Female, Other or Unknown")

    source = source_uri(la)
    patient_id = f"{_slug(la)}-{_slug(person_id)}"
    identifiers: list[dict[str, Any]] = [
        {"system": f"https://fhir.carejoin.example/Id/{la}/person", "value": person_id}
    ]
    nhs_text = (row.get("NHS_Number") or "").strip()
    if nhs_text:
        nhs = normalise(nhs_text)
        if not is_valid(nhs):
            raise CldError(f"NHS_Number '{nhs_text}' fails the Modulus 11 check")
        identifiers.insert(0, {"system": NHS_NUMBER_SYSTEM, "value": nhs})
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id,
        "meta": {"source": source},
        "identifier": identifiers,
        "gender": GENDERS[gender],
        "birthDate": birth.isoformat() if birth else "",
    }
    given, family = (row.get("Given_Name") or "").strip(), (row.get("Family_Name") or "").strip()
    if given or family:
        name: dict[str, Any] = {"use": "official"}
        if family:
            name["family"] = family
        if given:
            name["given"] = [given]
        patient["name"] = [name]
    postcode = (row.get("Postcode") or "").strip()
    if postcode:
        patient["address"] = [{"use": "home", "postalCode": postcode.upper()}]

    reference = row["Event_Reference"].strip()
    resource_id = f"{_slug(la)}-ev-{_slug(reference)}"
    subject = {"reference": f"Patient/{patient_id}"}
    period: dict[str, str] = {"start": event_start.isoformat()}
    if event_end is not None:
        period["end"] = event_end.isoformat()
    event_identifier = [
        {"system": f"https://fhir.carejoin.example/Id/{la}/cld-event", "value": reference}
    ]
    outcome = (row.get("Event_Outcome") or "").strip()
    reason = (row.get("Primary_Support_Reason") or "").strip()
    resource: dict[str, Any]
    if event_type == "Service":
        service_type = (row.get("Service_Type") or "").strip()
        if not service_type:
            raise CldError("a Service event needs a Service_Type")
        resource = {
            "resourceType": "EpisodeOfCare",
            "id": resource_id,
            "meta": {"source": source},
            "identifier": event_identifier,
            "status": "finished" if event_end is not None else "active",
            "type": [_concept(service_type)],
            "patient": subject,
            "managingOrganization": organization(la),
            "period": period,
        }
        if reason:
            resource["extension"] = [
                {"url": SUPPORT_REASON_EXTENSION, "valueCodeableConcept": _concept(reason)}
            ]
    elif event_type in ("Assessment", "Review"):
        resource = {
            "resourceType": "Encounter",
            "id": resource_id,
            "meta": {"source": source},
            "identifier": event_identifier,
            "status": "finished" if event_end is not None else "in-progress",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "HH",
                "display": "home health",
            },
            "type": [_concept(f"Social care {event_type.lower()}")],
            "subject": subject,
            "period": period,
            "serviceProvider": organization(la),
        }
        if outcome:
            resource["reasonCode"] = [_concept(outcome)]
    else:  # Request
        resource = {
            "resourceType": "Task",
            "id": resource_id,
            "meta": {"source": source},
            "identifier": event_identifier,
            "status": "completed" if event_end is not None else "in-progress",
            "intent": "order",
            "code": _concept("Request for adult social care support"),
            "for": subject,
            "authoredOn": event_start.isoformat(),
            "executionPeriod": period,
        }
        if outcome:
            resource["businessStatus"] = _concept(outcome)
    return CldEvent(number, la, (start, end), event_type, reference, patient, resource)


def parse(text: str | Iterable[str]) -> ParsedExtract:
    """Rows to events; a bad row is reported with its number (the header is row 1)."""
    handle = io.StringIO(text) if isinstance(text, str) else text
    reader = csv.DictReader(handle)
    result = ParsedExtract()
    if reader.fieldnames is None:
        result.errors.append((1, "the file is empty"))
        return result
    absent = [c for c in REQUIRED if c not in reader.fieldnames]
    if absent:
        result.errors.append((1, f"the header lacks {', '.join(absent)}"))
        return result
    try:
        for index, row in enumerate(reader, 2):
            try:
                result.events.append(map_row(index, row))
            except CldError as exc:
                result.errors.append((index, str(exc)))
    except csv.Error as exc:
        result.errors.append((reader.line_num, f"the CSV is malformed: {exc}"))
    return result

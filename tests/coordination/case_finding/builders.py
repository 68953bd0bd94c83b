"""Small builders of synthetic facts for the case-finding rules (all made up)."""

from datetime import UTC, date, datetime, timedelta
from itertools import count

from coordination.case_finding.rules import (
    Admission,
    Attendance,
    Diagnosis,
    Fact,
    PersonRecord,
    Service,
)

ICD10 = "http://hl7.org/fhir/sid/icd-10"
SNOMED = "http://snomed.info/sct"
HOSPITAL = "Z9H"
PRACTICE = "Z90001"
COUNCIL = "Z9C01"
AS_OF = date(2026, 11, 1)

_ids = count(1)


def born_aged(age: int, as_of: date = AS_OF) -> date:
    """A birth date that makes someone exactly ``age`` on ``as_of`` (birthday that day)."""
    return as_of.replace(year=as_of.year - age)


def fact(
    reference: str | None = None,
    *,
    organisation: str = HOSPITAL,
    day: date | None = None,
    display: str = "",
    labels: frozenset[str] = frozenset(),
) -> Fact:
    return Fact(reference or f"Condition/f{next(_ids)}", organisation, day, display, labels)


def dx(
    code: str,
    day: date | None = AS_OF - timedelta(days=30),
    *,
    hospital: bool = True,
    system: str = ICD10,
    labels: frozenset[str] = frozenset(),
) -> Diagnosis:
    organisation = HOSPITAL if hospital else PRACTICE
    return Diagnosis(
        system,
        code,
        hospital,
        fact(organisation=organisation, day=day, display=code, labels=labels),
    )


def snomed(
    code: str, day: date | None = date(2015, 6, 1), *, labels: frozenset[str] = frozenset()
) -> Diagnosis:
    return dx(code, day, hospital=False, system=SNOMED, labels=labels)


def at(day: date, hour: int = 14) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def stay(
    start: date,
    end: date | None,
    *,
    emergency: bool = True,
    labels: frozenset[str] = frozenset(),
) -> Admission:
    return Admission(
        at(start),
        None if end is None else at(end, 11),
        emergency,
        fact(f"Encounter/s{next(_ids)}", day=start, display="Inpatient stay", labels=labels),
    )


def attendance(day: date) -> Attendance:
    return Attendance(at(day), fact(f"Encounter/a{next(_ids)}", day=day, display="A&E"))


def service(
    start: date | None,
    end: date | None = None,
    *,
    code: str = "home-care",
    labels: frozenset[str] = frozenset(),
) -> Service:
    return Service(
        code,
        "Home care (domiciliary support)",
        start,
        end,
        fact(
            f"ServiceRequest/s{next(_ids)}",
            organisation=COUNCIL,
            day=start,
            display="Home care",
            labels=labels,
        ),
    )


def person(
    age: int | None = 80,
    *,
    diagnoses: tuple[Diagnosis, ...] = (),
    admissions: tuple[Admission, ...] = (),
    attendances: tuple[Attendance, ...] = (),
    services: tuple[Service, ...] = (),
    person_id: str = "p1",
    birth_date: date | None = None,
) -> PersonRecord:
    if birth_date is None and age is not None:
        birth_date = born_aged(age)
    return PersonRecord(person_id, birth_date, diagnoses, admissions, attendances, services)

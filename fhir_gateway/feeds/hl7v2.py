"""HL7 v2 ADT: parsing (with the ``hl7`` library) and mapping to FHIR Patient and Encounter.

Pure: takes the message text, returns FHIR JSON and what the event asks for; the database
side is ``feeds.adt``. The mapping follows the NHS England HL7 v2 ADT conventions: the NHS
number is the PID-3 repetition with identifier type ``NH``, the hospital number the one with
type ``MR`` (or ``PI``); the admission method (NHS Data Dictionary ADMISSION METHOD: 11-13
elective, 21-28 emergency, 31-32 maternity, 81-83 other) is PV1-4; the visit number is PV1-19.

Errors carry the HL7 acknowledgement they deserve: ``AR`` (reject: the message cannot be
read or is not one this interface takes) or ``AE`` (error: readable, but its content cannot
be applied).
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import hl7

from fhir_gateway.feeds import organization, source_uri
from fhir_gateway.identity.nhs import NHS_NUMBER_SYSTEM, normalise

LONDON = ZoneInfo("Europe/London")
SUPPORTED_EVENTS = frozenset(
    {"A01", "A02", "A03", "A04", "A05", "A08", "A11", "A12", "A13", "A28", "A31", "A40"}
)
ENCOUNTER_EVENTS = frozenset({"A01", "A02", "A03", "A04", "A05", "A11", "A12", "A13"})
ADMISSION_METHOD_EXTENSION = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-AdmissionMethod"
)
ADMISSION_METHOD_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-AdmissionMethodEngland"
ADMISSION_METHODS = {
    "11": "Elective - from waiting list",
    "12": "Elective - booked",
    "13": "Elective - planned",
    "21": "Emergency - Accident and Emergency",
    "22": "Emergency - GP",
    "23": "Emergency - Bed Bureau",
    "24": "Emergency - Consultant Clinic",
    "25": "Emergency - Admission via Mental Health Crisis Resolution Team",
    "2A": "Emergency - A&E of another provider",
    "2B": "Emergency - transfer from another hospital provider",
    "2C": "Emergency - Baby born at home as intended",
    "2D": "Emergency - Other emergency admission",
    "28": "Emergency - other means",
    "31": "Maternity - ante partum",
    "32": "Maternity - post partum",
    "81": "Transfer from another hospital provider",
    "82": "Baby born in this health care provider",
    "83": "Baby born outside the health care provider",
}
CLASSES = {
    "I": ("IMP", "inpatient encounter"),
    "O": ("AMB", "ambulatory"),
    "E": ("EMER", "emergency"),
    "P": ("PRENC", "pre-admission"),
}
SEX = {"M": "male", "F": "female", "U": "unknown", "O": "other", "A": "other", "N": "unknown"}


class Hl7Error(Exception):
    """``ack``: AR (reject) or AE (error); ``text``: the reason, sent back in MSA-3/ERR."""

    def __init__(self, ack: str, text: str):
        super().__init__(text)
        self.ack = ack
        self.text = text


@dataclass(frozen=True)
class Header:
    sending_application: str
    sending_facility: str
    message_type: str
    event: str
    control_id: str
    version: str
    timestamp: str


@dataclass
class AdtEvent:
    header: Header
    patient: dict[str, Any]
    mrn_system: str
    mrn: str
    encounter: dict[str, Any] | None = None
    visit_system: str | None = None
    visit_number: str | None = None
    prior_mrns: list[str] = field(default_factory=list)  # A40: the records merged away


def _text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


def normalise_segments(raw: str) -> str:
    """Segments may arrive separated by CR, LF or CRLF; HL7 wants CR."""
    return "\r".join(line for line in re.split(r"\r\n|\r|\n", raw.strip()) if line.strip())


def value(message: Any, key: str) -> str:
    """``value(m, "PID.F3.R2.C5")``: one component as text, empty when absent."""
    try:
        return _text(message[key])
    except (IndexError, KeyError, ValueError):
        return ""


def repetitions(message: Any, segment: str, field_number: int) -> int:
    try:
        found = message.segment(segment)[field_number]
    except (IndexError, KeyError):
        return 0
    return len(found) if found else 0


def hl7_datetime(text: str, what: str) -> str | None:
    """``YYYYMMDD[HHMM[SS[.S]]][+ZZZZ]`` -> a FHIR date or dateTime (London time when no zone)."""
    if not text:
        return None
    match = re.fullmatch(
        r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?", text
    )
    if match is None:
        raise Hl7Error("AE", f"{what} '{text}' is not an HL7 date/time")
    year, month, day, hour, minute, second, zone = match.groups()
    try:
        if hour is None:
            parts = [year, month, day]
            value = "-".join(p for p in parts if p)
            datetime.strptime(
                value, {1: "%Y", 2: "%Y-%m", 3: "%Y-%m-%d"}[len([p for p in parts if p])]
            )
            return value
        moment = datetime(
            int(year), int(month or 1), int(day or 1), int(hour), int(minute or 0), int(second or 0)
        )
    except ValueError as exc:
        raise Hl7Error("AE", f"{what} '{text}' is not a real date: {exc}") from None
    if zone is None:
        # An English PAS sends local time: Europe/London, GMT or BST as the date falls.
        return moment.replace(tzinfo=LONDON).isoformat()
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f"{zone[:3]}:{zone[3:]}"


def parse_header(message: Any) -> Header:
    try:
        message.segment("MSH")
    except KeyError:
        raise Hl7Error("AR", "The message has no MSH segment") from None
    message_type = value(message, "MSH.F9.R1.C1")
    event = value(message, "MSH.F9.R1.C2")
    control_id = value(message, "MSH.F10")
    if not control_id:
        raise Hl7Error("AR", "MSH-10 (message control id) is empty")
    return Header(
        sending_application=value(message, "MSH.F3.R1.C1"),
        sending_facility=value(message, "MSH.F4.R1.C1"),
        message_type=message_type,
        event=event,
        control_id=control_id[:64],
        version=value(message, "MSH.F12.R1.C1") or "2.4",
        timestamp=value(message, "MSH.F7"),
    )


def parse(raw: str) -> tuple[Any, Header]:
    """Parse the text into an ``hl7.Message`` and its header; AR when it cannot be read."""
    text = normalise_segments(raw)
    if not text.startswith("MSH"):
        raise Hl7Error("AR", "An HL7 v2 message starts with an MSH segment")
    try:
        message = hl7.parse(text)
    except Exception as exc:  # the library raises several kinds on malformed input
        raise Hl7Error("AR", f"The message could not be parsed: {exc}") from None
    header = parse_header(message)
    if header.message_type != "ADT":
        raise Hl7Error("AR", f"This interface takes ADT messages, not {header.message_type or '?'}")
    if header.event not in SUPPORTED_EVENTS:
        raise Hl7Error("AR", f"ADT^{header.event or '?'} is not an event this interface takes")
    if not header.sending_facility:
        raise Hl7Error("AR", "MSH-4 (sending facility) is empty")
    return message, header


def _has(message: Any, name: str, *, required: bool, event: str) -> bool:
    try:
        message.segment(name)
    except KeyError:
        if required:
            raise Hl7Error("AE", f"ADT^{event} needs a {name} segment") from None
        return False
    return True


def _order_check(message: Any, event: str) -> None:
    names = [_text(segment[0]) for segment in message]
    if names[0] != "MSH":
        raise Hl7Error("AR", "MSH must be the first segment")
    if "PID" in names and "PV1" in names and names.index("PV1") < names.index("PID"):
        raise Hl7Error("AE", f"ADT^{event}: PV1 comes before PID (segments out of order)")


def to_fhir(message: Any, header: Header) -> AdtEvent:
    event = header.event
    _order_check(message, event)
    ods = header.sending_facility
    _has(message, "PID", required=True, event=event)
    identifiers: list[dict[str, Any]] = []
    mrn = ""
    mrn_system = f"https://fhir.carejoin.example/Id/{ods}/mrn"
    for r in range(1, repetitions(message, "PID", 3) + 1):
        number = value(message, f"PID.F3.R{r}.C1")
        kind = value(message, f"PID.F3.R{r}.C5").upper()
        if not number:
            continue
        if kind == "NH":
            identifiers.append({"system": NHS_NUMBER_SYSTEM, "value": normalise(number)})
        elif kind in ("MR", "PI", "") and not mrn:
            mrn = number
            identifiers.append({"system": mrn_system, "value": number})
    if not mrn:
        raise Hl7Error("AE", "PID-3 has no hospital number (identifier type MR or PI)")
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "meta": {"source": source_uri(ods)},
        "identifier": identifiers,
        "active": True,
    }
    names: list[dict[str, Any]] = []
    for r in range(1, repetitions(message, "PID", 5) + 1):
        family, given, middle, prefix = (value(message, f"PID.F5.R{r}.C{c}") for c in (1, 2, 3, 5))
        if not (family or given):
            continue
        name: dict[str, Any] = {"use": "official" if not names else "old"}
        if family:
            name["family"] = family.title() if family.isupper() else family
        givens = [g.title() if g.isupper() else g for g in (given, middle) if g]
        if givens:
            name["given"] = givens
        if prefix:
            name["prefix"] = [prefix]
        names.append(name)
    if names:
        patient["name"] = names
    birth = hl7_datetime(value(message, "PID.F7"), "PID-7 (date of birth)")
    if birth:
        patient["birthDate"] = birth[:10]
    sex = value(message, "PID.F8").upper()
    if sex:
        if sex not in SEX:
            raise Hl7Error("AE", f"PID-8 (sex) '{sex}' is not an HL7 administrative sex code")
        patient["gender"] = SEX[sex]
    addresses = []
    for r in range(1, repetitions(message, "PID", 11) + 1):
        lines = [x for x in (value(message, f"PID.F11.R{r}.C{c}") for c in (1, 2)) if x]
        city, postcode = value(message, f"PID.F11.R{r}.C3"), value(message, f"PID.F11.R{r}.C5")
        if lines or city or postcode:
            address: dict[str, Any] = {"use": "home"}
            if lines:
                address["line"] = lines
            if city:
                address["city"] = city
            if postcode:
                address["postalCode"] = postcode
            addresses.append(address)
    if addresses:
        patient["address"] = addresses
    phones = [
        p
        for p in (
            value(message, f"PID.F13.R{r}.C1")
            for r in range(1, repetitions(message, "PID", 13) + 1)
        )
        if p
    ]
    if phones:
        patient["telecom"] = [{"system": "phone", "value": p, "use": "home"} for p in phones]
    died = hl7_datetime(value(message, "PID.F29"), "PID-29 (date of death)")
    if died:
        patient["deceasedDateTime"] = died
    elif value(message, "PID.F30").upper() == "Y":
        patient["deceasedBoolean"] = True

    result = AdtEvent(header=header, patient=patient, mrn_system=mrn_system, mrn=mrn)
    if event == "A40":
        _has(message, "MRG", required=True, event=event)
        result.prior_mrns = [
            p
            for p in (
                value(message, f"MRG.F1.R{r}.C1")
                for r in range(1, repetitions(message, "MRG", 1) + 1)
            )
            if p
        ]
        if not result.prior_mrns:
            raise Hl7Error("AE", "MRG-1 (prior patient identifier) is empty")
        if mrn in result.prior_mrns:
            raise Hl7Error("AE", "A40 merges a patient into itself")
    if event in ENCOUNTER_EVENTS:
        _encounter(message, header, result)
    return result


def _encounter(message: Any, header: Header, result: AdtEvent) -> None:
    event = header.event
    _has(message, "PV1", required=True, event=event)
    visit = value(message, "PV1.F19.R1.C1")
    if not visit:
        raise Hl7Error("AE", f"ADT^{event} needs a visit number (PV1-19)")
    ods = header.sending_facility
    result.visit_system = f"https://fhir.carejoin.example/Id/{ods}/visit"
    result.visit_number = visit
    patient_class = value(message, "PV1.F2").upper() or ("E" if event == "A04" else "I")
    code, display = CLASSES.get(patient_class, ("IMP", "inpatient encounter"))
    status = {
        "A05": "planned",
        "A03": "finished",
        "A11": "entered-in-error",
    }.get(event, "in-progress")
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "meta": {"source": source_uri(ods)},
        "identifier": [{"system": result.visit_system, "value": visit}],
        "status": status,
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": code,
            "display": display,
        },
        "serviceProvider": organization(ods),
    }
    method = value(message, "PV1.F4").upper()
    if method:
        if method not in ADMISSION_METHODS:
            raise Hl7Error("AE", f"PV1-4 (admission method) '{method}' is not an NHS code")
        encounter["extension"] = [
            {
                "url": ADMISSION_METHOD_EXTENSION,
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": ADMISSION_METHOD_SYSTEM,
                            "code": method,
                            "display": ADMISSION_METHODS[method],
                        }
                    ]
                },
            }
        ]
        emergency = method.startswith("2")
        encounter["priority"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActPriority",
                    "code": "EM" if emergency else "EL",
                    "display": "emergency" if emergency else "elective",
                }
            ]
        }
    start = hl7_datetime(value(message, "PV1.F44"), "PV1-44 (admit date/time)")
    end = hl7_datetime(value(message, "PV1.F45"), "PV1-45 (discharge date/time)")
    if event == "A03" and not end:
        end = hl7_datetime(value(message, "EVN.F2"), "EVN-2 (event date/time)")
        if not end:
            raise Hl7Error("AE", "ADT^A03 needs the discharge date/time (PV1-45 or EVN-2)")
    period: dict[str, str] = {}
    if start:
        period["start"] = start
    if end and event == "A03":
        period["end"] = end
    if period:
        encounter["period"] = period
    ward, room, bed = (value(message, f"PV1.F3.R1.C{c}") for c in (1, 2, 3))
    if ward:
        where = " ".join(x for x in (ward, room and f"room {room}", bed and f"bed {bed}") if x)
        encounter["location"] = [{"location": {"display": where}, "status": "active"}]
    result.encounter = encounter


def ack(header: Header | None, code: str, text: str, *, raw_control_id: str = "") -> str:
    """An HL7 ACK: MSH, MSA (AA/AE/AR) and, for errors, ERR."""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    to_app = header.sending_application if header else ""
    to_facility = header.sending_facility if header else ""
    event = header.event if header else ""
    version = header.version if header else "2.4"
    control = header.control_id if header else raw_control_id
    clean = text.replace("|", "/").replace("^", "/").replace("&", "+").replace("~", "-")
    clean = clean.replace("\\", "/").replace("\r", " ").replace("\n", " ")[:200]
    segments = [
        f"MSH|^~\\&|CAREJOIN|CAREJOIN|{to_app}|{to_facility}|{now}||ACK^{event}^ACK|ACK{now}{control[:20]}|P|{version}",
        f"MSA|{code}|{control}|{clean}",
    ]
    if code != "AA":
        segments.append(f"ERR|||{'207' if code == 'AE' else '200'}|E||||{clean}")
    return "\r".join(segments) + "\r"

"""Parsing and mapping HL7 v2 ADT, including malformed messages (pure, no database)."""

import pytest

from fhir_gateway.feeds import hl7v2
from fhir_gateway.feeds.hl7v2 import Hl7Error
from tests.fhir_gateway.feeds.messages import NHS, adt


def mapped(raw: str) -> hl7v2.AdtEvent:
    message, header = hl7v2.parse(raw)
    return hl7v2.to_fhir(message, header)


def test_admission_maps_to_patient_and_encounter() -> None:
    event = mapped(adt("A01", "C1"))
    patient = event.patient
    assert event.mrn == "RH0000123"
    assert {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS} in patient["identifier"]
    assert patient["name"][0] == {
        "use": "official",
        "family": "Okafor",
        "given": ["Adaeze"],
        "prefix": ["MRS"],
    }
    assert patient["birthDate"] == "1941-03-12"
    assert patient["gender"] == "female"
    assert patient["address"][0]["postalCode"] == "LS16 6AB"
    assert patient["meta"]["source"] == "urn:carejoin:source:Z9H"
    encounter = event.encounter
    assert encounter is not None
    assert encounter["status"] == "in-progress"
    assert encounter["class"]["code"] == "IMP"
    assert encounter["period"] == {"start": "2026-11-01T09:30:00+00:00"}
    assert encounter["location"][0]["location"]["display"] == "WARD7 room B bed 12"
    assert event.visit_number == "V0001"


@pytest.mark.parametrize(
    ("method", "priority"), [("21", "EM"), ("2A", "EM"), ("11", "EL"), ("13", "EL")]
)
def test_admission_method_tells_emergency_from_elective(method: str, priority: str) -> None:
    encounter = mapped(adt("A01", "C1", method=method)).encounter
    assert encounter is not None
    coding = encounter["extension"][0]["valueCodeableConcept"]["coding"][0]
    assert coding["code"] == method
    assert encounter["priority"]["coding"][0]["code"] == priority


def test_local_times_are_london_time() -> None:
    summer = mapped(adt("A01", "C1", admitted="202607011200")).encounter
    assert summer is not None
    assert summer["period"]["start"] == "2026-07-01T12:00:00+01:00"


def test_discharge_needs_its_time_and_finishes_the_encounter() -> None:
    encounter = mapped(adt("A03", "C2", discharged="202611051200")).encounter
    assert encounter is not None
    assert encounter["status"] == "finished"
    assert encounter["period"]["end"] == "2026-11-05T12:00:00+00:00"


def test_patient_only_events_carry_no_encounter() -> None:
    for event in ("A28", "A31", "A08"):
        assert mapped(adt(event, "C3", pv1=False)).encounter is None


def test_segments_may_be_separated_by_newlines() -> None:
    assert mapped(adt("A01", "C1").replace("\r", "\n")).mrn == "RH0000123"


@pytest.mark.parametrize(
    ("raw", "ack", "reason"),
    [
        ("", "AR", "starts with an MSH"),
        ("PID|1||123", "AR", "starts with an MSH"),
        (adt("A01", "C1").replace("ADT^A01", "ORU^R01"), "AR", "ADT messages"),
        (adt("A01", "C1").replace("ADT^A01", "ADT^A99"), "AR", "A99"),
        (adt("A01", "").replace("|||P|2.4", "||P|2.4"), "AR", "MSH-10"),
        (adt("A01", "C1", mrn="RH1").replace("^MR~", "^XX~"), "AE", "hospital number"),
        (adt("A01", "C1", visit=""), "AE", "PV1-19"),
        (adt("A01", "C1", pv1=False), "AE", "PV1 segment"),
        (adt("A01", "C1", method="99"), "AE", "admission method"),
        (adt("A01", "C1", admitted="20261345"), "AE", "not a real date"),
        (adt("A01", "C1", admitted="yesterday"), "AE", "not an HL7 date"),
        (adt("A03", "C2").replace("EVN|A03|202611011000", "EVN|A03|"), "AE", "discharge"),
        (adt("A40", "C4"), "AE", "MRG"),
    ],
)
def test_malformed_messages_get_the_right_ack(raw: str, ack: str, reason: str) -> None:
    with pytest.raises(Hl7Error) as caught:
        mapped(raw)
    assert caught.value.ack == ack
    assert reason in caught.value.text


def test_segments_out_of_order_are_an_error() -> None:
    raw = adt("A01", "C1")
    lines = raw.strip("\r").split("\r")
    pv1 = lines.pop()
    lines.insert(2, pv1)
    with pytest.raises(Hl7Error, match="out of order"):
        mapped("\r".join(lines))


def test_truncated_message_is_rejected_not_guessed() -> None:
    raw = adt("A01", "C1")
    with pytest.raises(Hl7Error):
        mapped(raw[: raw.index("PID") + 10])


def test_ack_echoes_the_control_id_and_escapes_the_reason() -> None:
    _message, header = hl7v2.parse(adt("A01", "C77"))
    text = hl7v2.ack(header, "AE", "bad|value^here")
    segments = text.strip("\r").split("\r")
    assert segments[0].startswith("MSH|^~\\&|CAREJOIN|CAREJOIN|PAS|Z9H|")
    assert segments[1] == "MSA|AE|C77|bad/value/here"
    assert segments[2].startswith("ERR|")
    assert hl7v2.ack(header, "AA", "ok").count("\r") == 2

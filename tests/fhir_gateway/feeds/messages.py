"""Synthetic HL7 v2.4 ADT messages as a hospital PAS sends them (no real person)."""

NHS = "9991000003"


def adt(
    event: str,
    control: str,
    *,
    mrn: str = "RH0000123",
    visit: str = "V0001",
    method: str = "21",
    patient_class: str = "I",
    ward: str = "WARD7^B^12",
    admitted: str = "202611010930",
    discharged: str = "",
    family: str = "OKAFOR",
    given: str = "ADAEZE",
    extra: str = "",
    pv1: bool = True,
    nhs: str = NHS,
) -> str:
    segments = [
        f"MSH|^~\\&|PAS|Z9H|CAREJOIN|CAREJOIN|202611011000||ADT^{event}^ADT_A01|{control}|P|2.4",
        f"EVN|{event}|202611011000",
        f"PID|1||{mrn}^^^Z9H^MR{f'~{nhs}^^^NHS^NH' if nhs else ''}||{family}^{given}^^^MRS||"
        "19410312|F|||"
        "12 Example Street^^Leeds^^LS16 6AB||0113 496 0000",
    ]
    if extra:
        segments.append(extra)
    if pv1:
        fields = [""] * 46
        fields[0] = "PV1"
        fields[1] = "1"
        fields[2] = patient_class
        fields[3] = ward
        fields[4] = method
        fields[19] = visit
        fields[44] = admitted
        fields[45] = discharged
        segments.append("|".join(fields))
    return "\r".join(segments) + "\r"

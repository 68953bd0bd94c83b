"""NHS numbers on a Patient: the value, whether its check digit is right, and whether the
source says it was verified against the national demographics service (PDS).

Check digits are checked with the ``nhs-number`` library (Modulus 11). The verification
status is UK Core's ``Extension-UKCore-NHSNumberVerificationStatus`` on the identifier,
coded from ``UKCore-NHSNumberVerificationStatusEngland``; only ``01`` (number present and
verified) counts as verified.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nhs_number.validate import is_valid as _check_digit_ok

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
VERIFICATION_EXTENSION = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
)
VERIFICATION_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
VERIFIED = "01"

VERIFICATION_STATUSES = {
    "01": "Number present and verified",
    "02": "Number present but not traced",
    "03": "Trace required",
    "04": "Trace attempted - No match or multiple match found",
    "05": "Trace needs to be resolved - (NHS number or patient detail conflict)",
    "06": "Trace in progress",
    "07": "Number not present and trace not required",
    "08": "Trace postponed (baby under six weeks old)",
}


@dataclass(frozen=True, slots=True)
class NhsNumber:
    value: str
    valid: bool
    verification: str | None = None

    @property
    def verified(self) -> bool:
        return self.valid and self.verification == VERIFIED


def normalise(text: str) -> str:
    """Digits only: sources send ``943 476 5919`` and ``943-476-5919`` as well."""
    return "".join(ch for ch in text if not ch.isspace() and ch != "-")


def is_valid(value: str) -> bool:
    return len(value) == 10 and value.isdigit() and bool(_check_digit_ok(value))


def _verification(identifier: Mapping[str, Any]) -> str | None:
    for extension in identifier.get("extension") or ():
        if not isinstance(extension, Mapping) or extension.get("url") != VERIFICATION_EXTENSION:
            continue
        concept = extension.get("valueCodeableConcept")
        if not isinstance(concept, Mapping):
            continue
        for coding in concept.get("coding") or ():
            if isinstance(coding, Mapping) and coding.get("code") in VERIFICATION_STATUSES:
                return str(coding["code"])
    return None


def nhs_numbers(patient: Mapping[str, Any]) -> list[NhsNumber]:
    """Every NHS number identifier on ``patient``, in order, with validity and verification."""
    found: list[NhsNumber] = []
    for identifier in patient.get("identifier") or ():
        if not isinstance(identifier, Mapping) or identifier.get("system") != NHS_NUMBER_SYSTEM:
            continue
        raw = identifier.get("value")
        if not isinstance(raw, str) or not raw.strip():
            continue
        value = normalise(raw)
        found.append(NhsNumber(value, is_valid(value), _verification(identifier)))
    return found


def best_nhs_number(patient: Mapping[str, Any]) -> NhsNumber | None:
    """The NHS number identity should use: a verified one, else a valid one, else none.

    A number whose check digit is wrong is a typo, not an identity; it is ignored (and the
    record is matched on demographics instead).
    """
    numbers = nhs_numbers(patient)
    for number in numbers:
        if number.verified:
            return number
    for number in numbers:
        if number.valid:
            return number
    return None

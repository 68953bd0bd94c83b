"""The demographic features identity compares, taken from a Patient resource's JSON.

Everything is normalised once here (case, accents, punctuation, postcode spacing, phone
prefixes) so that comparison and blocking work on clean values. Names keep every family name
a source gives (official, maiden, old, the parts of a hyphenated name), because people are
matched across marriages and across sources that record different names.
"""

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhir_gateway.identity.nhs import NhsNumber, best_nhs_number

_LETTERS = re.compile(r"[^a-z\- ]")
_POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}$")
# Names that are not names: sources put these in place of a missing value.
_PLACEHOLDERS = frozenset({"unknown", "baby", "infant", "boy", "girl", "twin", "nk", "xxx"})


def fold(text: str) -> str:
    """Lower case, accents removed, apostrophes dropped, other punctuation as spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    plain = plain.replace("'", "").replace("\u2019", "")
    return " ".join(_LETTERS.sub(" ", plain).split())


def name_parts(text: str) -> tuple[str, ...]:
    """``Smith-Jones`` -> (``smithjones``, ``smith``, ``jones``); ``de la Cruz`` -> ``delacruz``..."""
    folded = fold(text)
    if not folded:
        return ()
    whole = folded.replace("-", "").replace(" ", "")
    parts = [p for p in re.split(r"[- ]", folded) if len(p) > 1]
    return tuple(dict.fromkeys([whole, *parts]))


def postcode(text: str) -> str | None:
    value = "".join(text.split()).upper()
    return value if _POSTCODE.match(value) else None


def postcode_sector(value: str) -> str:
    """``LS16 6AB`` -> ``LS166``: the outward code and the first character of the inward."""
    return value[:-2]


def phone(text: str) -> str | None:
    digits = "".join(ch for ch in text if ch.isdigit())
    if text.strip().startswith("+44") or (digits.startswith("44") and len(digits) == 12):
        digits = "0" + digits[2:]
    return digits if len(digits) >= 10 else None


@dataclass(frozen=True, slots=True)
class Demographics:
    nhs: NhsNumber | None = None
    family: str | None = None  # the current (official or usual) family name, folded whole
    family_names: frozenset[str] = field(default_factory=frozenset)  # every name and part
    given: str | None = None  # the first given name, folded
    given_names: frozenset[str] = field(default_factory=frozenset)  # every given name
    birth_date: date | None = None
    sex: str | None = None  # male | female | other; unknown is None
    postcodes: tuple[str, ...] = ()  # current first
    phones: frozenset[str] = field(default_factory=frozenset)


def _names(patient: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    names = [n for n in patient.get("name") or () if isinstance(n, Mapping)]
    rank = {"official": 0, "usual": 1, None: 2, "nickname": 3, "maiden": 4, "old": 5}
    return sorted(names, key=lambda n: rank.get(n.get("use"), 2))


def _first(values: Iterable[str]) -> str | None:
    return next(iter(values), None)


def from_patient(patient: Mapping[str, Any]) -> Demographics:
    names = _names(patient)
    family: str | None = None
    family_names: list[str] = []
    given: str | None = None
    given_names: list[str] = []
    for name in names:
        parts = name_parts(str(name.get("family") or ""))
        if parts and parts[0] not in _PLACEHOLDERS:
            family_names.extend(parts)
            if family is None and name.get("use") not in ("maiden", "old", "nickname"):
                family = parts[0]
        for text in name.get("given") or ():
            folded = fold(str(text)).replace(" ", "").replace("-", "")
            if folded and folded not in _PLACEHOLDERS:
                given_names.append(folded)
                if given is None and name.get("use") not in ("maiden", "old"):
                    given = folded
    birth: date | None = None
    raw_birth = patient.get("birthDate")
    if isinstance(raw_birth, str) and len(raw_birth) == 10:
        try:
            birth = date.fromisoformat(raw_birth)
        except ValueError:
            birth = None
    sex = patient.get("gender")
    addresses = [a for a in patient.get("address") or () if isinstance(a, Mapping)]
    # Current home addresses first: no end to their period, use home or unset.
    addresses.sort(
        key=lambda a: (
            bool((a.get("period") or {}).get("end")),
            a.get("use") not in (None, "home"),
        )
    )
    postcodes = [postcode(str(a.get("postalCode") or "")) for a in addresses]
    phones = {
        phone(str(t.get("value") or ""))
        for t in patient.get("telecom") or ()
        if isinstance(t, Mapping) and t.get("system") in ("phone", "sms")
    }
    return Demographics(
        nhs=best_nhs_number(patient),
        family=family or _first(family_names),
        family_names=frozenset(family_names),
        given=given,
        given_names=frozenset(given_names),
        birth_date=birth,
        sex=sex if sex in ("male", "female", "other") else None,
        postcodes=tuple(dict.fromkeys(p for p in postcodes if p)),
        phones=frozenset(p for p in phones if p),
    )

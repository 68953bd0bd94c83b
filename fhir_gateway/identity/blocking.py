"""Blocking keys: which existing records a new record is compared with at all.

Comparing every record with every other does not scale; comparing only records that share
a key does, if the keys are chosen so that a true match almost always shares at least one
despite the errors real feeds carry. Each key survives a different error:

- ``nhs``: the NHS number (survives every demographic change);
- ``dob``: the birth date (names misspelt or changed, address moved);
- ``dob`` of the day-month swapped date, looked up only (a transposed birth date);
- ``fy``: family-name sound (Metaphone, from jellyfish) and birth
  year (a wrong day or month);
- ``gy``: given-name sound and birth year with the postcode sector (a married name and
  a wrong day);
- ``pc``: postcode with the given name's initial (a badly wrong birth date).

Keys are strings; stored keys are what a record is filed under, probe keys what a new record
looks for (a superset: the swapped birth date is only a probe).
"""

from datetime import date

import jellyfish

from fhir_gateway.identity.demographics import Demographics, postcode_sector


def _sound(name: str) -> str:
    return jellyfish.metaphone(name)[:6] or name[:4]


def stored_keys(person: Demographics) -> frozenset[str]:
    keys: set[str] = set()
    if person.nhs is not None:
        keys.add(f"nhs:{person.nhs.value}")
    birth = person.birth_date
    if birth is not None:
        keys.add(f"dob:{birth.isoformat()}")
        for family in person.family_names:
            keys.add(f"fy:{_sound(family)}:{birth.year}")
        if person.given:
            for postcode in person.postcodes[:2]:
                keys.add(f"gy:{_sound(person.given)}:{birth.year}:{postcode_sector(postcode)}")
    if person.given:
        for postcode in person.postcodes[:3]:
            keys.add(f"pc:{postcode}:{person.given[0]}")
    return frozenset(keys)


def probe_keys(person: Demographics) -> frozenset[str]:
    keys = set(stored_keys(person))
    birth = person.birth_date
    if birth is not None and birth.day <= 12 and birth.day != birth.month:
        # The day becomes the month (1..12) and the month the day (1..12): always a date.
        keys.add(f"dob:{date(birth.year, birth.day, birth.month).isoformat()}")
    return frozenset(keys)

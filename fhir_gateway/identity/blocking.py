"""Blocking keys: which existing records a new record is compared with at all.

Comparing every record with every other does not scale; comparing only records that share
a key does, if the keys are chosen so that a true match almost always shares at least one
despite the errors real feeds carry. Each key survives a different error:

- ``nhs``: the NHS number (survives every demographic change);
- ``dob``: the birth date (names misspelt or changed, address moved);
- ``dob`` of the day-month swapped date, looked up only (a transposed birth date);
- ``fy``: family-name sound (Metaphone, from jellyfish) and birth
  year (a wrong day or month);
- ``fm``: family-name sound with birth year and month, and ``fg``: family-name sound with
  birth year and given-name sound: finer cuts of ``fy`` that take over when a common family
  name makes ``fy`` too large (a wrong day; a wrong month with the same first name);
- ``gy``: given-name sound and birth year with the postcode sector (a married name and
  a wrong day);
- ``pc``: postcode with the given name's initial (a badly wrong birth date).

Keys are strings; stored keys are what a record is filed under, probe keys what a new record
looks for (a superset: the swapped birth date is only a probe).

**Large blocks are not compared.** A key shared by more than ``MAX_BLOCK`` records (a
common family name with a birth year, a busy postcode) says little about any one of them and
costs a comparison with each; such a block is skipped, unless its key is the NHS number.
Every key has a finer sibling or an independent neighbour (``fm``/``fg`` for ``fy``, ``dob``
for ``pc``), so a true match usually still meets its record through another key. Matching
one record (``service``) and linking a population (``batch``) skip the same blocks.
"""

from datetime import date

import jellyfish

from fhir_gateway.identity.demographics import Demographics, postcode_sector

# A block larger than this (records filed under one key) is not compared, unless it is an NHS
# number's. At a million people a common family name and a birth year hold about 2,000
# records; each candidate costs about 20 microseconds to fetch and score, so the bound is
# what keeps matching one record within 20 ms. (Chosen on the tuning seed: 150 instead of
# 400 lost one true pair in 81,000 at 100,000 people.)
MAX_BLOCK = 150


def always_compared(key: str) -> bool:
    """Blocks under this key are compared whatever their size."""
    return key.startswith("nhs:")


def usable(key: str, size: int) -> bool:
    """Whether a block of ``size`` records under ``key`` is compared."""
    return size <= MAX_BLOCK or always_compared(key)


def _sound(name: str) -> str:
    return jellyfish.metaphone(name)[:6] or name[:4]


def stored_keys(person: Demographics) -> frozenset[str]:
    keys: set[str] = set()
    if person.nhs is not None:
        keys.add(f"nhs:{person.nhs.value}")
    birth = person.birth_date
    if birth is not None:
        keys.add(f"dob:{birth.isoformat()}")
        given = _sound(person.given) if person.given else None
        for family in person.family_names:
            sound = _sound(family)
            keys.add(f"fy:{sound}:{birth.year}")
            keys.add(f"fm:{sound}:{birth.year}-{birth.month:02d}")
            if given:
                keys.add(f"fg:{sound}:{birth.year}:{given}")
        if person.given:
            for postcode in person.postcodes[:2]:
                keys.add(f"gy:{_sound(person.given)}:{birth.year}:{postcode_sector(postcode)}")
    if person.given:
        for postcode in person.postcodes[:3]:
            keys.add(f"pc:{postcode}:{person.given[0]}")
    return frozenset(keys)


def probe_only_keys(person: Demographics) -> tuple[str, ...]:
    """The keys a record looks for but is not filed under (``probe_keys`` less
    ``stored_keys``): for a linker that already holds the stored ones."""
    birth = person.birth_date
    if birth is not None and birth.day <= 12 and birth.day != birth.month:
        # The day becomes the month (1..12) and the month the day (1..12): always a date.
        return (f"dob:{date(birth.year, birth.day, birth.month).isoformat()}",)
    return ()


def probe_keys(person: Demographics) -> frozenset[str]:
    return stored_keys(person).union(probe_only_keys(person))

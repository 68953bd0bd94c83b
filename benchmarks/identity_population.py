"""A synthetic population for judging identity, with the cases that make linkage hard.

FROZEN: the rates below were fixed on 2026-11-29; change them only with a new version number
(and re-report). Seed 1 is for tuning; seeds 2 and 3 are for reporting. Version 1 drew
family names from 66 names only (a fifth of everyone was a Smith), which made blocks
unrealistically large at 100,000 people; version 2 draws half of them from a long tail.

Each person has a GP record (always), a hospital record (50 %) and a social care record
(20 %). Per record, as English feeds differ:

- NHS number: GP present 97 % (verified 95 % of those); hospital present 90 % (verified 80 %);
  social care present 75 % (verified 50 %); 2 % of present numbers mistyped (check digit
  fails, so they are ignored);
- given name: a nickname in 8 % of hospital and social care records, one typing error in 3 %;
- family name: one typing error in 2 %; women aged 20-60 recorded under a married name in
  25 % of non-GP records, the GP keeping the maiden name as an "old" name half the time;
- birth date: day and month swapped 1 % (day <= 12), one digit wrong 1.5 %;
- address: moved (another postcode) in 12 % of non-GP records;
- phone: present 60 %, shared by the household.

Hard cases: 1 % of people have a twin (same birth date, family, address and phone, another
given name, their own NHS number); 0.3 % have a baby whose hospital record carries the
parent's NHS number (the baby's own GP record has its own number); every person shares a
household (address, phone, family name) with a partner 40 % of the time.
Names are drawn from skewed (Zipf-like) lists, so common names collide as in life; half of
family names come from a long tail of 5,670 generated names (England has hundreds of
thousands of surnames; the commonest, Smith, is about 1 % of people).

Version 3 (``population(people, seed, version=3)``), FROZEN on 2026-12-06 before any tuning
on it, is version 2 with three changes that let it reach 1,000,000 people and beyond (to
about 1,050,000) without becoming denser than version 2 is at 100,000; everything else
(every rate above, the names, the hard cases) is the same:

- NHS numbers: 15 % of people have **no NHS number anywhere** (none of their records
  carries one: people never registered, records from before numbers were traced, social
  care and old hospital systems); their twins have none either; a baby always has its own
  number, and a baby of a parent with no number has no number on its hospital record.
  Everyone else has a distinct number, still drawn only from the 999 test range (valid
  Modulus 11, never a real person's). The 909,091 valid numbers of that range are the
  limit: a population that would need more raises ``ValueError``.
- Postcodes: the region grows with the population, one postcode area per 100,000 people
  (LS, then BD, HX, HD, WF, YO, HG, DN, HU, DL, TS, NE: at most 12), each with the 29
  districts, 9 sectors and 20 units version 2 gives LS alone, so about 19 people share a
  postcode at any size (version 2 has 190 at 1,000,000). A move goes to another postcode
  of the same region.
- Phones: one number per household, distinct (drawn without replacement), of the form
  ``01632 NNNNNN``: 01632 is the code Ofcom keeps for drama and is not a subscriber area
  code. (Version 2's 10,000 numbers would be shared by 60 households each at 1,000,000.)
"""

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from nhs_number.validate import calculate_checksum

VERSION = "identity-population-2"
VERSIONS = {2: "identity-population-2", 3: "identity-population-3"}
# Version 3: the share of people with no NHS number on any record.
NO_NUMBER_SHARE = 0.15
AREAS = ["LS", "BD", "HX", "HD", "WF", "YO", "HG", "DN", "HU", "DL", "TS", "NE"]
PEOPLE_PER_AREA = 100_000
VALID_TEST_NUMBERS = 909_091  # valid (Modulus 11) numbers 999 000 000x to 999 999 999x
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
VERIFY_URL = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
)
VERIFY_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"

FAMILIES = [
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Wood",
    "Jackson",
    "Clarke",
    "Patel",
    "Khan",
    "Lewis",
    "James",
    "Phillips",
    "Mason",
    "Mitchell",
    "Rose",
    "Davis",
    "Rodriguez",
    "Cox",
    "Alexander",
    "Morgan",
    "Moore",
    "Mills",
    "King",
    "Anderson",
    "Harris",
    "Okafor",
    "Nowak",
    "Kowalski",
    "Singh",
    "Ahmed",
    "Ali",
    "Hussain",
    "Begum",
    "Shah",
    "Murphy",
    "Kelly",
    "Byrne",
    "Ryan",
    "Hughes",
    "Edwards",
    "Turner",
    "Hill",
    "Cooper",
    "Ward",
    "Morris",
    "Lee",
    "Baker",
    "Harrison",
    "Martin",
    "Young",
    "Allen",
]
FEMALE = [
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Mia",
    "Sophia",
    "Grace",
    "Lily",
    "Freya",
    "Emily",
    "Margaret",
    "Susan",
    "Patricia",
    "Elizabeth",
    "Catherine",
    "Jennifer",
    "Deborah",
    "Sarah",
    "Joan",
    "Dorothy",
    "Irene",
    "Aisha",
    "Fatima",
    "Priya",
    "Zofia",
]
MALE = [
    "Oliver",
    "George",
    "Noah",
    "Arthur",
    "Harry",
    "Leo",
    "Jack",
    "Charlie",
    "Oscar",
    "Jacob",
    "William",
    "Robert",
    "Michael",
    "David",
    "Richard",
    "Thomas",
    "Joseph",
    "Charles",
    "Christopher",
    "Daniel",
    "Edward",
    "Mohammed",
    "Arjun",
    "Piotr",
    "Kwame",
]
NICKNAMES = {
    "Margaret": "Peggy", "Elizabeth": "Liz", "Catherine": "Kate", "Jennifer": "Jenny",
    "Deborah": "Debbie", "Patricia": "Pat", "Susan": "Sue", "Dorothy": "Dot",
    "William": "Bill", "Robert": "Bob", "Michael": "Mike", "Richard": "Dick", "Thomas": "Tom",
    "Joseph": "Joe", "Charles": "Charlie", "Christopher": "Chris", "Daniel": "Dan",
    "Edward": "Ted", "David": "Dave", "Oliver": "Ollie", "Jacob": "Jake",
}  # fmt: skip
SECTORS = [f"LS{d} {s}" for d in range(1, 30) for s in range(1, 10)]


def _zipf(rng: random.Random, values: list[str]) -> str:
    weights = [1 / (rank + 1) for rank in range(len(values))]
    return rng.choices(values, weights)[0]


_ONSETS = [
    "B",
    "Br",
    "C",
    "Ch",
    "Cl",
    "D",
    "Dr",
    "F",
    "G",
    "Gr",
    "H",
    "J",
    "K",
    "L",
    "M",
    "N",
    "P",
    "Pr",
    "R",
    "S",
    "Sh",
    "St",
    "T",
    "Th",
    "W",
    "Wh",
    "Y",
]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "oo", "ou"]
_CODAS = [
    "ck",
    "ll",
    "n",
    "nd",
    "nt",
    "r",
    "rd",
    "rs",
    "s",
    "sh",
    "ss",
    "t",
    "th",
    "tt",
    "ton",
    "ley",
    "by",
    "ham",
    "well",
    "wood",
    "field",
]


def _family(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return _zipf(rng, FAMILIES)
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def _nhs(rng: random.Random, used: set[str]) -> str:
    if len(used) >= VALID_TEST_NUMBERS:
        raise ValueError(
            f"the 999 test range has only {VALID_TEST_NUMBERS:,} valid NHS numbers; "
            "this population would need more"
        )
    while True:
        base = f"999{rng.randrange(10**6):06d}"
        check = calculate_checksum(base)
        if isinstance(check, int) and 0 <= check <= 9 and base + str(check) not in used:
            used.add(base + str(check))
            return base + str(check)


def _sectors(people: int) -> list[str]:
    """Version 3: one postcode area per 100,000 people, each as version 2's LS."""
    areas = AREAS[: max(1, min(len(AREAS), -(-people // PEOPLE_PER_AREA)))]
    return [f"{a}{d} {s}" for a in areas for d in range(1, 30) for s in range(1, 10)]


def _phone_v3(rng: random.Random, used: set[int]) -> str:
    while True:
        n = rng.randrange(10**6)
        if n not in used:
            used.add(n)
            return f"01632 {n:06d}"


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 3:
        return text
    i = rng.randrange(1, len(text))
    letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
    return text[:i] + letter + text[i + 1 :] if rng.random() < 0.5 else text[:i] + text[i + 1 :]


def _mistype_nhs(rng: random.Random, number: str) -> str:
    digits = list(number)
    i = rng.randrange(3, 10)
    digits[i] = str((int(digits[i]) + 1 + rng.randrange(8)) % 10)
    return "".join(digits)


def _dob_error(rng: random.Random, born: date) -> date:
    if born.day <= 12 and born.day != born.month and rng.random() < 0.4:
        return date(born.year, born.day, born.month)
    for _ in range(10):
        text = born.strftime("%Y%m%d")
        i = rng.randrange(2, 8)
        candidate = text[:i] + str(rng.randrange(10)) + text[i + 1 :]
        try:
            wrong = date(int(candidate[:4]), int(candidate[4:6]), int(candidate[6:]))
        except ValueError:
            continue
        if wrong != born:
            return wrong
    return born


def _patient(
    pid: str,
    source: str,
    person: dict[str, Any],
    rng: random.Random,
    *,
    gp: bool,
    sectors: list[str] = SECTORS,
) -> dict[str, Any]:
    present, verified = {"gp": (0.97, 0.95), "rh": (0.90, 0.80), "asc": (0.75, 0.50)}[source]
    identifiers: list[dict[str, Any]] = []
    number = person.get("nhs_override", {}).get(source, person["nhs"])
    # (Version 2 always has a number, so its draws are unchanged.)
    if number is not None and rng.random() < present:
        value = _mistype_nhs(rng, number) if rng.random() < 0.02 else number
        identifier: dict[str, Any] = {"system": NHS_SYSTEM, "value": value}
        if rng.random() < verified:
            identifier["extension"] = [
                {
                    "url": VERIFY_URL,
                    "valueCodeableConcept": {"coding": [{"system": VERIFY_SYSTEM, "code": "01"}]},
                }
            ]
        identifiers.append(identifier)
    given = person["given"]
    if not gp and given in NICKNAMES and rng.random() < 0.08:
        given = NICKNAMES[given]
    elif rng.random() < 0.03:
        given = _typo(rng, given)
    family = person["family"]
    names: list[dict[str, Any]] = []
    married = person.get("married")
    if married and not gp and rng.random() < 0.25:
        family = married
    elif rng.random() < 0.02:
        family = _typo(rng, family)
    names.append({"use": "official", "family": family, "given": [given]})
    if married and gp and rng.random() < 0.5:
        names[0]["family"] = married
        names.append({"use": "old", "family": person["family"], "given": [given]})
    born = person["born"]
    roll = rng.random()
    if roll < 0.025:
        born = _dob_error(rng, born)
    postcode = person["postcode"]
    if not gp and rng.random() < 0.12:
        postcode = rng.choice(sectors) + rng.choice("ABDEFGHJLNPQRSTUWXYZ") * 2
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"source": f"urn:carejoin:source:{source}"},
        **({"identifier": identifiers} if identifiers else {}),  # FHIR has no empty arrays
        "name": names,
        "gender": person["gender"],
        "birthDate": born.isoformat(),
        "address": [{"use": "home", "postalCode": postcode}],
    }
    if person.get("phone") and rng.random() < 0.6:
        resource["telecom"] = [{"system": "phone", "value": person["phone"]}]
    return resource


def population(people: int, seed: int, *, version: int = 2) -> Iterator[tuple[str, dict[str, Any]]]:
    """(true person key, Patient) for every source record of ``people`` people."""
    if version not in VERSIONS:
        raise ValueError(f"no identity population version {version}")
    v3 = version == 3
    rng = random.Random(f"{VERSIONS[version]}:{seed}")
    used: set[str] = set()
    phones: set[int] = set()
    sectors = _sectors(people) if v3 else SECTORS
    today = date(2026, 11, 1)
    persons: list[dict[str, Any]] = []
    for n in range(people):
        female = rng.random() < 0.52
        born = today - timedelta(days=rng.randrange(365 * 18, 365 * 95))
        family = _family(rng)
        household = persons[-1] if persons and rng.random() < 0.4 else None
        numbered = not v3 or rng.random() >= NO_NUMBER_SHARE
        person: dict[str, Any] = {
            "key": f"p{n}",
            "gender": "female" if female else "male",
            "given": _zipf(rng, FEMALE if female else MALE),
            "family": household["family"] if household else family,
            "born": born,
            "nhs": _nhs(rng, used) if numbered else None,
            "postcode": household["postcode"]
            if household
            else rng.choice(sectors) + rng.choice("ABDEFGHJLNPQRSTUWXYZ") * 2,
            "phone": household["phone"]
            if household
            else _phone_v3(rng, phones)
            if v3
            else f"0113 496 {rng.randrange(10000):04d}",
        }
        age = (today - born).days // 365
        if female and 20 <= age <= 60 and rng.random() < 0.3:
            person["married"] = _family(rng)
        persons.append(person)
        if rng.random() < 0.01:  # a twin
            twin = dict(person, key=f"p{n}t", nhs=_nhs(rng, used) if numbered else None)
            names = FEMALE if female else MALE
            twin["given"] = rng.choice([g for g in names if g != person["given"]])
            twin.pop("married", None)
            persons.append(twin)
        if rng.random() < 0.003:  # a baby carrying this parent's number at the hospital
            baby = {
                "key": f"p{n}b",
                "gender": rng.choice(["female", "male"]),
                "given": _zipf(rng, FEMALE + MALE),
                "family": person["family"],
                "born": today - timedelta(days=rng.randrange(1, 40)),
                "nhs": _nhs(rng, used),
                "postcode": person["postcode"],
                "phone": person["phone"],
                "nhs_override": {"rh": person["nhs"]},
                "baby": True,
            }
            persons.append(baby)
    for person in persons:
        key = person["key"]
        yield key, _patient(f"gp-{key}", "gp", person, rng, gp=True, sectors=sectors)
        if person.get("baby") or rng.random() < 0.5:
            yield key, _patient(f"rh-{key}", "rh", person, rng, gp=False, sectors=sectors)
        if not person.get("baby") and rng.random() < 0.2:
            yield key, _patient(f"asc-{key}", "asc", person, rng, gp=False, sectors=sectors)

"""A synthetic locality for demonstrations and benchmarks: seeded, deterministic, fictional.

One integrated-care locality: eight GP practices, one hospital trust and one council's adult
social care service. Each source system holds its own record of a person, as in life: the GP
record is the fullest (problems in SNOMED CT, medicines in dm+d, allergies, observations), the
hospital holds admissions, A&E attendances and discharge diagnoses (ICD-10), and the council
holds social care assessments and services for the people it supports. Records overlap but
do not agree perfectly: some hospital and council records lack an NHS number, a few carry a
mistyped one, and names are sometimes spelt differently. That is what the master patient index
has to cope with.

Every person, name, address and number here is made up. NHS numbers are valid (Modulus 11)
numbers from the range the NHS reserves for testing (999 000 0000 - 999 999 9999); ODS-style
organisation codes start with ``Z9`` so that none is a real organisation's code.

Person ``n`` is generated from the seed and ``n`` alone, so any slice ``[start, stop)`` can be
produced independently (in parallel, or beyond the loaded population for ingest benchmarks).
"""

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from typing import Any

from nhs_number.validate import calculate_checksum

from fhir_gateway.feeds.hl7v2 import (
    ADMISSION_METHOD_EXTENSION,
    ADMISSION_METHOD_SYSTEM,
    ADMISSION_METHODS,
)

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
SDS_SYSTEM = "https://fhir.nhs.uk/Id/sds-user-id"
SNOMED = "http://snomed.info/sct"
DMD = "https://dmd.nhs.uk"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ASC_SERVICE_SYSTEM = "https://fhir.carejoin.example/CodeSystem/asc-service"
ASC_ASSESSMENT_SYSTEM = "https://fhir.carejoin.example/CodeSystem/asc-assessment"

REFERENCE_DATE = date(2026, 11, 1)  # "today" in the synthetic world, fixed for determinism
SOURCE_PREFIX = "urn:carejoin:source:"


@dataclass(frozen=True, slots=True)
class Organisation:
    ods: str
    name: str
    kind: str  # gp | hospital | council
    town: str
    postcode: str

    @property
    def resource_id(self) -> str:
        return f"org-{self.ods}"

    @property
    def source(self) -> str:
        return SOURCE_PREFIX + self.ods


PRACTICES = (
    Organisation("Z90001", "Millbrook Surgery", "gp", "Millbrook", "ZZ1 1AA"),
    Organisation("Z90002", "Riverside Medical Centre", "gp", "Millbrook", "ZZ1 2AB"),
    Organisation("Z90003", "Oakfield Health Centre", "gp", "Oakfield", "ZZ2 3BC"),
    Organisation("Z90004", "Castle Street Practice", "gp", "Castlebury", "ZZ3 4CD"),
    Organisation("Z90005", "Fenwick Lane Surgery", "gp", "Fenwick", "ZZ4 5DE"),
    Organisation("Z90006", "Harbour View Practice", "gp", "Saltmouth", "ZZ5 6EF"),
    Organisation("Z90007", "Greenhill Family Practice", "gp", "Greenhill", "ZZ6 7FG"),
    Organisation("Z90008", "Westgate Medical Group", "gp", "Castlebury", "ZZ3 8GH"),
)
HOSPITAL = Organisation(
    "Z9H", "Millbrook and District Hospitals NHS Trust", "hospital", "Millbrook", "ZZ1 9HJ"
)
COUNCIL = Organisation(
    "Z9C01", "Millbrookshire Council Adult Social Care", "council", "Millbrook", "ZZ1 5KL"
)
ORGANISATIONS = (*PRACTICES, HOSPITAL, COUNCIL)
GPS_PER_PRACTICE = 4

MALE_NAMES = (
    "John",
    "David",
    "Michael",
    "Peter",
    "Robert",
    "James",
    "William",
    "Brian",
    "Alan",
    "Keith",
    "Stephen",
    "Richard",
    "Thomas",
    "George",
    "Arthur",
    "Harold",
    "Colin",
    "Derek",
    "Graham",
    "Kenneth",
    "Mohammed",
    "Ravi",
    "Tomasz",
    "Kwame",
)
FEMALE_NAMES = (
    "Margaret",
    "Susan",
    "Patricia",
    "Elizabeth",
    "Mary",
    "Jean",
    "Barbara",
    "Linda",
    "Christine",
    "Janet",
    "Sandra",
    "Carol",
    "Anne",
    "Joan",
    "Dorothy",
    "Sheila",
    "Pauline",
    "Brenda",
    "Eileen",
    "Irene",
    "Aisha",
    "Priya",
    "Agnieszka",
    "Zoë",
)
NICKNAMES = {
    "William": "Bill",
    "Robert": "Bob",
    "Margaret": "Peggy",
    "Elizabeth": "Liz",
    "Michael": "Mike",
    "Patricia": "Pat",
    "Kenneth": "Ken",
    "Susan": "Sue",
}
SURNAMES = (
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
    "Hughes",
    "Edwards",
    "O'Brien",
    "Lewis",
    "Harris",
    "Martin",
    "Cooper",
    "Ward",
    "Morris",
    "Turner",
    "Kowalski",
    "Mensah",
    "Bennett",
    "Ashworth",
    "Brontë",
    "Fairbairn",
    "Pickering",
    "Nuttall",
)
STREETS = (
    "Church Lane",
    "Mill Road",
    "Station Road",
    "Victoria Street",
    "Park Avenue",
    "The Crescent",
    "Orchard Close",
    "Meadow Way",
    "Chapel Street",
    "Queens Road",
)

# Long-term conditions (SNOMED CT), with the medicines (dm+d VMPs) that commonly go with them.
# The codes are for demonstration; check them against the current releases before any use
# beyond synthetic data.
CONDITIONS = (
    ("38341003", "Hypertensive disorder", 0.35, ("319283006", "Amlodipine 5mg tablets")),
    ("44054006", "Type 2 diabetes mellitus", 0.15, ("325278007", "Metformin 500mg tablets")),
    (
        "13645005",
        "Chronic obstructive lung disease",
        0.08,
        ("39113611000001102", "Salbutamol 100micrograms/dose inhaler CFC free"),
    ),
    ("84114007", "Heart failure", 0.06, ("317972000", "Furosemide 40mg tablets")),
    ("49436004", "Atrial fibrillation", 0.08, None),
    ("709044004", "Chronic kidney disease", 0.10, None),
    ("52448006", "Dementia", 0.05, None),
    (
        "195967001",
        "Asthma",
        0.10,
        ("39113611000001102", "Salbutamol 100micrograms/dose inhaler CFC free"),
    ),
    ("35489007", "Depressive disorder", 0.12, None),
    ("396275006", "Osteoarthritis", 0.20, ("322236009", "Paracetamol 500mg tablets")),
    ("414545008", "Ischaemic heart disease", 0.09, ("320000009", "Simvastatin 40mg tablets")),
    ("64859006", "Osteoporosis", 0.07, None),
)
ALLERGIES = (
    ("764146007", "Penicillin"),
    ("387207008", "Ibuprofen"),
    ("256349002", "Peanut"),
    ("111088007", "Latex"),
)
# Hospital discharge diagnoses (ICD-10); several are Hospital Frailty Risk Score categories.
DIAGNOSES = (
    ("J18.9", "Pneumonia, unspecified"),
    ("N39.0", "Urinary tract infection, site not specified"),
    ("W19", "Unspecified fall"),
    ("S72.0", "Fracture of neck of femur"),
    ("F05.9", "Delirium, unspecified"),
    ("I50.0", "Congestive heart failure"),
    ("J44.1", "Chronic obstructive pulmonary disease with acute exacerbation"),
    ("R55", "Syncope and collapse"),
    ("E86", "Volume depletion"),
    ("I63.9", "Cerebral infarction, unspecified"),
    ("L89.1", "Stage II decubitus ulcer"),
    ("R26.8", "Other abnormalities of gait and mobility"),
)
ASC_SERVICES = (
    ("home-care", "Home care (domiciliary support)"),
    ("day-centre", "Day opportunities"),
    ("meals", "Meals service"),
    ("telecare", "Telecare and community alarm"),
    ("reablement", "Reablement"),
    ("respite", "Carer respite"),
)
# Observations a GP record holds over the years: (SNOMED code, display, LOINC, unit, ucum, mean, sd)
VITALS = (
    ("271649006", "Systolic blood pressure", "8480-6", "mmHg", "mm[Hg]", 138, 16),
    ("271650006", "Diastolic blood pressure", "8462-4", "mmHg", "mm[Hg]", 82, 9),
    ("27113001", "Body weight", "29463-7", "kg", "kg", 78, 15),
    ("364075005", "Heart rate", "8867-4", "beats/minute", "/min", 74, 10),
)


@dataclass(frozen=True, slots=True)
class Locality:
    seed: int
    people: int
    organisations: tuple[Organisation, ...]
    organizations_bundle: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StaffMember:
    """A member of staff beyond the GPs, so that every demo persona is a real Practitioner."""

    practitioner_id: str
    organisation: Organisation
    given: str
    family: str
    title: str  # what they do, for people to read


STAFF = (
    StaffMember("hosp-doctor-1", HOSPITAL, "Priya", "Raman", "Consultant geriatrician"),
    StaffMember("hosp-nurse-1", HOSPITAL, "Tom", "Ellery", "Ward nurse"),
    StaffMember("asc-sw-1", COUNCIL, "Grace", "Adeyemi", "Social worker"),
    StaffMember("coord-1", COUNCIL, "Sam", "Whitlow", "Care coordinator"),
    StaffMember("privacy-1", HOSPITAL, "Helen", "Marsh", "Privacy officer"),
    StaffMember("steward-1", HOSPITAL, "Omar", "Farah", "Data quality steward"),
    # The integrated neighbourhood teams (hosted by the council; see carejoin/data/demo_teams.json)
    StaffMember("coord-2", COUNCIL, "Aisha", "Begum", "Care coordinator (community nursing)"),
    StaffMember("coord-3", COUNCIL, "Daniel", "Okafor", "Care coordinator (mental health)"),
    StaffMember("coord-4", COUNCIL, "Megan", "Lloyd", "Care coordinator (community nursing)"),
    StaffMember("coord-5", COUNCIL, "Tariq", "Hussain", "Care coordinator (social work)"),
    StaffMember("coord-6", COUNCIL, "Ellen", "Price", "Care coordinator (community nursing)"),
    StaffMember("coord-7", COUNCIL, "Joseph", "Mensah", "Care coordinator (social work)"),
    StaffMember("lead-1", COUNCIL, "Ruth", "Campbell", "Integrated team lead"),
    StaffMember("lead-2", COUNCIL, "Imran", "Sheikh", "Integrated team lead"),
    StaffMember("lead-3", COUNCIL, "Claire", "Doyle", "Integrated team lead"),
    StaffMember("admin-1", COUNCIL, "Neil", "Barker", "Partnership systems administrator"),
)


def gp_practitioner_id(org: Organisation, index: int) -> str:
    return _practitioner_id(org, index)


def first_person_patient_id(seed: int = 2026) -> str:
    """The GP Patient id of the first synthetic person (the demo's 'patient' persona)."""
    person = _Person(0, seed)
    return f"gp{person.practice.ods[-1]}-{person.key}"


def generate_locality(*, people: int, seed: int = 2026) -> Locality:
    """The organisations and practitioners of the locality, as one transaction bundle."""
    entries: list[dict[str, Any]] = []
    for org in ORGANISATIONS:
        entries.append(_put(_organisation(org)))
    for org in PRACTICES:
        for gp in range(GPS_PER_PRACTICE):
            entries.append(_put(_practitioner(org, gp, seed)))
    for member in STAFF:
        entries.append(_put(_staff_practitioner(member)))
    return Locality(
        seed=seed,
        people=people,
        organisations=ORGANISATIONS,
        organizations_bundle={"resourceType": "Bundle", "type": "transaction", "entry": entries},
    )


def person_bundles(
    *, people: int, seed: int = 2026, start: int = 0, stop: int | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(source ODS code, transaction bundle) for each source that holds a record of each person
    ``n`` in ``[start, stop)`` (``stop`` defaults to ``people``): the GP practice always, the
    hospital and the council for some. Bundles use PUT with source-prefixed ids, so loading
    them twice changes nothing."""
    for n in range(start, people if stop is None else stop):
        person = _Person(n, seed)
        yield person.practice.ods, _transaction(person.gp_record())
        if person.in_hospital:
            yield HOSPITAL.ods, _transaction(person.hospital_record())
        if person.in_social_care:
            yield COUNCIL.ods, _transaction(person.council_record())


def _transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [_put(r) for r in resources]}


def _put(resource: dict[str, Any]) -> dict[str, Any]:
    url = f"{resource['resourceType']}/{resource['id']}"
    return {"fullUrl": url, "resource": resource, "request": {"method": "PUT", "url": url}}


def _meta(source: Organisation) -> dict[str, Any]:
    return {"source": source.source}


def _organisation(org: Organisation) -> dict[str, Any]:
    type_code = {
        "gp": ("prov", "Healthcare Provider"),
        "hospital": ("prov", "Healthcare Provider"),
        "council": ("govt", "Government"),
    }[org.kind]
    return {
        "resourceType": "Organization",
        "id": org.resource_id,
        "meta": _meta(org),
        "identifier": [{"system": ODS_SYSTEM, "value": org.ods}],
        "active": True,
        "type": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                        "code": type_code[0],
                        "display": type_code[1],
                    }
                ]
            }
        ],
        "name": org.name,
        "address": [
            {
                "line": ["1 High Street"],
                "city": org.town,
                "postalCode": org.postcode,
                "country": "GB",
            }
        ],
    }


def _practitioner(org: Organisation, index: int, seed: int) -> dict[str, Any]:
    rng = random.Random(f"{seed}:gp:{org.ods}:{index}")
    female = rng.random() < 0.55
    return {
        "resourceType": "Practitioner",
        "id": _practitioner_id(org, index),
        "meta": _meta(org),
        "identifier": [{"system": SDS_SYSTEM, "value": f"9{rng.randrange(10**10, 10**11)}"}],
        "active": True,
        "name": [
            {
                "family": rng.choice(SURNAMES),
                "given": [rng.choice(FEMALE_NAMES if female else MALE_NAMES)],
                "prefix": ["Dr"],
            }
        ],
        "gender": "female" if female else "male",
    }


def _staff_practitioner(member: StaffMember) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": member.practitioner_id,
        "meta": _meta(member.organisation),
        "active": True,
        "name": [{"family": member.family, "given": [member.given], "text": member.title}],
    }


def _practitioner_id(org: Organisation, index: int) -> str:
    return f"gp-{org.ods}-{index}"


@cache
def _valid_nhs_suffixes() -> tuple[int, ...]:
    """Every 6-digit n for which 999nnnnnn has a valid Modulus 11 check digit."""
    valid = []
    for n in range(1_000_000):
        check = calculate_checksum(f"999{n:06d}")
        if check is not None and check != 10:
            valid.append(n)
    return tuple(valid)


def _admission_method(code: str) -> dict[str, Any]:
    """UK Core's admission method extension and the matching Encounter.priority, as the
    hospital's HL7 v2 feed maps them (``fhir_gateway.feeds.hl7v2``)."""
    emergency = code.startswith("2")
    return {
        "extension": [
            {
                "url": ADMISSION_METHOD_EXTENSION,
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": ADMISSION_METHOD_SYSTEM,
                            "code": code,
                            "display": ADMISSION_METHODS[code],
                        }
                    ]
                },
            }
        ],
        "priority": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActPriority",
                    "code": "EM" if emergency else "EL",
                }
            ]
        },
    }


def nhs_number_for(index: int, seed: int) -> str:
    """A valid test-range NHS number, unique for each person index below ~900,000."""
    valid = _valid_nhs_suffixes()
    n = valid[(index * 7919 + seed) % len(valid)]  # 7919 is prime and does not divide len
    digits = f"999{n:06d}"
    return digits + str(calculate_checksum(digits))


def mistype(number: str, rng: random.Random) -> str:
    """A realistic keying error: two adjacent digits after the 999 swapped (or one changed)."""
    digits = list(number)
    i = rng.randrange(3, 9)
    if digits[i] != digits[i + 1]:
        digits[i], digits[i + 1] = digits[i + 1], digits[i]
    else:
        digits[i] = str((int(digits[i]) + 1) % 10)
    return "".join(digits)


class _Person:
    """Everything about one synthetic person, derived from (seed, n) alone."""

    def __init__(self, n: int, seed: int) -> None:
        rng = random.Random(f"{seed}:person:{n}")
        self.n = n
        self.rng = rng
        self.seed = seed
        self.female = rng.random() < 0.53
        age = min(102, max(18, int(rng.triangular(18, 100, 78))))
        self.birth = REFERENCE_DATE - timedelta(days=age * 365 + rng.randrange(365))
        self.age = age
        self.given = rng.choice(FEMALE_NAMES if self.female else MALE_NAMES)
        self.family = rng.choice(SURNAMES)
        self.nhs = nhs_number_for(n, seed)
        self.practice = PRACTICES[rng.randrange(len(PRACTICES))]
        self.gp_index = rng.randrange(GPS_PER_PRACTICE)
        self.house = rng.randrange(1, 120)
        self.street = rng.choice(STREETS)
        self.postcode = f"{self.practice.postcode[:3]} {rng.randrange(1, 9)}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
        self.phone = f"07700 9{rng.randrange(0, 100000):05d}"  # Ofcom drama range
        frailty = max(0.0, (age - 60) / 40)
        self.conditions = [c for c in CONDITIONS if rng.random() < c[2] * (0.5 + frailty)]
        self.in_hospital = rng.random() < 0.15 + 0.35 * frailty
        self.in_social_care = age >= 65 and rng.random() < 0.05 + 0.3 * frailty
        self.deceased = rng.random() < 0.01

    @property
    def key(self) -> str:
        return f"{self.n:07d}"

    def _ref(self, prefix: str) -> dict[str, str]:
        return {"reference": f"Patient/{prefix}-{self.key}"}

    def _patient(
        self,
        source: Organisation,
        prefix: str,
        local_system: str,
        *,
        nhs: str | None,
        given: str,
        family: str,
    ) -> dict[str, Any]:
        identifiers: list[dict[str, Any]] = []
        if nhs is not None:
            identifiers.append({"system": NHS_NUMBER_SYSTEM, "value": nhs})
        identifiers.append({"system": local_system, "value": f"{prefix.upper()}{self.key}"})
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "id": f"{prefix}-{self.key}",
            "meta": _meta(source),
            "identifier": identifiers,
            "active": True,
            "name": [{"use": "official", "family": family, "given": [given]}],
            "gender": "female" if self.female else "male",
            "birthDate": self.birth.isoformat(),
            "address": [
                {
                    "use": "home",
                    "line": [f"{self.house} {self.street}"],
                    "city": self.practice.town,
                    "postalCode": self.postcode,
                    "country": "GB",
                }
            ],
        }
        if self.deceased:
            patient["deceasedBoolean"] = True
        return patient

    def _date(self, years_back: float) -> date:
        return REFERENCE_DATE - timedelta(days=self.rng.randrange(1, max(2, int(365 * years_back))))

    # -- GP practice -------------------------------------------------------------------
    def gp_record(self) -> list[dict[str, Any]]:
        org = self.practice
        prefix = f"gp{org.ods[-1]}"
        patient = self._patient(
            org,
            prefix,
            f"https://fhir.carejoin.example/Id/{org.ods}/patient",
            nhs=self.nhs,
            given=self.given,
            family=self.family,
        )
        patient["telecom"] = [{"system": "phone", "value": self.phone, "use": "mobile"}]
        gp_ref = {"reference": f"Practitioner/{_practitioner_id(org, self.gp_index)}"}
        patient["generalPractitioner"] = [gp_ref]
        patient["managingOrganization"] = {"reference": f"Organization/{org.resource_id}"}
        out = [patient]
        subject = self._ref(prefix)
        meta = _meta(org)
        for i, (code, display, _, medicine) in enumerate(self.conditions):
            onset = self._date(15)
            out.append(
                {
                    "resourceType": "Condition",
                    "id": f"{prefix}-{self.key}-c{i}",
                    "meta": meta,
                    "clinicalStatus": {
                        "coding": [{"system": CONDITION_CLINICAL, "code": "active"}]
                    },
                    "category": [
                        {"coding": [{"system": CONDITION_CATEGORY, "code": "problem-list-item"}]}
                    ],
                    "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
                    "subject": subject,
                    "onsetDateTime": onset.isoformat(),
                    "recordedDate": onset.isoformat(),
                    "asserter": gp_ref,
                }
            )
            if medicine is not None:
                out.append(
                    {
                        "resourceType": "MedicationStatement",
                        "id": f"{prefix}-{self.key}-m{i}",
                        "meta": meta,
                        "status": "active",
                        "medicationCodeableConcept": {
                            "coding": [{"system": DMD, "code": medicine[0], "display": medicine[1]}]
                        },
                        "subject": subject,
                        "effectivePeriod": {"start": onset.isoformat()},
                        "dateAsserted": onset.isoformat(),
                        "reasonReference": [{"reference": f"Condition/{prefix}-{self.key}-c{i}"}],
                        "dosage": [{"text": "As directed"}],
                    }
                )
        if self.rng.random() < 0.12:
            substance = self.rng.choice(ALLERGIES)
            out.append(
                {
                    "resourceType": "AllergyIntolerance",
                    "id": f"{prefix}-{self.key}-a0",
                    "meta": meta,
                    "clinicalStatus": {"coding": [{"system": ALLERGY_CLINICAL, "code": "active"}]},
                    "code": {
                        "coding": [
                            {"system": SNOMED, "code": substance[0], "display": substance[1]}
                        ]
                    },
                    "patient": subject,
                    "recordedDate": self._date(20).isoformat(),
                }
            )
        visits = 5 + self.rng.randrange(0, 4) + 2 * len(self.conditions)
        for v in range(visits):
            when = self._date(5)
            encounter_id = f"{prefix}-{self.key}-e{v}"
            out.append(
                {
                    "resourceType": "Encounter",
                    "id": encounter_id,
                    "meta": meta,
                    "status": "finished",
                    "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
                    "type": [
                        {
                            "coding": [
                                {
                                    "system": SNOMED,
                                    "code": "185317003",
                                    "display": "Telephone encounter",
                                }
                            ]
                        }
                        if v % 3 == 0
                        else {"text": "Face to face consultation"}
                    ],
                    "subject": subject,
                    "participant": [{"individual": gp_ref}],
                    "period": {
                        "start": f"{when.isoformat()}T09:{10 + v % 50:02d}:00Z",
                        "end": f"{when.isoformat()}T09:{20 + v % 40:02d}:00Z",
                    },
                    "serviceProvider": {"reference": f"Organization/{org.resource_id}"},
                }
            )
            if v % 3 != 0:  # measurements are taken face to face
                for snomed, display, loinc, unit, ucum, mean, sd in VITALS[: 2 if v % 2 else 4]:
                    value = round(self.rng.gauss(mean, sd))
                    out.append(
                        {
                            "resourceType": "Observation",
                            "id": f"{prefix}-{self.key}-o{v}-{snomed}",
                            "meta": meta,
                            "status": "final",
                            "category": [
                                {
                                    "coding": [
                                        {"system": OBSERVATION_CATEGORY, "code": "vital-signs"}
                                    ]
                                }
                            ],
                            "code": {
                                "coding": [
                                    {"system": SNOMED, "code": snomed, "display": display},
                                    {"system": LOINC, "code": loinc},
                                ]
                            },
                            "subject": subject,
                            "encounter": {"reference": f"Encounter/{encounter_id}"},
                            "effectiveDateTime": f"{when.isoformat()}T09:15:00Z",
                            "valueQuantity": {
                                "value": value,
                                "unit": unit,
                                "system": UCUM,
                                "code": ucum,
                            },
                        }
                    )
        return out

    # -- Hospital ----------------------------------------------------------------------
    def hospital_record(self) -> list[dict[str, Any]]:
        prefix = "rh"
        rng = self.rng
        nhs: str | None = self.nhs
        roll = rng.random()
        if roll < 0.06:
            nhs = None
        elif roll < 0.09:
            nhs = mistype(self.nhs, rng)
        given = NICKNAMES.get(self.given, self.given) if rng.random() < 0.1 else self.given
        family = self.family if rng.random() > 0.03 else self.family[:-1] + self.family[-1] * 2
        out = [
            self._patient(
                HOSPITAL,
                prefix,
                "https://fhir.carejoin.example/Id/Z9H/mrn",
                nhs=nhs,
                given=given,
                family=family,
            )
        ]
        subject = self._ref(prefix)
        meta = _meta(HOSPITAL)
        stays = 1 + (rng.random() < 0.4) + (rng.random() < 0.15)
        for s in range(stays):
            emergency_only = rng.random() < 0.45
            arrived = self._date(3)
            days = 0 if emergency_only else max(1, int(rng.expovariate(1 / 6)))
            encounter_id = f"{prefix}-{self.key}-e{s}"
            # NHS Data Dictionary admission method: mostly emergency (via A&E or the GP),
            # some elective (from the waiting list, booked).
            method = rng.choices(["21", "22", "11", "12"], [55, 15, 20, 10])[0]
            admission_text = (
                "Emergency admission" if method.startswith("2") else "Elective admission"
            )
            out.append(
                {
                    "resourceType": "Encounter",
                    "id": encounter_id,
                    "meta": meta,
                    "status": "finished",
                    "class": {
                        "system": ACT_CODE,
                        "code": "EMER" if emergency_only else "IMP",
                        "display": "emergency" if emergency_only else "inpatient encounter",
                    },
                    "type": [{"text": "A&E attendance" if emergency_only else admission_text}],
                    **({} if emergency_only else _admission_method(method)),
                    "subject": subject,
                    "period": {
                        "start": f"{arrived.isoformat()}T14:00:00Z",
                        "end": f"{(arrived + timedelta(days=days)).isoformat()}T{18 if days == 0 else 11}:30:00Z",
                    },
                    "serviceProvider": {"reference": f"Organization/{HOSPITAL.resource_id}"},
                    **(
                        {}
                        if emergency_only
                        else {"hospitalization": {"dischargeDisposition": {"text": "Home"}}}
                    ),
                }
            )
            for d in range(1 if emergency_only else 1 + rng.randrange(3)):
                code, display = rng.choice(DIAGNOSES)
                out.append(
                    {
                        "resourceType": "Condition",
                        "id": f"{prefix}-{self.key}-e{s}-d{d}",
                        "meta": meta,
                        "clinicalStatus": {
                            "coding": [{"system": CONDITION_CLINICAL, "code": "resolved"}]
                        },
                        "category": [
                            {
                                "coding": [
                                    {"system": CONDITION_CATEGORY, "code": "encounter-diagnosis"}
                                ]
                            }
                        ],
                        "code": {"coding": [{"system": ICD10, "code": code, "display": display}]},
                        "subject": subject,
                        "encounter": {"reference": f"Encounter/{encounter_id}"},
                        "recordedDate": (arrived + timedelta(days=days)).isoformat(),
                    }
                )
        return out

    # -- Council adult social care -----------------------------------------------------
    def council_record(self) -> list[dict[str, Any]]:
        prefix = "asc"
        rng = self.rng
        nhs: str | None = self.nhs if rng.random() > 0.2 else None
        out = [
            self._patient(
                COUNCIL,
                prefix,
                "https://fhir.carejoin.example/Id/Z9C01/person",
                nhs=nhs,
                given=self.given,
                family=self.family,
            )
        ]
        subject = self._ref(prefix)
        meta = _meta(COUNCIL)
        started = self._date(4)
        episode_id = f"{prefix}-{self.key}-ep"
        out.append(
            {
                "resourceType": "EpisodeOfCare",
                "id": episode_id,
                "meta": meta,
                "status": "active",
                "type": [
                    {
                        "coding": [
                            {
                                "system": ASC_SERVICE_SYSTEM,
                                "code": "asc",
                                "display": "Adult social care",
                            }
                        ]
                    }
                ],
                "patient": subject,
                "managingOrganization": {"reference": f"Organization/{COUNCIL.resource_id}"},
                "period": {"start": started.isoformat()},
            }
        )
        out.append(
            {
                "resourceType": "Encounter",
                "id": f"{prefix}-{self.key}-assess",
                "meta": meta,
                "status": "finished",
                "class": {"system": ACT_CODE, "code": "HH", "display": "home health"},
                "type": [
                    {
                        "coding": [
                            {
                                "system": ASC_ASSESSMENT_SYSTEM,
                                "code": "care-act-assessment",
                                "display": "Care Act 2014 needs assessment",
                            }
                        ]
                    }
                ],
                "subject": subject,
                "episodeOfCare": [{"reference": f"EpisodeOfCare/{episode_id}"}],
                "period": {"start": started.isoformat(), "end": started.isoformat()},
            }
        )
        for i, (code, display) in enumerate(rng.sample(ASC_SERVICES, 1 + rng.randrange(2))):
            out.append(
                {
                    "resourceType": "ServiceRequest",
                    "id": f"{prefix}-{self.key}-s{i}",
                    "meta": meta,
                    "status": "active",
                    "intent": "order",
                    "code": {
                        "coding": [{"system": ASC_SERVICE_SYSTEM, "code": code, "display": display}]
                    },
                    "subject": subject,
                    "authoredOn": started.isoformat(),
                    "requester": {"reference": f"Organization/{COUNCIL.resource_id}"},
                }
            )
        return out

"""A synthetic shared-care world for the adversarial consent tests, and the callers who probe it.

One person (Adaeze Okafor, NHS number A) has three source records joined by identity:

- Millbrook Surgery (GP, Z90001), where she is registered: asthma, a weight, a termination of
  pregnancy (never shared), and a problem the practice labelled not for disclosure to her;
- the hospital trust (Z9H): a fracture, depression (mental health, shared by the direct-care
  rule), HIV (not named by any rule), a safeguarding concern, a blood pressure, and a finished
  HIV clinic Encounter (itself labelled HIV) with an ordinary Observation recorded in it. The
  hospital's copy of her details names Oakfield Health Centre (Z90003) as her practice;
- the council's adult social care (Z9C01): a finished home visit and a care plan.

A second, unrelated person (Bola Adeyemi, NHS number B) is registered at Riverside Medical
Centre (Z90002), with diabetes and a blood test.

Every resource carries ``meta.source`` naming its recording organisation and is written by the
suite's system client, which may write for any source. All names, numbers and codes are
synthetic (NHS numbers from the 999 range reserved for testing).
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from fhir_gateway import events
from fhir_gateway.auth.issuer import DevelopmentIssuer
from fhir_gateway.identity import nhs
from tests.conftest import bearer, user_claims
from tests.factories import fhir

SOURCE = "urn:carejoin:source:"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
ROLE_SYSTEM = "https://fhir.carejoin.example/CodeSystem/role"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

NUMBER_A = "9991000003"  # valid check digits, 999 test range
NUMBER_B = "9991000011"

GP = "Z90001"  # Millbrook Surgery: person A registered here
GP_OTHER = "Z90002"  # Riverside Medical Centre: person B registered here
GP_NAMED_BY_HOSPITAL = "Z90003"  # the practice the hospital's copy names (never GP-recorded)
HOSPITAL = "Z9H"
COUNCIL = "Z9C01"
NOT_A_PARTY = "Z99999"


# -- identifiers of the world ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class World:
    """The ids of what was written (all are ``Type/id`` references where that is useful)."""

    gp_patient: str = "adv-gp-a"
    hospital_patient: str = "adv-h-a"
    council_patient: str = "adv-c-a"
    other_patient: str = "adv-gp2-b"
    # Millbrook Surgery, person A
    gp_asthma: str = "Condition/adv-gp-asthma"
    gp_weight: str = "Observation/adv-gp-weight"
    gp_termination: str = "Condition/adv-gp-top"  # never shared
    gp_nopat: str = "Condition/adv-gp-nopat"  # not for the patient's eyes
    # the hospital, person A
    hospital_fracture: str = "Condition/adv-h-fracture"
    hospital_depression: str = "Condition/adv-h-depression"  # mental_health
    hospital_hiv: str = "Condition/adv-h-hiv"  # hiv
    hospital_safeguarding: str = "Condition/adv-h-safeguarding"  # safeguarding
    hospital_bp: str = "Observation/adv-h-bp"
    hospital_hiv_clinic: str = "Encounter/adv-h-hiv-clinic"  # hiv (reason code)
    hospital_clinic_obs: str = "Observation/adv-h-clinic-obs"  # in the HIV clinic encounter
    # the council, person A
    council_visit: str = "Encounter/adv-c-visit"
    council_plan: str = "CarePlan/adv-c-plan"
    # Riverside Medical Centre, person B
    other_diabetes: str = "Condition/adv-gp2-diabetes"
    other_obs: str = "Observation/adv-gp2-hba1c"

    @property
    def person_a_patients(self) -> tuple[str, str, str]:
        return (self.gp_patient, self.hospital_patient, self.council_patient)

    @property
    def hidden_from_related_gp(self) -> tuple[str, ...]:
        """Person A's items a related clinician elsewhere never sees (sensitivity)."""
        return (
            self.hospital_hiv,
            self.hospital_safeguarding,
            self.hospital_hiv_clinic,
        )

    @property
    def person_a_shared(self) -> tuple[str, ...]:
        """Person A's ordinary items a related GP or hospital clinician sees."""
        return (
            f"Patient/{self.gp_patient}",
            f"Patient/{self.hospital_patient}",
            f"Patient/{self.council_patient}",
            self.gp_asthma,
            self.gp_weight,
            self.gp_nopat,
            self.hospital_fracture,
            self.hospital_depression,
            self.hospital_bp,
            self.hospital_clinic_obs,
            self.council_visit,
            self.council_plan,
        )

    @property
    def person_b(self) -> tuple[str, ...]:
        return (f"Patient/{self.other_patient}", self.other_diabetes, self.other_obs)


WORLD = World()


# -- resource builders -------------------------------------------------------------------


def _id(reference: str) -> str:
    return reference.split("/", 1)[1]


def _meta(ods: str, **extra: Any) -> dict[str, Any]:
    return {"source": SOURCE + ods, **extra}


def patient(
    resource_id: str,
    ods: str,
    *,
    nhs_number: str,
    family: str,
    given: str,
    birth_date: str,
    gender: str,
    general_practitioner: str | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": resource_id,
        "meta": _meta(ods),
        "identifier": [
            {
                "system": nhs.NHS_NUMBER_SYSTEM,
                "value": nhs_number,
                "extension": [
                    {
                        "url": nhs.VERIFICATION_EXTENSION,
                        "valueCodeableConcept": {
                            "coding": [{"system": nhs.VERIFICATION_SYSTEM, "code": nhs.VERIFIED}]
                        },
                    }
                ],
            },
            {"system": f"https://fhir.example.org/Id/mrn-{ods.lower()}", "value": resource_id},
        ],
        "active": True,
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": gender,
        "birthDate": birth_date,
        "telecom": [{"system": "phone", "value": "07700 900123", "use": "mobile"}],
        "address": [
            {
                "use": "home",
                "line": ["12 Synthetic Row"],
                "city": "Millbrook",
                "postalCode": "LS16 6AB",
            }
        ],
    }
    if general_practitioner:
        resource["generalPractitioner"] = [
            {"identifier": {"system": ODS, "value": general_practitioner}}
        ]
    return resource


def condition(
    reference: str,
    ods: str,
    patient_id: str,
    *,
    system: str,
    code: str,
    display: str,
    security: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    meta = _meta(ods)
    if security:
        meta["security"] = security
    return {
        "resourceType": "Condition",
        "id": _id(reference),
        "meta": meta,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": system, "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "onsetDateTime": "2021-04-02",
    }


def observation(
    reference: str,
    ods: str,
    patient_id: str,
    *,
    code: str,
    value: float,
    unit: str,
    encounter: str | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _id(reference),
        "meta": _meta(ods),
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2025-06-01T09:30:00Z",
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }
    if encounter:
        resource["encounter"] = {"reference": encounter}
    return resource


def encounter(
    reference: str,
    ods: str,
    patient_id: str,
    *,
    status: str,
    start: str = "2025-05-01T10:00:00Z",
    end: str | None = None,
    reason: tuple[str, str, str] | None = None,
    provider: str | None = None,
) -> dict[str, Any]:
    period: dict[str, str] = {"start": start}
    if end:
        period["end"] = end
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": _id(reference),
        "meta": _meta(ods),
        "status": status,
        "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": period,
    }
    if reason:
        system, code, display = reason
        resource["reasonCode"] = [
            {"coding": [{"system": system, "code": code, "display": display}]}
        ]
    if provider:
        resource["serviceProvider"] = {"identifier": {"system": ODS, "value": provider}}
    return resource


def care_plan(reference: str, ods: str, patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "id": _id(reference),
        "meta": _meta(ods),
        "status": "active",
        "intent": "plan",
        "title": "Support at home",
        "subject": {"reference": f"Patient/{patient_id}"},
    }


def care_team(
    reference: str, ods: str, patient_id: str, *, members: list[str], status: str = "active"
) -> dict[str, Any]:
    return {
        "resourceType": "CareTeam",
        "id": _id(reference),
        "meta": _meta(ods),
        "status": status,
        "subject": {"reference": f"Patient/{patient_id}"},
        "participant": [{"member": {"reference": m}} for m in members],
    }


def episode_of_care(
    reference: str,
    ods: str,
    patient_id: str,
    *,
    care_manager: str,
    managing: str,
    status: str = "active",
) -> dict[str, Any]:
    return {
        "resourceType": "EpisodeOfCare",
        "id": _id(reference),
        "meta": _meta(ods),
        "status": status,
        "patient": {"reference": f"Patient/{patient_id}"},
        "managingOrganization": {"identifier": {"system": ODS, "value": managing}},
        "careManager": {"reference": care_manager},
        "period": {"start": "2025-01-01"},
    }


def _actor(role: str, *, ods: str | None = None, role_code: str | None = None) -> dict[str, Any]:
    identifier = (
        {"system": ODS, "value": ods} if ods else {"system": ROLE_SYSTEM, "value": role_code}
    )
    return {
        "role": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": role,
                }
            ]
        },
        "reference": {"identifier": identifier},
    }


def privacy_consent(
    reference: str,
    ods: str,
    patient_id: str,
    *,
    decision: str = "deny",
    recipient: str | None = None,
    source: str | None = None,
    items: tuple[str, ...] = (),
    status: str = "active",
    exceptions: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    """A FHIR R4 privacy Consent the person gave ``ods`` (who records it)."""
    provision: dict[str, Any] = {"type": decision}
    actors = []
    if recipient:
        actors.append(_actor("IRCP", ods=recipient))
    if source:
        actors.append(_actor("CST", ods=source))
    if actors:
        provision["actor"] = actors
    if items:
        provision["data"] = [{"meaning": "instance", "reference": {"reference": i}} for i in items]
    if exceptions:
        provision["provision"] = list(exceptions)
    return fhir.privacy_consent(
        patient_id,
        provision,
        status=status,
        id=_id(reference),
        meta=_meta(ods),
        dateTime="2026-01-05T10:00:00Z",
        policyRule={
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}
            ]
        },
    )


def permit_exception(*, recipient: str) -> dict[str, Any]:
    """A nested provision permitting one recipient organisation (more specific than blanket)."""
    return {"type": "permit", "actor": [_actor("IRCP", ods=recipient)]}


NOPAT = {"system": ACT_CODE, "code": "NOPAT", "display": "no disclosure to patient"}


def world_resources(w: World = WORLD) -> list[dict[str, Any]]:
    a = {"family": "Okafor", "given": "Adaeze", "birth_date": "1941-03-12", "gender": "female"}
    b = {"family": "Adeyemi", "given": "Bola", "birth_date": "1958-11-30", "gender": "male"}
    return [
        patient(w.gp_patient, GP, nhs_number=NUMBER_A, **a),
        patient(
            w.hospital_patient,
            HOSPITAL,
            nhs_number=NUMBER_A,
            general_practitioner=GP_NAMED_BY_HOSPITAL,
            **a,
        ),
        patient(w.council_patient, COUNCIL, nhs_number=NUMBER_A, **a),
        patient(w.other_patient, GP_OTHER, nhs_number=NUMBER_B, **b),
        condition(w.gp_asthma, GP, w.gp_patient, system=SNOMED, code="195967001", display="Asthma"),
        observation(w.gp_weight, GP, w.gp_patient, code="29463-7", value=61.2, unit="kg"),
        condition(
            w.gp_termination,
            GP,
            w.gp_patient,
            system=ICD10,
            code="O04.9",
            display="Medical abortion, complete or unspecified",
        ),
        condition(
            w.gp_nopat,
            GP,
            w.gp_patient,
            system=SNOMED,
            code="271737000",
            display="Anaemia",
            security=[NOPAT],
        ),
        condition(
            w.hospital_fracture,
            HOSPITAL,
            w.hospital_patient,
            system=SNOMED,
            code="263225007",
            display="Fracture of neck of femur",
        ),
        condition(
            w.hospital_depression,
            HOSPITAL,
            w.hospital_patient,
            system=ICD10,
            code="F32.1",
            display="Moderate depressive episode",
        ),
        condition(
            w.hospital_hiv,
            HOSPITAL,
            w.hospital_patient,
            system=ICD10,
            code="B20",
            display="HIV disease resulting in infectious and parasitic diseases",
        ),
        condition(
            w.hospital_safeguarding,
            HOSPITAL,
            w.hospital_patient,
            system=ICD10,
            code="T74.1",
            display="Physical abuse",
        ),
        observation(
            w.hospital_bp, HOSPITAL, w.hospital_patient, code="8480-6", value=142, unit="mm[Hg]"
        ),
        encounter(
            w.hospital_hiv_clinic,
            HOSPITAL,
            w.hospital_patient,
            status="finished",
            end="2025-05-01T11:00:00Z",
            reason=(ICD10, "B20", "HIV disease"),
        ),
        observation(
            w.hospital_clinic_obs,
            HOSPITAL,
            w.hospital_patient,
            code="29463-7",
            value=60.8,
            unit="kg",
            encounter=w.hospital_hiv_clinic,
        ),
        encounter(
            w.council_visit,
            COUNCIL,
            w.council_patient,
            status="finished",
            end="2025-05-02T12:00:00Z",
        ),
        care_plan(w.council_plan, COUNCIL, w.council_patient),
        condition(
            w.other_diabetes,
            GP_OTHER,
            w.other_patient,
            system=SNOMED,
            code="44054006",
            display="Type 2 diabetes mellitus",
        ),
        observation(
            w.other_obs, GP_OTHER, w.other_patient, code="4548-4", value=58, unit="mmol/mol"
        ),
    ]


# -- writing and reading -------------------------------------------------------------------


def dispatch(app: FastAPI) -> int:
    """Drain the outbox in the test's transaction, as the background dispatcher would."""
    dispatcher: events.Dispatcher = app.state.dispatcher
    total = 0
    with app.state.unit_of_work() as session:
        while count := dispatcher.dispatch_once(session, now=datetime.now(UTC)):
            total += count
    return total


def put_all(client: TestClient, resources: list[dict[str, Any]]) -> None:
    """Write ``resources`` in one transaction (as the suite's system client)."""
    entries = []
    for resource in resources:
        key = (resource["resourceType"], resource["id"])
        entries.append(
            {
                "resource": resource,
                "request": {"method": "PUT", "url": f"{key[0]}/{key[1]}"},
            }
        )
    response = client.post(
        "/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}
    )
    assert response.status_code == 200, response.text


def build_world(app: FastAPI, client: TestClient, *extra: dict[str, Any]) -> World:
    """Write the world (and ``extra`` resources), then let identity join the sources."""
    put_all(client, [*world_resources(), *extra])
    dispatch(app)
    return WORLD


def refs(bundle: dict[str, Any], mode: str | None = None) -> list[str]:
    """``Type/id`` of every entry's resource (of one search mode, if given), leaving out the
    notice that something is withheld (an OperationOutcome with search mode ``outcome``)."""
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if "resource" in e
        and e.get("search", {}).get("mode") != "outcome"
        and (mode is None or e.get("search", {}).get("mode") == mode)
    ]


def withheld_notices(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries saying that something of the person's record is withheld."""
    return [e for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "outcome"]


# -- callers -------------------------------------------------------------------------------

Headers = dict[str, str]


@dataclass(frozen=True, slots=True)
class Callers:
    gp: Headers  # Millbrook GP: person A registered here
    gp_nurse: Headers  # Millbrook nurse
    gp_other: Headers  # Riverside GP: unrelated to person A
    gp_named_by_hospital: Headers  # Oakfield GP: named only by the hospital's copy
    hospital: Headers  # hospital doctor (relationship only when an encounter is open)
    hospital_other: Headers  # another hospital doctor
    hospital_admin: Headers  # identity stewardship role at the hospital
    social_worker: Headers  # council social worker
    officer: Headers  # privacy officer at the hospital
    not_a_party: Headers  # a clinician at an organisation the agreement does not know
    patient: Headers  # person A, through the GP's record
    patient_b: Headers  # person B
    integration: Headers  # system client: everything, may $match
    hospital_pas: Headers  # system client: hospital demographics only, may $match
    rogue_system: Headers  # system client the agreement does not name
    gp_system: Headers  # Millbrook's own system, not named in the agreement


GP_USER = "Practitioner/adv-gp-millbrook"
GP_NURSE_USER = "Practitioner/adv-nurse-millbrook"
GP_OTHER_USER = "Practitioner/adv-gp-riverside"
GP_NAMED_USER = "Practitioner/adv-gp-oakfield"
HOSPITAL_USER = "Practitioner/adv-doctor-hospital"
HOSPITAL_OTHER_USER = "Practitioner/adv-doctor-hospital-2"
SOCIAL_WORKER_USER = "Practitioner/adv-sw-council"


def _user(
    issuer: DevelopmentIssuer, fhir_user: str, organisation: str, role: str, **more: Any
) -> Headers:
    claims = user_claims(fhir_user.split("/", 1)[1], organization=organisation, role=role, **more)
    claims["fhirUser"] = fhir_user
    return bearer(issuer, claims)


def _system(issuer: DevelopmentIssuer, client_id: str, organisation: str | None = None) -> Headers:
    claims: dict[str, object] = {
        "sub": client_id,
        "client_id": client_id,
        "scope": "system/*.cruds",
    }
    if organisation:
        claims["organization"] = organisation
    return bearer(issuer, claims)


def callers(issuer: DevelopmentIssuer, w: World = WORLD) -> Callers:
    return Callers(
        gp=_user(issuer, GP_USER, GP, "R8000"),
        gp_nurse=_user(issuer, GP_NURSE_USER, GP, "R8001"),
        gp_other=_user(issuer, GP_OTHER_USER, GP_OTHER, "R8000"),
        gp_named_by_hospital=_user(issuer, GP_NAMED_USER, GP_NAMED_BY_HOSPITAL, "R8000"),
        hospital=_user(issuer, HOSPITAL_USER, HOSPITAL, "R8000"),
        hospital_other=_user(issuer, HOSPITAL_OTHER_USER, HOSPITAL, "R8000"),
        hospital_admin=_user(issuer, "Practitioner/adv-admin-hospital", HOSPITAL, "R8008"),
        social_worker=_user(issuer, SOCIAL_WORKER_USER, COUNCIL, "CJ0001"),
        officer=_user(
            issuer, "Practitioner/adv-privacy-officer", HOSPITAL, "CJ0003", scope="user/*.rs"
        ),
        not_a_party=_user(issuer, "Practitioner/adv-gp-elsewhere", NOT_A_PARTY, "R8000"),
        patient=bearer(
            issuer, {"sub": "adv-person-a", "patient": w.gp_patient, "scope": "patient/*.rs"}
        ),
        patient_b=bearer(
            issuer, {"sub": "adv-person-b", "patient": w.other_patient, "scope": "patient/*.rs"}
        ),
        integration=_system(issuer, "integration"),
        hospital_pas=_system(issuer, "hospital-pas", HOSPITAL),
        rogue_system=_system(issuer, "adv-unnamed-client"),
        gp_system=_system(issuer, "adv-millbrook-system", GP),
    )

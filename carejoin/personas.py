"""The demo personas: who a new user can sign in as with the development issuer.

Each is a real Practitioner (or Patient) of the synthetic demo data. Roles: R8000 (clinical
practitioner), R8001 (nurse) and R8008 (admin/clinical support) are national RBAC access
role codes as a smartcard carries them; social care and partnership roles, which national
RBAC does not cover, use the partnership's own codes (``CJ...``). A persona's ``roles`` are
every role its holder may select when signing in through the development issuer's page
(the first is the one ``carejoin token --persona`` uses unless ``--role`` says otherwise).
The service hands these to the gateway (``create_app(..., personas=...)``).
"""

from carejoin.synthetic import COUNCIL, HOSPITAL, PRACTICES, first_person_patient_id
from fhir_gateway.auth.personas import Persona

__all__ = ["Persona", "personas"]


def _staff(
    name: str,
    description: str,
    user: str,
    ods: str,
    role: str,
    scope: str,
    *,
    roles: tuple[str, ...] = (),
) -> Persona:
    return Persona(
        name,
        description,
        {
            "sub": user,
            "fhirUser": f"Practitioner/{user}",
            "organization": ods,
            "role": role,
            "scope": scope,
        },
        roles=roles,
    )


def personas(seed: int = 2026) -> dict[str, Persona]:
    practice = PRACTICES[0]
    patient = first_person_patient_id(seed)
    every = [
        _staff(
            "gp",
            f"GP at {practice.name}",
            f"gp-{practice.ods}-0",
            practice.ods,
            "R8000",
            "user/*.cruds",
            roles=("R8000", "R8008"),
        ),
        _staff(
            "hospital-doctor",
            f"Consultant at {HOSPITAL.name}",
            "hosp-doctor-1",
            HOSPITAL.ods,
            "R8000",
            "user/*.cruds",
        ),
        _staff(
            "ward-nurse",
            "Ward nurse at the hospital",
            "hosp-nurse-1",
            HOSPITAL.ods,
            "R8001",
            "user/*.cruds",
        ),
        _staff(
            "social-worker",
            f"Social worker at {COUNCIL.name}",
            "asc-sw-1",
            COUNCIL.ods,
            "CJ0001",
            "user/*.cruds",
        ),
        _staff(
            "care-coordinator",
            "Care coordinator in the integrated team",
            "coord-1",
            COUNCIL.ods,
            "CJ0002",
            "user/*.cruds",
            roles=("CJ0002", "CJ0001"),
        ),
        Persona(
            "case-finder",
            "The same care coordinator, looking at the team's case-finding list",
            {
                "sub": "coord-1",
                "fhirUser": "Practitioner/coord-1",
                "organization": COUNCIL.ods,
                "role": "CJ0002",
                "purpose_of_use": "CASEFIND",
                "scope": "user/*.rs",
            },
        ),
        _staff(
            "team-lead",
            "Lead of the Millbrook integrated neighbourhood team",
            "lead-1",
            COUNCIL.ods,
            "CJ0002",
            "user/*.cruds",
        ),
        _staff(
            "team-admin",
            "Systems administrator of the council (sets up the teams)",
            "admin-1",
            COUNCIL.ods,
            "R8008",
            "user/Organization.cruds user/PractitionerRole.cruds",
        ),
        _staff(
            "privacy-officer",
            "The partnership's privacy officer",
            "privacy-1",
            HOSPITAL.ods,
            "CJ0003",
            "user/*.rs",
        ),
        _staff(
            "data-steward",
            "Identity data steward (the review queue)",
            "steward-1",
            HOSPITAL.ods,
            "R8008",
            "user/Person.cruds user/Patient.rs user/Provenance.rs",
        ),
        Persona(
            "patient",
            "The person, seeing their own record",
            {"sub": f"patient-{patient}", "patient": patient, "scope": "patient/*.rs"},
        ),
        Persona(
            "hospital-pas",
            "The hospital's patient administration system (ADT feed)",
            {
                "sub": "hospital-pas",
                "client_id": "hospital-pas",
                "organization": HOSPITAL.ods,
                "scope": "system/Patient.cru system/Encounter.cru",
            },
        ),
        Persona(
            "integration",
            "The partnership's integration engine (loads every source)",
            {
                "sub": "integration",
                "client_id": "integration",
                "scope": "system/*.cruds",
            },
        ),
    ]
    return {persona.name: persona for persona in every}

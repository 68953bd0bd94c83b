"""The care date of each resource type: the search parameter whose date says when the care
happened. ``Patient/$everything``'s ``start`` and ``end`` select by it, and a person's choice
narrowed to a period of data (``Consent.provision.dataPeriod``) applies by it. A type not
named here (``Patient``, ``Organization``, ``Basic``...) records no care date.
"""

CARE_DATE_PARAMS: dict[str, str] = {
    "AllergyIntolerance": "date",
    "CarePlan": "date",
    "CareTeam": "date",
    "Communication": "sent",
    "Condition": "onset-date",
    "Consent": "date",
    "DiagnosticReport": "date",
    "DocumentReference": "date",
    "Encounter": "date",
    "EpisodeOfCare": "date",
    "Flag": "date",
    "Goal": "start-date",
    "Immunization": "date",
    "MedicationRequest": "authoredon",
    "MedicationStatement": "effective",
    "Observation": "date",
    "Procedure": "date",
    "QuestionnaireResponse": "authored",
    "ServiceRequest": "authored",
    "Task": "authored-on",
}

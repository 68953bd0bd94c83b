"""One unified assessment (FHIR Questionnaire/QuestionnaireResponse) for health and social care."""

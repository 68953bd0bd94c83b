"""The search parameter registry against the R4 specification and the models."""

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhir_gateway.search.extract import compile_path
from fhir_gateway.search.model import ParamType
from fhir_gateway.search.registry import (
    PATIENT_COMPARTMENT,
    SEARCH_PARAMS,
    SUPPORTED_TYPES,
    UnknownResourceType,
    params_for,
)

REQUIRED_TYPES = {
    "Patient", "Person", "Practitioner", "PractitionerRole", "Organization", "Encounter",
    "EpisodeOfCare", "Condition", "Observation", "AllergyIntolerance", "MedicationRequest",
    "MedicationStatement", "Immunization", "Procedure", "DiagnosticReport", "DocumentReference",
    "CarePlan", "CareTeam", "Goal", "Task", "ServiceRequest", "Flag", "Questionnaire",
    "QuestionnaireResponse", "Consent", "AuditEvent", "Provenance", "Communication",
    "Subscription", "MessageHeader",
}  # fmt: skip


def test_every_required_type_is_stored() -> None:
    assert REQUIRED_TYPES <= SUPPORTED_TYPES


def _element_names(resource_type: str, path: str) -> None:
    """Walk ``path`` through the R4B model, failing if an element does not exist."""
    model = get_fhir_model_class(resource_type)
    for step in compile_path(path).steps:
        fields = {f.alias or name: f for name, f in model.model_fields.items()}
        if step.choice:
            matches = [
                a for a in fields if a.startswith(step.name) and a[len(step.name) :][:1].isupper()
            ]
            assert matches, f"{resource_type}.{path}: no choice {step.name}[x]"
            return
        assert step.name in fields, f"{resource_type}.{path}: no element {step.name}"
        annotation = fields[step.name].annotation
        inner = _model_in(annotation)
        if inner is None:
            return
        model = inner


def _model_in(annotation: object) -> type | None:
    import typing

    for arg in typing.get_args(annotation) or (annotation,):
        if isinstance(arg, type) and hasattr(arg, "model_fields"):
            return arg
        nested = _model_in(arg) if typing.get_args(arg) else None
        if nested is not None:
            return nested
    return None


@pytest.mark.parametrize("resource_type", sorted(SUPPORTED_TYPES))
def test_every_path_names_real_elements(resource_type: str) -> None:
    for param in SEARCH_PARAMS[resource_type].values():
        if param.code in ("_id", "_lastUpdated"):
            continue
        for path in param.paths:
            _element_names(resource_type, path)


def test_spec_parameter_names_and_types() -> None:
    observation = params_for("Observation")
    assert observation["patient"].type is ParamType.REFERENCE
    assert observation["patient"].targets == ("Patient",)
    assert observation["date"].type is ParamType.DATE
    assert observation["value-quantity"].type is ParamType.QUANTITY
    assert params_for("Patient")["birthdate"].paths == ("birthDate",)
    assert params_for("Encounter")["length"].type is ParamType.QUANTITY
    assert params_for("Task")["patient"].paths == ("for",)


def test_unknown_type() -> None:
    with pytest.raises(UnknownResourceType):
        params_for("Spaceship")


def test_compartment_names_only_reference_parameters() -> None:
    for resource_type, codes in PATIENT_COMPARTMENT.items():
        for code in codes:
            assert params_for(resource_type)[code].type is ParamType.REFERENCE

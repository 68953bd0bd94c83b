"""search index: no rows of their own for parameters derived from others

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

``Observation.patient`` is ``subject``'s Patients and ``Observation.combo-code`` is ``code``
with ``component-code``, and so on (``fhir_gateway.search.storage``): their rows duplicated
others'. Searches now read the rows they are made of, so theirs are deleted; the downgrade
writes them back from the same rows. The list is frozen here as it was derived at this
revision (a test checks it against the registry's derivation).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (resource type, parameter, the parameter whose rows it restricts, the target type)
RESTRICTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("CarePlan", "patient", "subject", "Patient"),
    ("CareTeam", "patient", "subject", "Patient"),
    ("Communication", "patient", "subject", "Patient"),
    ("Condition", "patient", "subject", "Patient"),
    ("DiagnosticReport", "patient", "subject", "Patient"),
    ("DocumentReference", "patient", "subject", "Patient"),
    ("Encounter", "patient", "subject", "Patient"),
    ("Encounter", "practitioner", "participant", "Practitioner"),
    ("Flag", "patient", "subject", "Patient"),
    ("Goal", "patient", "subject", "Patient"),
    ("MedicationRequest", "patient", "subject", "Patient"),
    ("MedicationStatement", "patient", "subject", "Patient"),
    ("Observation", "patient", "subject", "Patient"),
    ("Person", "patient", "link", "Patient"),
    ("Person", "practitioner", "link", "Practitioner"),
    ("Person", "relatedperson", "link", "RelatedPerson"),
    ("Procedure", "patient", "subject", "Patient"),
    ("Provenance", "patient", "target", "Patient"),
    ("QuestionnaireResponse", "patient", "subject", "Patient"),
    ("ServiceRequest", "patient", "subject", "Patient"),
    ("Task", "patient", "subject", "Patient"),
)

# (table, resource type, parameter, the parameters whose rows together make it up)
UNIONS: tuple[tuple[str, str, str, tuple[str, str]], ...] = (
    ("search_token", "Observation", "combo-code", ("code", "component-code")),
    (
        "search_token",
        "Observation",
        "combo-data-absent-reason",
        ("component-data-absent-reason", "data-absent-reason"),
    ),
    (
        "search_token",
        "Observation",
        "combo-value-concept",
        ("component-value-concept", "value-concept"),
    ),
    (
        "search_quantity",
        "Observation",
        "combo-value-quantity",
        ("component-value-quantity", "value-quantity"),
    ),
)

COLUMNS = {
    "search_reference": "target_type, target_id, url",
    "search_token": "system, code",
    "search_quantity": "value, system, code, unit",
}


def upgrade() -> None:
    for resource_type, param, _of, _target in RESTRICTIONS:
        op.execute(
            sa.text(
                "DELETE FROM search_reference WHERE resource_type = :t AND param = :p"
            ).bindparams(t=resource_type, p=param)
        )
    for table, resource_type, param, _parts in UNIONS:
        op.execute(
            sa.text(f"DELETE FROM {table} WHERE resource_type = :t AND param = :p").bindparams(
                t=resource_type, p=param
            )
        )


def downgrade() -> None:
    columns = COLUMNS["search_reference"]
    for resource_type, param, of, target in RESTRICTIONS:
        op.execute(
            sa.text(
                f"INSERT INTO search_reference (resource_pk, resource_type, param, {columns}) "
                f"SELECT resource_pk, resource_type, :p, {columns} FROM search_reference "
                "WHERE resource_type = :t AND param = :of AND target_type = :target"
            ).bindparams(t=resource_type, p=param, of=of, target=target)
        )
    for table, resource_type, param, (first, second) in UNIONS:
        columns = COLUMNS[table]
        op.execute(
            sa.text(
                f"INSERT INTO {table} (resource_pk, resource_type, param, {columns}) "
                f"SELECT DISTINCT resource_pk, resource_type, :p, {columns} FROM {table} "
                "WHERE resource_type = :t AND param IN (:first, :second)"
            ).bindparams(t=resource_type, p=param, first=first, second=second)
        )

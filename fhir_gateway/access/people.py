"""Who a request is about: the Person a source patient belongs to (for the audit trail), and
what consent needs to know about that person (for ``consent.visibility.specialise``)."""

from collections.abc import Iterable

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from consent.relationships import Relationship
from consent.visibility import Grant, PersonFacts
from fhir_gateway.access.models import (
    BreakGlassGrantRow,
    CareRelationshipRow,
    ConsentDirectiveRow,
)
from fhir_gateway.identity.models import IdentityRecord


def person_references(
    db: Session | Connection, patient_ids: Iterable[str | None]
) -> dict[str, str]:
    """``Person/<id>`` for each patient identity has filed, else ``Patient/<id>``."""
    wanted = sorted({p for p in patient_ids if p})
    found: dict[str, str] = {p: f"Patient/{p}" for p in wanted}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = db.execute(
            select(IdentityRecord.patient_id, IdentityRecord.person_id).where(
                IdentityRecord.patient_id.in_(chunk)
            )
        )
        for patient_id, person_id in rows:
            found[patient_id] = f"Person/{person_id}"
    return found


def person_facts(db: Session | Connection, patient_ids: Iterable[str]) -> PersonFacts:
    """The relationships, break-glass grants and whether any directive exists, for one
    person's source patients (for ``consent.visibility.specialise``)."""
    ids = sorted(set(patient_ids))
    relationships = tuple(
        Relationship(
            patient_id=row.patient_id,
            kind=row.kind,
            organisation=row.organisation,
            practitioner=row.practitioner,
            ends_at=row.ends_at,
            source_organisation=row.source_organisation,
        )
        for row in db.execute(
            select(
                CareRelationshipRow.patient_id,
                CareRelationshipRow.kind,
                CareRelationshipRow.organisation,
                CareRelationshipRow.practitioner,
                CareRelationshipRow.ends_at,
                CareRelationshipRow.source_organisation,
            ).where(CareRelationshipRow.patient_id.in_(ids))
        )
    )
    grants = tuple(
        Grant(practitioner=row.practitioner, patient_id=row.patient_id, expires_at=row.expires_at)
        for row in db.execute(
            select(
                BreakGlassGrantRow.practitioner,
                BreakGlassGrantRow.patient_id,
                BreakGlassGrantRow.expires_at,
            ).where(BreakGlassGrantRow.patient_id.in_(ids))
        )
    )
    has_directives = (
        db.execute(
            select(ConsentDirectiveRow.pk).where(ConsentDirectiveRow.patient_id.in_(ids)).limit(1)
        ).first()
        is not None
    )
    return PersonFacts(relationships=relationships, grants=grants, has_directives=has_directives)

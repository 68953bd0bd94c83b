"""Who an access is about: the Person a source patient belongs to, for the audit trail."""

from collections.abc import Iterable

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

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

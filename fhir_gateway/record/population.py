"""The registered population and its records in bulk, for population work (case-finding).

Persons come from identity; "registered" is the relationship derived from a GP source's
Patient (``access.derive``), counted only where the agreement says the recording party is a
GP practice. Reads go by chunks of persons through the ``patient_id`` index, so one person
(a record just changed) and a whole population take the same path.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from fhir_gateway.access.models import CareRelationshipRow, ConsentDirectiveRow
from fhir_gateway.identity.models import IdentityRecord
from fhir_gateway.store.models import ResourceRow, search_date


@dataclass(frozen=True, slots=True)
class Registration:
    person_id: str
    patient_id: str  # the GP's record of the person
    practice: str  # ODS code


@dataclass(frozen=True, slots=True)
class SourceRow:
    resource_type: str
    resource_id: str
    patient_id: str
    source_org: str | None
    sensitivity: str | None
    body: str


def registrations(
    session: Session,
    *,
    gp_practices: frozenset[str],
    now: datetime,
    person_ids: Sequence[str] | None = None,
) -> list[Registration]:
    """Each person's registration at a GP practice (the newest GP record where several)."""
    rel = CareRelationshipRow
    stmt = (
        select(IdentityRecord.person_id, rel.patient_id, rel.organisation)
        .join(IdentityRecord, IdentityRecord.patient_id == rel.patient_id)
        .where(
            rel.kind == "registered",
            rel.source_organisation.in_(sorted(gp_practices)),
            rel.organisation.in_(sorted(gp_practices)),
            or_(rel.ends_at.is_(None), rel.ends_at > now),
        )
        .order_by(IdentityRecord.person_id, rel.pk.desc())
    )
    if person_ids is not None:
        stmt = stmt.where(IdentityRecord.person_id.in_(list(person_ids)))
    seen: dict[str, Registration] = {}
    for person_id, patient_id, practice in session.execute(stmt):
        if person_id not in seen and practice:
            seen[person_id] = Registration(person_id, patient_id, practice)
    return list(seen.values())


def records_of(
    session: Session,
    person_ids: Iterable[str],
    *,
    types: Sequence[str],
    only_from: dict[str, frozenset[str]] | None = None,
) -> dict[str, list[SourceRow]]:
    """The current (not deleted) resources of ``types`` of each person's source patients.

    ``only_from`` narrows a type to the organisations that recorded it (for example
    Encounters from hospitals only), so a population read does not carry what it ignores.
    """
    ids = sorted(set(person_ids))
    if not ids:
        return {}
    owners = dict(
        session.execute(
            select(IdentityRecord.patient_id, IdentityRecord.person_id).where(
                IdentityRecord.person_id.in_(ids)
            )
        ).all()
    )
    out: dict[str, list[SourceRow]] = {p: [] for p in ids}
    if not owners:
        return out
    r = ResourceRow
    conditions = []
    for resource_type in types:
        sources = (only_from or {}).get(resource_type)
        if sources is None:
            conditions.append(r.resource_type == resource_type)
        else:
            conditions.append(
                (r.resource_type == resource_type) & r.source_org.in_(sorted(sources))
            )
    stmt = select(
        r.resource_type, r.resource_id, r.patient_id, r.source_org, r.sensitivity, r.body
    ).where(r.patient_id.in_(sorted(owners)), r.deleted.is_(False), or_(*conditions))
    for resource_type, resource_id, patient_id, source_org, sensitivity, body in session.execute(
        stmt
    ):
        if body is None or patient_id is None:
            continue
        out[owners[patient_id]].append(
            SourceRow(resource_type, resource_id, patient_id, source_org, sensitivity, body)
        )
    return out


def persons_with_objections(
    session: Session, person_ids: Iterable[str], *, now: datetime
) -> frozenset[str]:
    """Which of these persons have an objection (a deny directive) in force, of any scope
    (sealed items aside; one narrowed to a security label included, until the information
    governance lead decides otherwise: docs/consent.md):
    population work such as case-finding leaves them out altogether."""
    ids = sorted(set(person_ids))
    if not ids:
        return frozenset()
    d = ConsentDirectiveRow
    stmt = (
        select(IdentityRecord.person_id)
        .join(d, d.patient_id == IdentityRecord.patient_id)
        .where(
            IdentityRecord.person_id.in_(ids),
            d.decision == "deny",
            d.item.is_(None),  # a sealed item is not an objection to sharing
            or_(d.starts_at.is_(None), d.starts_at <= now),
            or_(d.ends_at.is_(None), d.ends_at > now),
        )
        .distinct()
    )
    return frozenset(session.scalars(stmt))


def encounters_between(
    session: Session, start: datetime, end: datetime, *, sources: frozenset[str]
) -> list[tuple[str, SourceRow]]:
    """Encounters recorded by ``sources`` whose period overlaps ``[start, end)``, each with
    the Person its patient is filed under (through the date index, so a month's stays are
    read without scanning every encounter)."""
    d = search_date
    r = ResourceRow
    stmt = (
        select(
            IdentityRecord.person_id,
            r.resource_type,
            r.resource_id,
            r.patient_id,
            r.source_org,
            r.sensitivity,
            r.body,
        )
        .join(d, d.c.resource_pk == r.pk)
        .join(IdentityRecord, IdentityRecord.patient_id == r.patient_id)
        .where(
            d.c.resource_type == "Encounter",
            d.c.param == "date",
            d.c.low < end,
            d.c.high >= start,
            r.deleted.is_(False),
            r.source_org.in_(sorted(sources)),
        )
        .distinct()
    )
    return [
        (person, SourceRow(rtype, rid, str(pid), org, sens, body))
        for person, rtype, rid, pid, org, sens, body in session.execute(stmt)
        if body is not None and pid is not None
    ]

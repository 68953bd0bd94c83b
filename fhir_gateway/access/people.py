"""Who a request is about: the Person a source patient belongs to (for the audit trail), what
consent needs to know about that person (for ``consent.visibility.specialise``), and the
caller's predicate with that person's parts decided."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, literal, not_, null, or_, select, union_all
from sqlalchemy.orm import Session

from consent.audit import AuditRecord
from consent.relationships import Relationship
from consent.visibility import Grant, PersonFacts, Predicate, specialise
from fhir_gateway.access.models import (
    BreakGlassGrantRow,
    CareRelationshipRow,
    ConsentDirectiveRow,
)
from fhir_gateway.identity.models import IdentityRecord
from fhir_gateway.store.models import ResourceRow
from fhir_gateway.store.visibility import (
    compile_visibility_live,
    compile_visibility_shared,
    in_set,
)


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
    person's source patients (for ``consent.visibility.specialise``), in one round trip."""
    ids = sorted(set(patient_ids))
    rel = CareRelationshipRow.__table__.c
    grant = BreakGlassGrantRow.__table__.c
    directive = ConsentDirectiveRow.__table__.c
    none = null()
    any_directive = (
        select(directive.patient_id).where(in_set(directive.patient_id, ids)).limit(1).subquery()
    )
    rows = db.execute(
        union_all(
            select(
                literal("r").label("what"),
                rel.patient_id,
                rel.kind,
                rel.organisation,
                rel.practitioner,
                rel.ends_at.label("ends_at"),
                rel.source_organisation,
            ).where(in_set(rel.patient_id, ids)),
            select(
                literal("g"),
                grant.patient_id,
                none,
                none,
                grant.practitioner,
                grant.expires_at,
                none,
            ).where(in_set(grant.patient_id, ids)),
            select(literal("d"), any_directive.c.patient_id, none, none, none, none, none),
        )
    ).all()
    return facts_from_rows(rows)


def facts_from_rows(rows: Sequence[Any]) -> PersonFacts:
    """A person's facts from tagged rows (``what``: 'r' a relationship, 'g' a break-glass
    grant with its expiry in ``ends_at``, 'd' any directive), as ``person_facts`` and
    ``FACTS_SQL`` return them."""
    relationships = tuple(
        Relationship(
            patient_id=row.patient_id,
            kind=row.kind,
            organisation=row.organisation,
            practitioner=row.practitioner,
            ends_at=row.ends_at,
            source_organisation=row.source_organisation,
        )
        for row in rows
        if row.what == "r"
    )
    grants = tuple(
        Grant(practitioner=row.practitioner, patient_id=row.patient_id, expires_at=row.ends_at)
        for row in rows
        if row.what == "g"
    )
    has_directives = any(row.what == "d" for row in rows)
    return PersonFacts(relationships=relationships, grants=grants, has_directives=has_directives)


NOBODY = PersonFacts(relationships=(), grants=(), has_directives=False)


@dataclass(frozen=True, slots=True)
class PersonVisibility:
    """The caller's predicate with one person's person-level parts decided once.

    ``within``: for rows known to belong to that person (its source patients): the predicate
    specialised for them (per-row subqueries become constants; what is left tests labels).
    ``guarded``: for rows that may belong to anyone (referenced resources): that person's
    rows as ``within``, the directory with the predicate for no person, anything else with
    the full predicate. Same answers as the full predicate (the property tests check the
    specialised form), at a fraction of the planning and execution cost."""

    within: ColumnElement[bool]
    guarded: ColumnElement[bool]


def person_visibility(
    predicate: Predicate, facts: PersonFacts, patient_ids: Iterable[str], *, now: datetime
) -> PersonVisibility:
    """``predicate`` for a request about the person whose source patients are
    ``patient_ids`` and whose facts are ``facts`` (see ``PersonVisibility``). The SQL of a
    specialised tree is remembered by its value (most people's is the same) and the full
    predicate's by the caller's predicate object, so only the patients are new; the time in
    them is read when the statement runs (``consent_now_live``)."""
    row = ResourceRow
    theirs = in_set(row.patient_id, patient_ids)
    within = and_(theirs, compile_visibility_shared(specialise(predicate, facts, now=now)))
    guarded = or_(
        within,
        and_(
            row.patient_id.is_(None),
            compile_visibility_shared(specialise(predicate, NOBODY, now=now)),
        ),
        and_(not_(theirs), compile_visibility_live(predicate)),
    )
    return PersonVisibility(within=within, guarded=guarded)


def per_person(record: AuditRecord, persons: Iterable[str]) -> list[AuditRecord]:
    """One record per person touched (at least one, for no person in particular)."""
    distinct = sorted(set(persons))
    if not distinct:
        return [record]
    return [replace(record, person=p) for p in distinct]


# --- In one round trip, raw (the PostgreSQL read paths) ---------------------------------

_REL = CareRelationshipRow.__tablename__
_GRANT = BreakGlassGrantRow.__tablename__
_DIRECTIVE = ConsentDirectiveRow.__tablename__
_IDENTITY = IdentityRecord.__tablename__

# $1: the patient asked about. Rows: 'p' the person's source patients (filing order by pk),
# 'r' relationships, 'g' break-glass grants, 'd' one row if the person has any directive.
FACTS_SQL = f"""
WITH person AS MATERIALIZED (
    SELECT person_id FROM {_IDENTITY} WHERE patient_id = $1
), ids AS MATERIALIZED (
    SELECT $1::varchar AS patient_id
    UNION
    SELECT i.patient_id FROM {_IDENTITY} i WHERE i.person_id = (SELECT person_id FROM person)
)
SELECT 'p' AS what, i.person_id, i.patient_id, NULL::varchar AS kind,
       NULL::varchar AS organisation, NULL::varchar AS practitioner,
       NULL::timestamptz AS ends_at, NULL::varchar AS source_organisation, i.pk
  FROM {_IDENTITY} i WHERE i.person_id = (SELECT person_id FROM person)
UNION ALL
SELECT 'r', NULL, c.patient_id, c.kind, c.organisation, c.practitioner, c.ends_at,
       c.source_organisation, NULL
  FROM {_REL} c WHERE c.patient_id IN (SELECT patient_id FROM ids)
UNION ALL
SELECT 'g', NULL, g.patient_id, NULL, NULL, g.practitioner, g.expires_at, NULL, NULL
  FROM {_GRANT} g WHERE g.patient_id IN (SELECT patient_id FROM ids)
UNION ALL
SELECT 'd', NULL, d.patient_id, NULL, NULL, NULL, NULL, NULL, NULL
  FROM (SELECT patient_id FROM {_DIRECTIVE}
         WHERE patient_id IN (SELECT patient_id FROM ids) LIMIT 1) d
""".encode()


@dataclass(frozen=True, slots=True)
class Who:
    """The person a request is about, and what consent needs to know about them."""

    person_id: str | None
    patient_ids: list[str]  # identity's source patients, filing order (or just the one)
    facts: PersonFacts


def who_from_rows(patient_id: str, rows: Sequence[Any]) -> Who:
    filed = sorted((r for r in rows if r.what == "p"), key=lambda r: r.pk)
    facts = facts_from_rows(rows)
    if not filed:
        return Who(None, [patient_id], facts)
    return Who(filed[0].person_id, [r.patient_id for r in filed], facts)

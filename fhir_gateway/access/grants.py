"""Break-glass and self-claimed relationships: recorded, time-limited, audited.

Break-glass (decision 6 of the design brief): only a role the agreement names, with purpose
of use BTG and a mandatory reason, for one user and one person, for the agreement's hours
(default 4). The grant, its AuditEvent and the entry in the privacy officers' break-glass
queue are written in one transaction that commits before the endpoint answers; the record
itself is then read with purpose BTG, like any other read, through the consent predicate,
which lifts objections and the missing relationship and nothing else.

A self-claimed relationship (where the agreement allows it for the role) is a relationship
the user states with a reason; it lasts the agreement's hours and is audited.
"""

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.agreements import Agreement
from consent.audit import Action, AuditRecord, Outcome, record_for
from consent.context import AccessContext, CallerKind, Purpose
from fhir_gateway.access.models import BreakGlassGrantRow, CareRelationshipRow
from fhir_gateway.access.people import person_references
from fhir_gateway.audit.repository import add_events
from fhir_gateway.outcomes import Forbidden, Invalid, NotFound
from fhir_gateway.store.models import ResourceRow

MIN_REASON = 10


def _require_patient(session: Session, patient_id: str) -> None:
    found = session.scalar(
        select(ResourceRow.pk).where(
            ResourceRow.resource_type == "Patient",
            ResourceRow.resource_id == patient_id,
            ResourceRow.deleted.is_(False),
        )
    )
    if found is None:
        raise NotFound(f"Patient/{patient_id} is not known")


def _reason(reason: str) -> str:
    text = reason.strip()
    if len(text) < MIN_REASON:
        raise Invalid(f"A reason of at least {MIN_REASON} characters is required")
    return text


def _audit(
    session: Session,
    context: AccessContext,
    *,
    action: Action,
    interaction: str,
    query: str,
    patient_id: str,
    now: datetime,
    detail: str,
) -> None:
    """The AuditEvent of a grant or claim, in the same transaction as the grant itself."""
    person = person_references(session, [patient_id])[patient_id]
    add_events(
        session,
        [
            record_for(
                context,
                recorded_at=now,
                action=action,
                interaction=interaction,
                outcome=Outcome.SUCCESS,
                query=query,
                person=person,
                detail=detail,
            )
        ],
    )


def break_glass(
    session: Session,
    *,
    context: AccessContext,
    agreement: Agreement,
    patient_id: str,
    reason: str,
    query: str,
    now: datetime,
) -> BreakGlassGrantRow:
    """Grant ``context``'s user break-glass access to the person of ``patient_id``."""
    if context.kind is not CallerKind.USER or context.user is None:
        raise Forbidden("Only a member of staff signed in as themselves may break glass")
    if context.purpose is not Purpose.BTG:
        raise Forbidden("Break-glass needs a token with purpose of use BTG")
    if context.role not in agreement.break_glass_roles:
        raise Forbidden("The sharing agreement does not let this role break glass")
    text = _reason(reason)
    _require_patient(session, patient_id)
    grant = BreakGlassGrantRow(
        grant_id=uuid.uuid4().hex,
        practitioner=context.user,
        organisation=context.organisation or "",
        role=context.role or "",
        patient_id=patient_id,
        reason=text,
        granted_at=now,
        expires_at=now + timedelta(hours=agreement.break_glass_hours),
    )
    session.add(grant)
    _audit(
        session,
        context,
        action=Action.EXECUTE,
        interaction="break-glass",
        query=query,
        patient_id=patient_id,
        now=now,
        detail=f"Break-glass until {grant.expires_at.isoformat()}: {text}",
    )
    session.flush()
    return grant


def claim_relationship(
    session: Session,
    *,
    context: AccessContext,
    agreement: Agreement,
    patient_id: str,
    reason: str,
    query: str,
    now: datetime,
) -> CareRelationshipRow:
    """Record a relationship the user claims, where the agreement allows it for the role."""
    if context.kind is not CallerKind.USER or context.user is None:
        raise Forbidden("Only a member of staff signed in as themselves may claim a relationship")
    if context.role not in agreement.self_claim_roles:
        raise Forbidden("The sharing agreement does not let this role claim a relationship")
    text = _reason(reason)
    _require_patient(session, patient_id)
    relationship = CareRelationshipRow(
        resource_pk=None,
        patient_id=patient_id,
        kind="self-claimed",
        organisation=None,
        practitioner=context.user,
        source_organisation=context.organisation,
        ends_at=now + timedelta(hours=agreement.self_claim_hours),
        reason=text,
    )
    session.add(relationship)
    _audit(
        session,
        context,
        action=Action.CREATE,
        interaction="claim-relationship",
        query=query,
        patient_id=patient_id,
        now=now,
        detail=f"Self-claimed relationship until {relationship.ends_at}: {text}",
    )
    session.flush()
    return relationship


def list_break_glass(
    session: Session, *, since: datetime | None, limit: int
) -> list[BreakGlassGrantRow]:
    """The privacy officers' break-glass queue, newest first."""
    stmt = select(BreakGlassGrantRow).order_by(BreakGlassGrantRow.pk.desc()).limit(limit)
    if since is not None:
        stmt = stmt.where(BreakGlassGrantRow.granted_at >= since)
    return list(session.scalars(stmt))


def agreement_change_record(
    context: AccessContext, *, version: str, query: str, now: datetime
) -> AuditRecord:
    return record_for(
        context,
        recorded_at=now,
        action=Action.UPDATE,
        interaction="agreement-load",
        outcome=Outcome.SUCCESS,
        query=query,
        detail=f"Sharing agreement version {version} loaded",
    )

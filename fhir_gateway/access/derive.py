"""Write-time derivation of what consent decides over: labels, relationships, directives.

Runs inside the write's transaction, for every path that writes resources
(``repository.write_batch``), so a Consent or an admission is in force from the moment it is
committed and never before. Rows derived from a resource are replaced whole when it is
written again and removed when it is deleted.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from consent.directives import Directive, DirectiveError, directives_from_consent
from consent.relationships import relationships_from
from fhir_gateway.access.models import CareRelationshipRow, ConsentDirectiveRow
from fhir_gateway.outcomes import Unprocessable
from fhir_gateway.search.dates import MAX_DATE, MIN_DATE, InvalidDate, parse_range
from fhir_gateway.search.registry import SUPPORTED_TYPES
from fhir_gateway.store.models import ResourceRow

ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
SOURCE_PREFIXES = ("urn:carejoin:source:", "urn:ods:")
RELATIONSHIP_TYPES = frozenset({"Patient", "Encounter", "EpisodeOfCare", "CareTeam"})
DIRECTIVE_TYPES = frozenset({"Consent"})


def source_organisation(source: str | None) -> str | None:
    """The ODS code in ``meta.source`` (``urn:carejoin:source:<ODS>``), if it names one."""
    if not source:
        return None
    for prefix in SOURCE_PREFIXES:
        if source.startswith(prefix):
            code = source[len(prefix) :]
            return code if code.isalnum() and len(code) <= 32 else None
    return None


def _instant(text: str, end: bool) -> datetime:
    try:
        low, high = parse_range(text)
    except InvalidDate as exc:
        raise Unprocessable(f"'{text}' is not a FHIR dateTime") from exc
    return high if end else low


class _Organisations:
    """Organization references to ODS codes, looked up once per write batch."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._known: dict[str, str | None] = {}

    def __call__(self, reference: str) -> str | None:
        if reference not in self._known:
            resource_id = reference.removeprefix("Organization/")
            body = self._session.scalar(
                select(ResourceRow.body).where(
                    ResourceRow.resource_type == "Organization",
                    ResourceRow.resource_id == resource_id,
                    ResourceRow.deleted.is_(False),
                )
            )
            self._known[reference] = _ods_of(orjson.loads(body)) if body else None
        return self._known[reference]


def _ods_of(organisation: Any) -> str | None:
    for identifier in organisation.get("identifier") or ():
        if isinstance(identifier, dict) and identifier.get("system") == ODS_SYSTEM:
            value = identifier.get("value")
            return value if isinstance(value, str) else None
    return None


def replace_derived(session: Session, writes: Sequence[Any], *, now: datetime) -> None:
    """Re-derive relationships and directives for the written resources (``PendingWrite``s
    whose ``existing_pk`` is set). A Consent that cannot be enforced is refused (422) and
    the whole write rolls back."""
    relevant = [
        w
        for w in writes
        if w.resource_type in RELATIONSHIP_TYPES or w.resource_type in DIRECTIVE_TYPES
    ]
    if not relevant:
        return
    pks = [w.existing_pk for w in relevant]
    session.execute(delete(CareRelationshipRow).where(CareRelationshipRow.resource_pk.in_(pks)))
    session.execute(delete(ConsentDirectiveRow).where(ConsentDirectiveRow.resource_pk.in_(pks)))
    resolve = _Organisations(session)
    relationships: list[dict[str, Any]] = []
    directives: list[dict[str, Any]] = []
    for write in relevant:
        if write.method == "DELETE" or write.body is None or write.patient_id is None:
            continue
        resource = orjson.loads(write.body)
        if write.resource_type in RELATIONSHIP_TYPES:
            for r in relationships_from(
                resource,
                patient_id=write.patient_id,
                source_organisation=write.source_org,
                resolve_organisation=resolve,
                parse_instant=_instant,
                now=now,
            ):
                relationships.append(
                    {
                        "resource_pk": write.existing_pk,
                        "patient_id": r.patient_id,
                        "kind": r.kind,
                        "organisation": r.organisation,
                        "practitioner": r.practitioner,
                        "source_organisation": r.source_organisation,
                        "ends_at": r.ends_at,
                        "reason": None,
                    }
                )
        else:
            try:
                found = directives_from_consent(
                    resource,
                    patient_id=write.patient_id,
                    resolve_organisation=resolve,
                    parse_instant=_instant,
                    resource_types=SUPPORTED_TYPES,
                )
            except DirectiveError as exc:
                raise Unprocessable(f"Consent/{write.resource_id}: {exc}") from exc
            directives.extend(directive_values(d, write.existing_pk) for d in found)
    if relationships:
        session.execute(insert(CareRelationshipRow), relationships)
    if directives:
        session.execute(insert(ConsentDirectiveRow), directives)


def directive_values(d: Directive, resource_pk: int | None) -> dict[str, object]:
    """The ``consent_directive`` row recording ``d`` (from the Consent at ``resource_pk``).

    A period of data open at one end is stored with the earliest or latest instant there
    (the date index's own bounds), so that the SQL tests it with plain comparisons; a
    directive naming no period stores neither end."""
    dated = d.data_from is not None or d.data_to is not None
    return {
        "resource_pk": resource_pk,
        "patient_id": d.patient_id,
        "decision": d.decision,
        "level": d.level,
        "recipient_organisation": d.recipient_organisation,
        "recipient_role": d.recipient_role,
        "source_organisation": d.source_organisation,
        "item": d.item,
        "label": d.label,
        "purpose": d.purpose,
        "resource_class": d.resource_class,
        "code_system": d.code[0] if d.code else None,
        "code": d.code[1] if d.code else None,
        "data_from": (d.data_from or MIN_DATE) if dated else None,
        "data_to": (d.data_to or MAX_DATE) if dated else None,
        "starts_at": d.starts_at,
        "ends_at": d.ends_at,
    }

"""``Patient/$everything`` over a set of source patients (the joined-up record of a Person).

The spec's parameters (R4 Patient-everything): ``start``/``end`` select by care date (a
resource without a care date is kept, since the spec leaves it in scope), ``_since`` by
``meta.lastUpdated``, ``_type`` by resource type, ``_count`` sets the page size; pages are
keyset on the resource row, so paging through a changing record shows every unchanged
resource exactly once. Resources the record refers to but that sit outside any patient
compartment (Practitioner, Organization, Location, Medication...) come with the first page,
as ``search.mode = include``.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, not_, or_, select, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from fhir_gateway.store import repository
from fhir_gateway.store.care_dates import CARE_DATE_PARAMS
from fhir_gateway.store.models import ResourceRow, search_date, search_reference
from fhir_gateway.store.repository import StoredResource
from fhir_gateway.store.visibility import in_set

REFERENCED_TYPES = (
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Medication",
    "Device",
    "HealthcareService",
)


@dataclass(frozen=True, slots=True)
class EverythingPage:
    resources: list[StoredResource]
    included: list[StoredResource]
    next_cursor: int | None
    total: int


def care_date_filter(start: Any, end: Any) -> ColumnElement[bool]:
    pairs = list(CARE_DATE_PARAMS.items())
    is_care_date = tuple_(search_date.c.resource_type, search_date.c.param).in_(pairs)
    has_care_date = exists().where(search_date.c.resource_pk == ResourceRow.pk, is_care_date)
    overlaps = [search_date.c.resource_pk == ResourceRow.pk, is_care_date]
    if start is not None:
        overlaps.append(search_date.c.high >= start)
    if end is not None:
        overlaps.append(search_date.c.low <= end)
    return or_(not_(has_care_date), exists().where(and_(*overlaps)))


def _owners(session: Session, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
    """The owning patient of each current, undeleted resource among ``keys`` (a label, read
    only to choose which form of the caller's predicate decides the resource)."""
    rows = session.execute(
        select(ResourceRow.resource_type, ResourceRow.resource_id, ResourceRow.patient_id).where(
            tuple_(ResourceRow.resource_type, ResourceRow.resource_id).in_(list(keys)),
            ResourceRow.deleted.is_(False),
        )
    )
    return {(row.resource_type, row.resource_id): row.patient_id for row in rows}


def everything(
    session: Session,
    patient_ids: Sequence[str],
    *,
    count: int,
    cursor: int | None = None,
    types: Sequence[str] = (),
    since: datetime | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    visible: ColumnElement[bool] | None = None,
    visible_included: ColumnElement[bool] | None = None,
    also_include: Sequence[tuple[str, str]] = (),
) -> EverythingPage:
    """One page of the joined-up record of ``patient_ids`` (one person).

    ``visible`` filters the compartment's rows (it may be specialised for this person);
    ``visible_included`` filters the resources they refer to, which may belong to anyone
    (default: ``visible``). ``also_include``: resources (type, id) to include first with the
    first page unless they are matches already (the person's Person)."""
    conditions: list[ColumnElement[bool]] = [
        in_set(ResourceRow.patient_id, patient_ids),
        ResourceRow.deleted.is_(False),
    ]
    if visible is not None:
        conditions.append(visible)
    if types:
        conditions.append(ResourceRow.resource_type.in_(list(types)))
    if since is not None:
        conditions.append(ResourceRow.last_updated >= since)
    if start is not None or end is not None:
        conditions.append(care_date_filter(start, end))
    page_conditions = list(conditions)
    if cursor is not None:
        page_conditions.append(ResourceRow.pk > cursor)
    rows = session.execute(
        select(*repository.CURRENT_COLUMNS)
        .where(*page_conditions)
        .order_by(ResourceRow.pk)
        .limit(count + 1)
    ).all()
    resources = [repository.stored_from_row(row) for row in rows[:count]]
    next_cursor = resources[-1].pk if len(rows) > count and resources else None
    if cursor is None and next_cursor is None:
        total = len(resources)  # the whole record fits in one page: no count query needed
    else:
        total = int(
            session.scalar(select(func.count()).select_from(ResourceRow).where(*conditions)) or 0
        )
    included: list[StoredResource] = []
    if cursor is not None:
        return EverythingPage(resources, included, next_cursor, total)
    matched = {(r.resource_type, r.resource_id) for r in resources}
    # The resources to include first (the Person): one whose owner is this person is decided
    # by ``visible``, as the page's rows are: when the page holds the whole unfiltered record
    # and it is not among them, the caller may not see it. Only one owned by someone else
    # (or nobody) needs the predicate for anyone's rows.
    first: list[StoredResource] = []
    keys: list[tuple[str, str]] = []
    extra = [key for key in also_include if key not in matched]
    if extra:
        mine = set(patient_ids)
        whole = next_cursor is None and since is None and start is None and end is None
        for key, owner in _owners(session, extra).items():
            if owner is None or owner not in mine:
                keys.append(key)
            elif not (whole and (not types or key[0] in types)):
                found = repository.get_current(session, *key, visible=visible)
                if found is not None and not found.deleted:
                    first.append(found)
    if not types or set(types) & set(REFERENCED_TYPES):
        wanted = [t for t in REFERENCED_TYPES if not types or t in types]
        owned = select(ResourceRow.pk).where(*conditions).scalar_subquery()
        targets = session.execute(
            select(search_reference.c.target_type, search_reference.c.target_id)
            .where(
                search_reference.c.resource_pk.in_(owned),
                in_set(search_reference.c.target_type, wanted),
                search_reference.c.target_id.is_not(None),
            )
            .distinct()
        ).all()
        keys.extend((t, i) for t, i in targets)
    included = first
    if keys:
        found_many = repository.get_current_many(
            session,
            keys,
            visible=visible_included if visible_included is not None else visible,
        )
        included = (
            first
            + [r for key in extra if (r := found_many.pop(key, None)) and not r.deleted]
            + sorted(
                (r for r in found_many.values() if not r.deleted),
                key=lambda r: (r.resource_type, r.resource_id),
            )
        )
    return EverythingPage(resources, included, next_cursor, total)

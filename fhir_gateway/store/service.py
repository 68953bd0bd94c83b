"""The store's use cases: the FHIR interactions on single resources.

This module is the one place writes are prepared (validated, given id and meta, indexed,
labelled with their owning patient) and the one place reads pass through. The consent layer
will add its visibility predicate here, so that every read path is filtered in the query.
"""

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast
from urllib.parse import parse_qsl

from sqlalchemy import ColumnElement
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from consent.labels import default_value_sets, label_resource
from consent.visibility import labels_text
from fhir_gateway.access import derive, writer
from fhir_gateway.outcomes import (
    Conflict,
    Gone,
    Invalid,
    MethodNotAllowed,
    NotFound,
    NotSupported,
    PreconditionFailed,
)
from fhir_gateway.search.extract import extract
from fhir_gateway.search.params import SearchError, SearchRequest, parse_search
from fhir_gateway.search.query import (
    SearchPage,
    VisibleOn,
    include_targets,
    revinclude_sources,
    run_search,
)
from fhir_gateway.search.registry import PATIENT_COMPARTMENT, SEARCH_PARAMS
from fhir_gateway.search.storage import stored
from fhir_gateway.store import repository
from fhir_gateway.store.models import ResourceRow
from fhir_gateway.store.repository import PendingWrite, StoredResource
from fhir_gateway.validation import ElementMemo, dumps, validate_resource

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def check_id(resource_id: str) -> str:
    if not ID_RE.match(resource_id):
        raise Invalid(
            f"'{resource_id}' is not a valid FHIR id (1-64 of A-Z, a-z, 0-9, '-' and '.')"
        )
    return resource_id


def new_id() -> str:
    return str(uuid.uuid4())


def format_instant(moment: datetime) -> str:
    """FHIR instant with millisecond precision and an explicit UTC zone."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class WriteResult:
    stored: StoredResource
    created: bool
    changed: bool = True


def prepare_write(
    resource: Mapping[str, Any],
    *,
    resource_id: str,
    version_id: int,
    now: datetime,
    method: str,
    existing_pk: int | None,
    validate: bool = True,
    memo: ElementMemo | None = None,
) -> PendingWrite:
    """Validate ``resource`` and turn it into a ``PendingWrite``: body with id and meta,
    index entries, owning patient, source and security labels. ``memo``: the elements a bulk
    load or a bundle has validated already (``validation.ElementMemo``)."""
    if validate:
        validate_resource(resource, memo=memo)
    resource_type = str(resource["resourceType"])
    if resource_type == "AuditEvent":
        # Whatever the path (REST, a bundle, a bulk file): only the server writes its audit.
        raise MethodNotAllowed("AuditEvents are written by this server alone (docs/audit.md)")
    meta = dict(resource.get("meta") or {})
    scope = writer.current()
    if scope is not None and scope.attribute_to and not meta.get("source"):
        meta["source"] = scope.attribute_to  # what a caller creates is attributed to it
    meta["versionId"] = str(version_id)
    meta["lastUpdated"] = format_instant(now)
    body: dict[str, Any] = {"resourceType": resource_type, "id": resource_id, "meta": meta}
    for key, value in resource.items():
        if key not in body:
            body[key] = value
    # Sensitive data is labelled when written: the categories go in an indexed column and
    # their confidentiality and DS4P codes into meta.security (what the source sent is kept).
    categories, security_codings = label_resource(body, default_value_sets())
    if security_codings:
        meta["security"] = security_codings
    index = extract(body)
    security = " ".join(
        f"{label.get('system', '')}|{label.get('code', '')}"
        for label in meta.get("security") or ()
        if isinstance(label, Mapping)
    )
    source = meta.get("source")
    return PendingWrite(
        resource_type=resource_type,
        resource_id=resource_id,
        version_id=version_id,
        last_updated=now,
        method=method,
        body=dumps(body).decode(),
        patient_id=owning_patient(resource_type, resource_id, index),
        source=str(source)[:255] if source else None,
        security=security[:1024] or None,
        index=index,
        existing_pk=existing_pk,
        source_org=derive.source_organisation(str(source) if source else None),
        sensitivity=labels_text(categories),
    )


def owning_patient(resource_type: str, resource_id: str, index: Any) -> str | None:
    """The Patient whose compartment holds this resource (R4 CompartmentDefinition patient):
    the first Patient its compartment parameters refer to, taking the parameters in the
    order the registry defines them."""
    if resource_type == "Patient":
        return resource_id
    for params in _compartment_rows(resource_type):
        for entry in index.references:
            if entry.param in params and entry.target_type == "Patient" and entry.target_id:
                return str(entry.target_id)
    return None


@cache
def _compartment_rows(resource_type: str) -> tuple[frozenset[str], ...]:
    """For each compartment parameter of ``resource_type`` in the registry's order, the
    parameters whose index rows hold its values (a derived parameter has none of its own)."""
    compartment = PATIENT_COMPARTMENT.get(resource_type, ())
    return tuple(
        frozenset(stored(resource_type, code).params)
        for code in SEARCH_PARAMS.get(resource_type, {})
        if code in compartment
    )


def prepare_delete(current: StoredResource, *, now: datetime) -> PendingWrite:
    return PendingWrite(
        resource_type=current.resource_type,
        resource_id=current.resource_id,
        version_id=current.version_id + 1,
        last_updated=now,
        method="DELETE",
        body=None,
        # The deletion keeps the labels of what it deletes: its history entry is governed
        # as the resource was.
        patient_id=current.patient_id,
        source=None,
        security=current.security,
        index=None,
        existing_pk=current.pk,
        source_org=current.source_org,
        sensitivity=current.sensitivity,
    )


def same_content(current: StoredResource, pending: PendingWrite) -> bool:
    """True when ``pending`` would store exactly what is current, apart from version and time.

    Re-sending the same data must change nothing (sources re-send whole records), so such an
    update keeps the current version rather than writing a new one.
    """
    if current.deleted or current.body is None or pending.body is None:
        return False
    meta_old = (
        f'"versionId":"{current.version_id}","lastUpdated":"{format_instant(current.last_updated)}"'
    )
    meta_new = (
        f'"versionId":"{pending.version_id}","lastUpdated":"{format_instant(pending.last_updated)}"'
    )
    return pending.body.replace(meta_new, meta_old, 1) == current.body


def write(session: Session, writes: list[PendingWrite]) -> list[StoredResource]:
    """Write a batch, turning a lost race on a new id into 409 rather than a 500."""
    try:
        with session.begin_nested():
            return repository.write_batch(session, writes)
    except IntegrityError as exc:
        raise Conflict(
            "Another request changed the same resource at the same time; retry the request"
        ) from exc


def create(
    session: Session, resource: Mapping[str, Any], *, now: datetime, resource_id: str | None = None
) -> WriteResult:
    """FHIR create (R4 3.1.0.5): the server assigns the id; any id in the body is ignored."""
    pending = prepare_write(
        resource,
        resource_id=resource_id or new_id(),
        version_id=1,
        now=now,
        method="POST",
        existing_pk=None,
    )
    (stored,) = write(session, [pending])
    return WriteResult(stored=stored, created=True)


def update(
    session: Session,
    resource_type: str,
    resource_id: str,
    resource: Mapping[str, Any],
    *,
    now: datetime,
    if_match: int | None = None,
) -> WriteResult:
    """FHIR update (R4 3.1.0.4), creating the resource if it does not exist (update as create).

    ``if_match`` is the version the client last saw (``If-Match: W/"n"``); a mismatch is 412.
    """
    check_id(resource_id)
    body_id = resource.get("id")
    if body_id is None:
        raise Invalid("The resource in an update must carry an id equal to the id in the URL")
    if body_id != resource_id:
        raise Invalid(
            f"The id in the body ('{body_id}') differs from the id in the URL ('{resource_id}')"
        )
    current = repository.get_current(session, resource_type, resource_id, for_update=True)
    repository.require_writable(current, resource_type, resource_id, by_id=True)
    if if_match is not None:
        if current is None or current.deleted:
            raise PreconditionFailed(
                f"{resource_type}/{resource_id} does not exist, so it cannot match version {if_match}"
            )
        if current.version_id != if_match:
            raise PreconditionFailed(
                f"{resource_type}/{resource_id} is at version {current.version_id}, not {if_match}"
            )
    version = 1 if current is None else current.version_id + 1
    pending = prepare_write(
        resource,
        resource_id=resource_id,
        version_id=version,
        now=now,
        method="PUT",
        existing_pk=None if current is None else current.pk,
    )
    if current is not None and same_content(current, pending):
        return WriteResult(stored=current, created=False, changed=False)
    (stored,) = write(session, [pending])
    return WriteResult(stored=stored, created=current is None or current.deleted)


def delete(
    session: Session, resource_type: str, resource_id: str, *, now: datetime
) -> StoredResource | None:
    """FHIR delete (R4 3.1.0.7): a new, deleted version; history is kept. Idempotent."""
    current = repository.get_current(session, resource_type, resource_id, for_update=True)
    repository.require_writable(current, resource_type, resource_id, by_id=True)
    if current is None or current.deleted:
        return None
    (stored,) = write(session, [prepare_delete(current, now=now)])
    return stored


def require_current(
    stored: StoredResource | None, resource_type: str, resource_id: str
) -> StoredResource:
    """A read's answer: the current version, or 404 when unknown and 410 when deleted."""
    if stored is None:
        raise NotFound(f"{resource_type}/{resource_id} is not known")
    if stored.deleted:
        raise Gone(f"{resource_type}/{resource_id} has been deleted")
    return stored


def require_version(
    stored: StoredResource | None, resource_type: str, resource_id: str, version_id: str
) -> StoredResource:
    """A vread's answer: the version, or 404 when there is none and 410 for a deletion."""
    if stored is None:
        raise NotFound(f"{resource_type}/{resource_id} has no version {version_id}")
    if stored.deleted:
        raise Gone(f"Version {version_id} of {resource_type}/{resource_id} is a deletion")
    return stored


def read(
    session: repository.Reader,
    resource_type: str,
    resource_id: str,
    *,
    visible: ColumnElement[bool] | None = None,
) -> StoredResource:
    """The current version (404 if unknown or not visible to the caller, 410 if deleted)."""
    return require_current(
        repository.get_current(session, resource_type, resource_id, visible=visible),
        resource_type,
        resource_id,
    )


def vread(
    session: repository.Reader, resource_type: str, resource_id: str, version_id: str
) -> StoredResource:
    if not version_id.isdigit():
        raise NotFound(f"{resource_type}/{resource_id} has no version '{version_id}'")
    stored = repository.get_version(session, resource_type, resource_id, int(version_id))
    return require_version(stored, resource_type, resource_id, version_id)


@dataclass(frozen=True, slots=True)
class SearchResult:
    page: SearchPage
    included: list[StoredResource]


def search(
    session: Session,
    request: SearchRequest,
    *,
    base_url: str,
    visible_on: VisibleOn | None = None,
    visible_rows: ColumnElement[bool] | None = None,
) -> SearchResult:
    """Run a search and its ``_include``/``_revinclude``s (one level, plus ``:iterate``).

    ``visible_on`` (consent's predicate, compiled for a row) is applied to the matches before
    they are counted, sorted or paged, to chained parameters, and to every included resource.
    """
    visible = (
        visible_rows
        if visible_rows is not None
        else visible_on(ResourceRow)
        if visible_on is not None
        else None
    )
    try:
        page = run_search(
            session, request, base_url=base_url, visible_on=visible_on, visible_rows=visible_rows
        )
    except SearchError as exc:
        raise (NotSupported if exc.unsupported else Invalid)(str(exc)) from exc
    included: dict[int, StoredResource] = {}
    seen = {r.pk for r in page.resources}
    frontier = list(page.resources)
    for _round in range(3):  # :iterate follows at most three hops
        found: list[StoredResource] = []
        pks = [r.pk for r in frontier]
        keys = [(r.resource_type, r.resource_id) for r in frontier]
        for inc in request.includes:
            if _round > 0 and not inc.iterate:
                continue
            targets = include_targets(
                session,
                pks,
                source_type=inc.source_type,
                param=inc.param,
                target_type=inc.target_type,
            )
            found.extend(
                r
                for r in repository.get_current_many(session, targets, visible=visible).values()
                if not r.deleted
            )
        for inc in request.revincludes:
            if _round > 0 and not inc.iterate:
                continue
            source_pks = revinclude_sources(
                session,
                keys,
                source_type=inc.source_type,
                param=inc.param,
                target_type=inc.target_type,
            )
            found.extend(
                r
                for r in repository.get_by_pks(session, source_pks, visible=visible).values()
                if not r.deleted
            )
        frontier = []
        for r in found:
            if r.pk not in seen:
                seen.add(r.pk)
                included[r.pk] = r
                frontier.append(r)
        if not frontier:
            break
    return SearchResult(page=page, included=list(included.values()))


def find_matches(
    session: Session, resource_type: str, query: str, *, base_url: str
) -> list[StoredResource]:
    """Resources matching a conditional interaction's search (``If-None-Exist``, ``PUT Type?``).

    Parameters a conditional interaction does not understand are an error, never ignored: a
    lenient match here could overwrite or delete the wrong record.
    """
    items = parse_qsl(query, keep_blank_values=True)
    if not items:
        raise Invalid("A conditional interaction needs search criteria")
    try:
        request = parse_search(resource_type, items, strict=True, default_count=2, max_count=2)
    except SearchError as exc:
        raise Invalid(f"Conditional criteria '{query}': {exc}") from exc
    request.total = "none"
    request.sort = []
    request.count = 2
    scope = writer.current()
    visible_on: VisibleOn | None = None
    if scope is not None and scope.organisations is not None:
        writable = sorted(scope.organisations)

        def visible_on(row: Any) -> ColumnElement[bool]:
            # A conditional write matches only what the caller may write.
            return cast(ColumnElement[bool], row.source_org.in_(writable))

    return search(session, request, base_url=base_url, visible_on=visible_on).page.resources


def history(
    session: Session,
    *,
    resource_type: str | None,
    resource_id: str | None,
    since: datetime | None,
    count: int,
    cursor: int | None,
    visible_on: VisibleOn | None = None,
) -> tuple[list[tuple[StoredResource, str]], int | None]:
    """History entries (version, method), newest first (R4 3.1.0.12); returns the next page's cursor."""
    return repository.list_history(
        session,
        resource_type=resource_type,
        resource_id=resource_id,
        since=since,
        count=count,
        before_pk=cursor,
        visible_on=visible_on,
    )


def read_any(
    session: Session,
    resource_type: str,
    resource_id: str,
    *,
    visible: ColumnElement[bool] | None = None,
) -> StoredResource:
    """The current row even if deleted (instance history of a deleted resource is allowed)."""
    current = repository.get_current(session, resource_type, resource_id, visible=visible)
    if current is None:
        raise NotFound(f"{resource_type}/{resource_id} is not known")
    return current

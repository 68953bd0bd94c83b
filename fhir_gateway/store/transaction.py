"""Transaction and batch bundles (R4 3.1.0.11 "Batch/Transaction").

A transaction is all or nothing: every entry is checked and prepared first, then all writes
go to the database in a few multi-row statements inside the caller's transaction, and any
failure raises before anything is committed. Entries are processed in the order the spec
gives (DELETE, POST, PUT/PATCH, GET/HEAD), ``urn:uuid`` and other fullUrls are resolved to the
ids the server assigns, and the response lists entries in the order of the request.
A batch runs each entry on its own, in a savepoint, and reports each result.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from fhir_gateway.outcomes import Invalid, Issue, OutcomeError, PreconditionFailed
from fhir_gateway.search.registry import SUPPORTED_TYPES
from fhir_gateway.store import repository, service
from fhir_gateway.store.repository import PendingWrite, StoredResource
from fhir_gateway.validation import ElementMemo

MEMO_FROM = 8  # entries: a bundle this long validates each repeated element once
MEMO_LIMIT = 5_000  # elements a bundle's memo holds (about 6 KB each) before starting afresh

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass(slots=True)
class EntryResponse:
    """``Bundle.entry.response`` plus what to return as ``entry.resource``."""

    status: str
    stored: StoredResource | None = None
    outcome: dict[str, Any] | None = None
    body: Any = None  # a searchset or other JSON for GET entries
    location: bool = False


@dataclass(slots=True)
class _Entry:
    index: int
    method: str
    url: str
    resource: dict[str, Any] | None
    full_url: str | None
    if_none_exist: str | None
    if_match: int | None
    target_type: str = ""
    target_id: str | None = None
    query: str | None = None
    existing: StoredResource | None = None
    response: EntryResponse | None = None
    skip_write: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


GetHandler = Callable[[Session, str], EntryResponse]


def entries_of(bundle: Mapping[str, Any]) -> list[_Entry]:
    """Check the shape of a transaction or batch bundle's entries (400 with paths if wrong)."""
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise Invalid("Bundle.entry must be a list")
    entries: list[_Entry] = []
    for i, raw in enumerate(raw_entries):
        where = f"Bundle.entry[{i}]"
        if not isinstance(raw, dict):
            raise _invalid(where, "is not an object")
        request = raw.get("request")
        if not isinstance(request, dict):
            raise _invalid(f"{where}.request", "is required in a transaction or batch")
        method = request.get("method")
        url = request.get("url")
        if method not in ORDER:
            raise _invalid(
                f"{where}.request.method",
                f"'{method}' is not GET, HEAD, POST, PUT, PATCH or DELETE",
            )
        if not isinstance(url, str) or not url:
            raise _invalid(f"{where}.request.url", "is required")
        resource = raw.get("resource")
        if method in ("POST", "PUT") and not isinstance(resource, dict):
            raise _invalid(f"{where}.resource", f"is required for {method}")
        if_match = None
        if request.get("ifMatch") is not None:
            from fhir_gateway.rest.http import parse_if_match

            if_match = parse_if_match(str(request["ifMatch"]))
        entries.append(
            _Entry(
                index=i,
                method=method,
                url=url.lstrip("/"),
                resource=resource if isinstance(resource, dict) else None,
                full_url=raw.get("fullUrl"),
                if_none_exist=request.get("ifNoneExist"),
                if_match=if_match,
            )
        )
    return entries


def _invalid(path: str, message: str) -> Invalid:
    return Invalid(
        f"{path} {message}",
        issues=(Issue(code="invalid", diagnostics=f"{path} {message}", expression=(path,)),),
    )


def _split_url(entry: _Entry, base_url: str) -> None:
    url = entry.url
    base = base_url.rstrip("/") + "/"
    if url.startswith(base):
        url = url[len(base) :]
    path, _, query = url.partition("?")
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in SUPPORTED_TYPES:
        raise _invalid(
            f"Bundle.entry[{entry.index}].request.url",
            f"'{entry.url}' does not name a supported resource type",
        )
    entry.target_type = parts[0]
    entry.target_id = parts[1] if len(parts) > 1 else None
    entry.query = query or None


def process_transaction(
    session: Session,
    bundle: Mapping[str, Any],
    *,
    now: datetime,
    base_url: str,
    get_handler: GetHandler,
    memo: ElementMemo | None = None,
) -> list[EntryResponse]:
    """Process a transaction bundle; raise (so the caller rolls back) if any entry fails.
    ``memo``: elements already validated (a batch's earlier entries); a bundle of
    ``MEMO_FROM`` entries or more has one of its own."""
    entries = entries_of(bundle)
    if memo is None and len(entries) >= MEMO_FROM:
        memo = ElementMemo(limit=MEMO_LIMIT)
    for entry in entries:
        if entry.method in ("GET", "HEAD"):
            continue
        if entry.method == "PATCH":
            raise _invalid(f"Bundle.entry[{entry.index}].request.method", "PATCH is not supported")
        _split_url(entry, base_url)
    ordered = sorted(entries, key=lambda e: (ORDER[e.method], e.index))
    ids: dict[str, str] = {}  # fullUrl -> "Type/id"
    _resolve_targets(session, ordered, ids, base_url=base_url)
    for entry in entries:
        if entry.resource is not None:
            entry.resource = _rewrite_references(entry.resource, ids)
    _check_duplicates(entries)
    writes = _prepare_writes(session, ordered, now=now, memo=memo)
    stored = service.write(session, writes)
    by_entry = dict(
        zip([id(e) for e in ordered if e.extra.get("write") is not None], stored, strict=True)
    )
    for entry in ordered:
        if entry.response is not None:
            continue
        result = by_entry.get(id(entry))
        if entry.method == "DELETE":
            entry.response = EntryResponse(status="204 No Content")
        elif result is not None:
            created = entry.extra.get("created", False)
            entry.response = EntryResponse(
                status="201 Created" if created else "200 OK", stored=result, location=True
            )
    for entry in ordered:
        if entry.method in ("GET", "HEAD"):
            entry.response = get_handler(session, entry.url)
    return [e.response or EntryResponse(status="200 OK") for e in entries]


def _resolve_targets(
    session: Session, ordered: list[_Entry], ids: dict[str, str], *, base_url: str
) -> None:
    for entry in ordered:
        if entry.method == "DELETE":
            if entry.target_id is None:
                if entry.query is None:
                    raise _invalid(
                        f"Bundle.entry[{entry.index}].request.url",
                        "a DELETE needs an id or search criteria",
                    )
                matches = service.find_matches(
                    session, entry.target_type, entry.query, base_url=base_url
                )
                if len(matches) > 1:
                    raise PreconditionFailed(
                        f"Bundle.entry[{entry.index}]: conditional delete matched more than one resource"
                    )
                entry.existing = matches[0] if matches else None
            else:
                entry.existing = repository.get_current(
                    session, entry.target_type, entry.target_id, for_update=True
                )
        elif entry.method == "POST":
            assert entry.resource is not None
            _check_type(entry)
            if entry.if_none_exist:
                matches = service.find_matches(
                    session, entry.target_type, entry.if_none_exist, base_url=base_url
                )
                if len(matches) > 1:
                    raise PreconditionFailed(
                        f"Bundle.entry[{entry.index}]: ifNoneExist matched more than one resource"
                    )
                if matches:
                    entry.existing = matches[0]
                    entry.skip_write = True
                    entry.response = EntryResponse(
                        status="200 OK", stored=matches[0], location=True
                    )
            entry.target_id = entry.existing.resource_id if entry.existing else service.new_id()
            _remember(entry, ids)
        elif entry.method == "PUT":
            assert entry.resource is not None
            _check_type(entry)
            if entry.target_id is None:
                if entry.query is None:
                    raise _invalid(
                        f"Bundle.entry[{entry.index}].request.url",
                        "a PUT needs an id or search criteria",
                    )
                matches = service.find_matches(
                    session, entry.target_type, entry.query, base_url=base_url
                )
                if len(matches) > 1:
                    raise PreconditionFailed(
                        f"Bundle.entry[{entry.index}]: conditional update matched more than one resource"
                    )
                body_id = entry.resource.get("id")
                if matches:
                    if body_id is not None and body_id != matches[0].resource_id:
                        raise _invalid(
                            f"Bundle.entry[{entry.index}].resource.id",
                            "differs from the resource the criteria matched",
                        )
                    entry.target_id = matches[0].resource_id
                else:
                    entry.target_id = str(body_id) if body_id else service.new_id()
                entry.resource = {**entry.resource, "id": entry.target_id}
            else:
                service.check_id(entry.target_id)
                if entry.resource.get("id") != entry.target_id:
                    raise _invalid(
                        f"Bundle.entry[{entry.index}].resource.id",
                        f"must equal the id in the url ('{entry.target_id}')",
                    )
            _remember(entry, ids)


def _check_type(entry: _Entry) -> None:
    assert entry.resource is not None
    if entry.resource.get("resourceType") != entry.target_type:
        raise _invalid(
            f"Bundle.entry[{entry.index}].resource.resourceType",
            f"'{entry.resource.get('resourceType')}' does not match the url's type '{entry.target_type}'",
        )


def _remember(entry: _Entry, ids: dict[str, str]) -> None:
    local = f"{entry.target_type}/{entry.target_id}"
    if entry.full_url:
        if entry.full_url in ids:
            raise _invalid(
                f"Bundle.entry[{entry.index}].fullUrl",
                f"'{entry.full_url}' is used by more than one entry",
            )
        ids[entry.full_url] = local


def _rewrite_references(value: Any, ids: dict[str, str]) -> Any:
    """Replace references to entries' fullUrls with the server's ``Type/id``."""
    if not ids:
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and item in ids:
                out[key] = ids[item]
            else:
                out[key] = _rewrite_references(item, ids)
        return out
    if isinstance(value, list):
        return [_rewrite_references(item, ids) for item in value]
    if isinstance(value, str) and value.startswith("urn:uuid:") and value in ids:
        return ids[value]
    return value


def _check_duplicates(entries: list[_Entry]) -> None:
    seen: dict[tuple[str, str], int] = {}
    for entry in entries:
        if entry.method in ("GET", "HEAD") or entry.target_id is None:
            continue
        key = (entry.target_type, entry.target_id)
        if key in seen:
            raise _invalid(
                f"Bundle.entry[{entry.index}]",
                f"{key[0]}/{key[1]} is also changed by entry {seen[key]}; a transaction may change a resource once",
            )
        seen[key] = entry.index


def _prepare_writes(
    session: Session, ordered: list[_Entry], *, now: datetime, memo: ElementMemo | None
) -> list[PendingWrite]:
    puts = [e for e in ordered if e.method == "PUT"]
    current = repository.get_current_many(
        session, [(e.target_type, e.target_id) for e in puts if e.target_id], for_update=True
    )
    problems: list[Issue] = []
    writes: list[PendingWrite] = []
    for entry in ordered:
        try:
            pending = _prepare_entry(entry, current, now=now, memo=memo)
        except Invalid as exc:
            problems.extend(_prefix_issue(issue, entry.index) for issue in exc.issues)
            continue
        if pending is not None:
            entry.extra["write"] = pending
            writes.append(pending)
    if problems:
        raise Invalid(
            f"The transaction has {len(problems)} problem(s); nothing was stored",
            issues=tuple(problems),
        )
    return writes


def _prefix_issue(issue: Issue, index: int) -> Issue:
    prefix = f"Bundle.entry[{index}].resource"
    expressions = tuple(
        prefix + (expr[expr.index(".") :] if "." in expr else "") for expr in issue.expression
    ) or (prefix,)
    return Issue(
        code=issue.code,
        diagnostics=f"Bundle.entry[{index}]: {issue.diagnostics}",
        severity=issue.severity,
        expression=expressions,
    )


def _prepare_entry(
    entry: _Entry,
    current: dict[tuple[str, str], StoredResource],
    *,
    now: datetime,
    memo: ElementMemo | None,
) -> PendingWrite | None:
    if entry.skip_write or entry.method in ("GET", "HEAD"):
        return None
    if entry.method == "DELETE":
        repository.require_writable(
            entry.existing,
            entry.target_type,
            entry.target_id or "?",
            by_id=entry.query is None,
        )
        if entry.existing is None or entry.existing.deleted:
            entry.response = EntryResponse(status="204 No Content")
            return None
        return service.prepare_delete(entry.existing, now=now)
    assert entry.resource is not None
    assert entry.target_id is not None
    if entry.method == "POST":
        entry.extra["created"] = True
        return service.prepare_write(
            entry.resource,
            resource_id=entry.target_id,
            version_id=1,
            now=now,
            method="POST",
            existing_pk=None,
            memo=memo,
        )
    existing = current.get((entry.target_type, entry.target_id))
    repository.require_writable(
        existing, entry.target_type, entry.target_id, by_id=entry.query is None
    )
    if entry.if_match is not None and (
        existing is None or existing.deleted or existing.version_id != entry.if_match
    ):
        found = (
            "no current version"
            if existing is None or existing.deleted
            else f"version {existing.version_id}"
        )
        raise PreconditionFailed(
            f"Bundle.entry[{entry.index}]: ifMatch {entry.if_match} does not match ({found})"
        )
    pending = service.prepare_write(
        entry.resource,
        resource_id=entry.target_id,
        version_id=1 if existing is None else existing.version_id + 1,
        now=now,
        method="PUT",
        existing_pk=None if existing is None else existing.pk,
        memo=memo,
    )
    if existing is not None and service.same_content(existing, pending):
        entry.response = EntryResponse(status="200 OK", stored=existing, location=True)
        return None
    entry.extra["created"] = existing is None or existing.deleted
    return pending


def process_batch(
    session: Session,
    bundle: Mapping[str, Any],
    *,
    now: datetime,
    base_url: str,
    get_handler: GetHandler,
) -> list[EntryResponse]:
    """Process a batch: each entry independently, in its own savepoint."""
    entries = entries_of(bundle)
    memo = ElementMemo(limit=MEMO_LIMIT) if len(entries) >= MEMO_FROM else None
    responses: list[EntryResponse] = []
    for entry in entries:
        try:
            with session.begin_nested():
                if entry.method in ("GET", "HEAD"):
                    responses.append(get_handler(session, entry.url))
                    continue
                single = process_transaction(
                    session,
                    {"entry": [_raw_entry(entry)]},
                    now=now,
                    base_url=base_url,
                    get_handler=get_handler,
                    memo=memo,
                )
                responses.append(single[0])
        except OutcomeError as exc:
            responses.append(EntryResponse(status=f"{exc.status_code}", outcome=exc.to_outcome()))
    return responses


def _raw_entry(entry: _Entry) -> dict[str, Any]:
    request: dict[str, Any] = {"method": entry.method, "url": entry.url}
    if entry.if_none_exist:
        request["ifNoneExist"] = entry.if_none_exist
    if entry.if_match is not None:
        request["ifMatch"] = f'W/"{entry.if_match}"'
    raw: dict[str, Any] = {"request": request}
    if entry.resource is not None:
        raw["resource"] = entry.resource
    if entry.full_url:
        raw["fullUrl"] = entry.full_url
    return raw

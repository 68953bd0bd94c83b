"""The FHIR RESTful interactions (R4 3.1.0), thin: parse, call the store service, render.

Reads are plain ``def`` endpoints (run in the thread pool); writes read the body in a
bounded way on the event loop and then do their database work in the thread pool.
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from psycopg.rows import namedtuple_row
from sqlalchemy.orm import Session

from consent.audit import Action, AuditRecord
from consent.context import CallerKind
from consent.visibility import Predicate
from fhir_gateway.access import request as consent
from fhir_gateway.access.people import (
    FACTS_SQL,
    Who,
    per_person,
    person_facts,
    person_references,
    person_visibility,
    who_from_rows,
)
from fhir_gateway.audit.inline import audit_params
from fhir_gateway.audit.repository import add_events
from fhir_gateway.auth.dependencies import (
    access,
    authenticate,
    require_scope,
    require_whole_scope,
    steward_of,
)
from fhir_gateway.db import UnitOfWork
from fhir_gateway.identity import service as identity
from fhir_gateway.identity.nhs import NHS_NUMBER_SYSTEM
from fhir_gateway.outcomes import (
    Forbidden,
    Invalid,
    MethodNotAllowed,
    NotFound,
    NotSupported,
    PreconditionFailed,
    information,
)
from fhir_gateway.record.everything import EverythingQuery, read_everything
from fhir_gateway.rest import render
from fhir_gateway.rest.capability import capability_statement
from fhir_gateway.rest.http import (
    FHIR_JSON,
    FORM,
    check_accept,
    check_content_type,
    parse_if_match,
    parse_prefer,
    read_body,
)
from fhir_gateway.search import statement
from fhir_gateway.search.dates import InvalidDate, parse_range
from fhir_gateway.search.params import SearchError, SearchRequest, parse_search, types_searched
from fhir_gateway.search.query import SearchPage
from fhir_gateway.search.registry import SUPPORTED_TYPES
from fhir_gateway.store import refile, repository, service, transaction
from fhir_gateway.store.models import ResourceRow
from fhir_gateway.store.reads import PostgresReader, ReadAccess, ResourceReader
from fhir_gateway.store.repository import StoredResource
from fhir_gateway.store.visibility import (
    compile_visibility_live,
    scope_of,
    something_withheld,
)
from fhir_gateway.validation import (
    dumps,
    parse_json,
    require_resource_object,
    validate_resource,
)

MEDIA = f"{FHIR_JSON}; charset=utf-8"

# /metadata and the SMART configuration are public; everything else needs a bearer token.
public_router = APIRouter(prefix="/fhir")
router = APIRouter(
    prefix="/fhir", dependencies=[Depends(authenticate), Depends(consent.bind_writer)]
)


def _uow(request: Request) -> AbstractContextManager[Session]:
    factory: UnitOfWork = request.app.state.unit_of_work
    return factory()


def _reader(request: Request) -> ResourceReader:
    reader: ResourceReader = request.app.state.reader
    return reader


def _base(request: Request) -> str:
    return str(request.app.state.gateway_settings.base_url).rstrip("/")


def _now() -> datetime:
    return datetime.now(UTC)


def _type(resource_type: str) -> str:
    if resource_type not in SUPPORTED_TYPES:
        raise NotFound(f"Resource type '{resource_type}' is not supported by this server")
    return resource_type


def _permitted(request: Request, resource_type: str, permission: str) -> str:
    """The supported type, once the caller's scopes grant ``permission`` on it (else 403)."""
    resource_type = _type(resource_type)
    require_scope(access(request), resource_type, permission)
    return resource_type


def _search_request(
    request: Request, resource_type: str, items: list[tuple[str, str]], *, strict: bool
) -> SearchRequest:
    """The search ``items`` ask for on ``resource_type`` (400 if malformed), once the caller's
    scopes let it search every type its chains and reverse chains (``_has``) reach (403
    otherwise: a chain filters by what it finds there). Every FHIR search is parsed here."""
    settings = request.app.state.gateway_settings
    try:
        search = parse_search(
            resource_type,
            items,
            strict=strict,
            default_count=settings.default_page_size,
            max_count=settings.max_page_size,
        )
    except SearchError as exc:
        raise Invalid(str(exc)) from exc
    for reached in sorted(types_searched(search)):
        require_scope(access(request), reached, "s")
    return search


def _audit_page(
    request: Request,
    session: Session,
    *,
    interaction: str,
    resources: list[StoredResource],
    now: datetime,
    action: Action = Action.READ,
) -> None:
    """One AuditEvent per person whose data is released, in the request's transaction."""
    persons = person_references(session, (r.patient_id for r in resources)).values()
    record = consent.audit_record(request, action=action, interaction=interaction, now=now)
    add_events(session, consent.per_person(record, persons))


def fhir_response(
    body: bytes, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(content=body, status_code=status, media_type=MEDIA, headers=headers)


def _resource_result(
    request: Request, stored: StoredResource, *, status: int, location: bool
) -> Response:
    prefer = parse_prefer(request.headers.get("prefer"))
    headers = render.resource_headers(stored, base_url=_base(request), location=location)
    if prefer.return_ == "minimal":
        return Response(status_code=status, headers=headers)
    if prefer.return_ == "OperationOutcome":
        verb = "Created" if status == 201 else "Updated"
        message = f"{verb} {stored.resource_type}/{stored.resource_id} version {stored.version_id}"
        return fhir_response(dumps(information(message)), status=status, headers=headers)
    assert stored.body is not None
    return fhir_response(stored.body.encode(), status=status, headers=headers)


@public_router.get("/metadata")
async def metadata(request: Request) -> Response:
    check_accept(request)
    # The statement depends only on the code and the settings: build it once per app.
    body: bytes | None = getattr(request.app.state, "capability_statement", None)
    if body is None:
        body = dumps(
            capability_statement(base_url=_base(request), software_version=request.app.version)
        )
        request.app.state.capability_statement = body
    return fhir_response(body)


@public_router.get("/.well-known/smart-configuration")
async def smart_configuration(request: Request) -> Response:
    """SMART App Launch 2.x discovery: where tokens come from and what they may carry."""
    auth = request.app.state.gateway_settings.auth
    issuer = auth.trusted_issuer.rstrip("/")
    body: dict[str, Any] = {
        "issuer": auth.trusted_issuer,
        "jwks_uri": auth.jwks_url or f"{issuer}/jwks.json",
        "token_endpoint": auth.token_endpoint or f"{issuer}/token",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(auth.algorithms),
        "scopes_supported": ["system/*.cruds", "user/*.cruds", "patient/*.rs", "fhirUser"],
        "response_types_supported": ["token"],
        "capabilities": ["client-confidential-asymmetric", "permission-v2", "permission-v1"],
    }
    if request.app.state.authorization_server is not None:
        # The development issuer also signs people in (authorization code with PKCE).
        body["authorization_endpoint"] = f"{issuer}/authorize"
        body["grant_types_supported"] = ["authorization_code", "client_credentials"]
        body["token_endpoint_auth_methods_supported"] = ["private_key_jwt", "none"]
        body["response_types_supported"] = ["code"]
        body["code_challenge_methods_supported"] = ["S256"]
        body["capabilities"] += [
            "launch-standalone",
            "client-public",
            "context-standalone-patient",
            "permission-patient",
            "permission-user",
        ]
    elif auth.authorization_endpoint:
        # The partnership's identity provider signs people in; what else it offers is its own
        # discovery document's to say.
        body["authorization_endpoint"] = auth.authorization_endpoint
        body["grant_types_supported"] = ["authorization_code", "client_credentials"]
        body["response_types_supported"] = ["code"]
        body["capabilities"] += ["launch-standalone"]
    return Response(content=dumps(body), media_type="application/json")


def _history(request: Request, resource_type: str | None, resource_id: str | None) -> Response:
    check_accept(request)
    require_scope(access(request), resource_type or "*", "r" if resource_id else "s")
    settings = request.app.state.gateway_settings
    params = request.query_params
    count_text = params.get("_count", str(settings.default_page_size))
    if not count_text.isdigit():
        raise Invalid("_count must be a whole number")
    count = min(int(count_text), settings.max_page_size)
    since = None
    if "_since" in params:
        try:
            since = parse_range(params["_since"])[0]
        except InvalidDate as exc:
            raise Invalid(str(exc)) from exc
    cursor_text = params.get("_cursor")
    if cursor_text is not None and not cursor_text.isdigit():
        raise Invalid("The history paging cursor is not valid")
    cursor = int(cursor_text) if cursor_text else None
    now = _now()
    visible_on = _visible_on(request)
    with _uow(request) as session:
        if resource_type is not None and resource_id is not None:
            service.read_any(session, resource_type, resource_id, visible=visible_on(ResourceRow))
        rows, next_pk = service.history(
            session,
            resource_type=resource_type,
            resource_id=resource_id,
            since=since,
            count=count,
            cursor=cursor,
            visible_on=visible_on,
        )
        interaction = (
            "history-instance"
            if resource_id
            else "history-type"
            if resource_type
            else "history-system"
        )
        _audit_page(
            request, session, interaction=interaction, resources=[r for r, _ in rows], now=now
        )
    base = _base(request)
    path = "/".join(p for p in (base, resource_type, resource_id, "_history") if p)
    kept = [(k, v) for k, v in params.multi_items() if k != "_cursor"]
    self_url = path + (f"?{urlencode(kept)}" if kept else "")
    next_url = None
    if next_pk is not None:
        next_url = f"{path}?{urlencode([*kept, ('_cursor', str(next_pk))])}"
    return fhir_response(
        render.history_bundle(rows, base_url=base, self_url=self_url, next_url=next_url)
    )


@router.get("/_history")
def system_history(request: Request) -> Response:
    return _history(request, None, None)


@router.get("/{resource_type}/_history")
def type_history(request: Request, resource_type: str) -> Response:
    return _history(request, _type(resource_type), None)


@router.post("/{resource_type}/{resource_id}/$refile")
async def refile_resource(request: Request, resource_type: str, resource_id: str) -> Response:
    """Correct a record filed against the wrong patient (see ``store.refile``)."""
    check_accept(request)
    resource_type = _permitted(request, resource_type, "u")
    steward = steward_of(access(request))  # the signed-in caller makes the correction
    data = await _resource_body(request)
    if data.get("resourceType") != "Parameters":
        raise Invalid("$refile takes a Parameters resource")
    values: dict[str, Any] = {}
    for parameter in data.get("parameter") or ():
        if isinstance(parameter, dict) and parameter.get("name") in ("patient", "reason"):
            values[parameter["name"]] = (
                parameter.get("valueReference", {}).get("reference")
                if parameter["name"] == "patient"
                else parameter.get("valueString")
            )
    for name in ("patient", "reason"):
        if not isinstance(values.get(name), str) or not values[name].strip():
            raise Invalid(f"$refile needs the parameter '{name}'")
    patient_id = str(values["patient"]).removeprefix("Patient/")

    def work() -> tuple[str, str]:
        with _uow(request) as session:
            return refile.refile(
                session,
                resource_type,
                resource_id,
                patient_id=patient_id,
                steward=steward,
                reason=values["reason"],
                now=_now(),
            )

    new_id, provenance_id = await run_in_threadpool(work)
    result = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "corrected", "valueReference": {"reference": f"{resource_type}/{new_id}"}},
            {"name": "provenance", "valueReference": {"reference": f"Provenance/{provenance_id}"}},
        ],
    }
    return fhir_response(dumps(result))


MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"
SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}


def minimal_demographics(stored: StoredResource) -> dict[str, Any]:
    """What $match releases of a Patient: enough to confirm identity, nothing clinical
    (NHS number, names, birth date, sex, postcode), marked SUBSETTED."""
    assert stored.body is not None
    patient = parse_json(stored.body.encode())
    # Only the version and source: labels and tags could say more than identity needs.
    meta = {
        k: v
        for k, v in (patient.get("meta") or {}).items()
        if k in ("versionId", "lastUpdated", "source")
    }
    meta["tag"] = [SUBSETTED]
    minimal: dict[str, Any] = {"resourceType": "Patient", "id": patient["id"], "meta": meta}
    identifiers = [
        i for i in patient.get("identifier") or () if i.get("system") == NHS_NUMBER_SYSTEM
    ]
    if identifiers:
        minimal["identifier"] = identifiers
    for key in ("name", "gender", "birthDate"):
        if key in patient:
            minimal[key] = patient[key]
    postcodes = [
        {"postalCode": a["postalCode"]}
        for a in patient.get("address") or ()
        if isinstance(a, dict) and a.get("postalCode")
    ]
    if postcodes:
        minimal["address"] = postcodes
    return minimal


@router.post("/Patient/$match")
async def patient_match(request: Request) -> Response:
    """R4 Patient-match: candidates for a Patient, scored and graded (certain .. possible)."""
    check_accept(request)
    _permitted(request, "Patient", "s")
    agreement = await consent.agreement_async(request)
    context = access(request)
    clause = agreement.system_clients.get(context.client_id or "")
    if context.kind is not CallerKind.SYSTEM or clause is None or not clause.match:
        # Matching searches every source's demographics: only the systems the agreement
        # names may ask (a member of staff finds a person by searching their shared record).
        raise Forbidden("The sharing agreement does not name this caller for Patient/$match")
    # Matching answers from every source's demographics, not through the caller's predicate:
    # a token that asked for only some Patients may not use it.
    require_whole_scope(context, "Patient", "s")
    data = await _resource_body(request)
    if data.get("resourceType") != "Parameters":
        raise Invalid("Patient/$match takes a Parameters resource")
    patient: dict[str, Any] | None = None
    only_certain = False
    count = 10
    for parameter in data.get("parameter") or ():
        if not isinstance(parameter, dict):
            raise Invalid("Parameters.parameter must be objects")
        name = parameter.get("name")
        if name == "resource":
            patient = parameter.get("resource")
        elif name == "onlyCertainMatches":
            if not isinstance(parameter.get("valueBoolean"), bool):
                raise Invalid("onlyCertainMatches must be a valueBoolean")
            only_certain = parameter["valueBoolean"]
        elif name == "count":
            value = parameter.get("valueInteger")
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise Invalid("count must be a valueInteger of at least 1")
            count = min(value, request.app.state.gateway_settings.max_page_size)
    if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
        raise Invalid("Patient/$match needs a parameter 'resource' holding a Patient")
    validate_resource(patient)
    base = _base(request)

    def work() -> bytes:
        with _uow(request) as session:
            found = identity.match_patients(session, patient)
            if only_certain:
                # The spec: only a single certain match, never several. Source patients of one
                # Person are one match here: its best record is returned.
                certain = [f for f in found if f[2].grade == "certain"]
                found = certain[:1] if len({person for _p, person, _m in certain}) == 1 else []
            found = found[:count]
            stored = repository.get_current_many(
                session, [("Patient", p) for p, _person, _m in found]
            )
            released = [r for r in stored.values() if not r.deleted]
            _audit_page(
                request,
                session,
                interaction="$match",
                resources=released,
                now=_now(),
                action=Action.EXECUTE,
            )
        entries = []
        for patient_id, _person, match in found:
            current = stored.get(("Patient", patient_id))
            if current is None or current.deleted:
                continue
            entries.append(
                {
                    "fullUrl": render.full_url(current, base_url=base),
                    "resource": minimal_demographics(current),
                    "search": {
                        "extension": [{"url": MATCH_GRADE, "valueCode": match.grade}],
                        "mode": "match",
                        "score": round(match.probability, 6),
                    },
                }
            )
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(entries),
        }
        if entries:
            bundle["entry"] = entries
        return dumps(bundle)

    return fhir_response(await run_in_threadpool(work))


@router.get("/Patient/{patient_id}/$everything")
async def patient_everything(request: Request, patient_id: str) -> Response:
    """The joined-up record: every linked source patient's compartment (R4 Patient-everything)."""
    check_accept(request)
    _permitted(request, "Patient", "r")
    settings = request.app.state.gateway_settings
    params = request.query_params
    known = {"start", "end", "_since", "_type", "_count", "_cursor", "_format"}
    unknown = sorted(set(params) - known)
    if unknown and parse_prefer(request.headers.get("prefer")).strict:
        raise Invalid(f"$everything does not take: {', '.join(unknown)}")
    count_text = params.get("_count", str(settings.default_page_size))
    if not count_text.isdigit() or int(count_text) < 1:
        raise Invalid("_count must be a whole number of at least 1")
    count = min(int(count_text), settings.max_page_size)
    cursor_text = params.get("_cursor")
    if cursor_text is not None and not cursor_text.isdigit():
        raise Invalid("The paging cursor is not valid")
    types = [t for t in params.get("_type", "").split(",") if t]
    for t in types:
        if t not in SUPPORTED_TYPES:
            raise Invalid(f"_type names '{t}', which this server does not store")
    readable = access(request).readable_types(SUPPORTED_TYPES)
    if len(readable) < len(SUPPORTED_TYPES):
        # Only the types the token's scopes let the caller read are part of the answer.
        for t in types:
            require_scope(access(request), t, "r")
        types = types or sorted(readable)
    try:
        since = parse_range(params["_since"])[0] if "_since" in params else None
        start = parse_range(params["start"])[0] if "start" in params else None
        end = parse_range(params["end"])[1] if "end" in params else None
    except InvalidDate as exc:
        raise Invalid(str(exc)) from exc
    now = _now()
    query = EverythingQuery(
        patient_id=patient_id,
        count=count,
        cursor=int(cursor_text) if cursor_text else None,
        types=tuple(types),
        since=since,
        start=start,
        end=end,
        tell_withheld=access(request).kind is not CallerKind.PATIENT,
    )
    result = await read_everything(
        _reader(request), query, await _read_access(request, "$everything", now=now)
    )
    page = result.page
    base = _base(request)
    path = f"{base}/Patient/{patient_id}/$everything"
    kept = [(k, v) for k, v in params.multi_items() if k != "_cursor"]
    links = [{"relation": "self", "url": path + (f"?{urlencode(kept)}" if kept else "")}]
    if page.next_cursor is not None:
        links.append(
            {
                "relation": "next",
                "url": f"{path}?{urlencode([*kept, ('_cursor', str(page.next_cursor))])}",
            }
        )
    entries = [
        {
            "fullUrl": render.full_url(r, base_url=base),
            "resource": render.body_fragment(r, summary=None, elements=()),
            "search": {"mode": mode},
        }
        for mode, group in (("match", page.resources), ("include", page.included))
        for r in group
    ]
    if result.withheld:
        entries.append(render.withheld_entry())
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": page.total,
        "link": links,
    }
    if entries:
        bundle["entry"] = entries
    return fhir_response(dumps(bundle))


@router.get("/{resource_type}/{resource_id}/_history")
def instance_history(request: Request, resource_type: str, resource_id: str) -> Response:
    return _history(request, _type(resource_type), resource_id)


@router.get("/{resource_type}/{resource_id}")
async def read(request: Request, resource_type: str, resource_id: str) -> Response:
    return await read_resource(request, resource_type, resource_id)


async def read_resource(request: Request, resource_type: str, resource_id: str) -> Response:
    """The read interaction, once the caller is authenticated (``request.state.access``):
    also answered without the framework's routing by ``rest.fastread``."""
    check_accept(request)
    resource_type = _permitted(request, resource_type, "r")
    stored = service.require_current(
        await _reader(request).current(
            resource_type, resource_id, await _read_access(request, "read")
        ),
        resource_type,
        resource_id,
    )
    headers = render.resource_headers(stored, base_url=_base(request), location=False)
    summary = request.query_params.get("_summary")
    elements = request.query_params.get("_elements")
    if summary not in (None, "false") or elements:
        body = dumps(
            render.body_fragment(
                stored, summary=summary, elements=tuple((elements or "").split(","))
            )
        )
        return fhir_response(body, headers=headers)
    assert stored.body is not None
    return fhir_response(stored.body.encode(), headers=headers)


@router.get("/{resource_type}/{resource_id}/_history/{version_id}")
async def vread(
    request: Request, resource_type: str, resource_id: str, version_id: str
) -> Response:
    check_accept(request)
    resource_type = _permitted(request, resource_type, "r")
    if not version_id.isdigit():
        raise NotFound(f"{resource_type}/{resource_id} has no version '{version_id}'")
    found = await _reader(request).version(
        resource_type, resource_id, int(version_id), await _read_access(request, "vread")
    )
    stored = service.require_version(found, resource_type, resource_id, version_id)
    assert stored.body is not None
    headers = render.resource_headers(stored, base_url=_base(request), location=False)
    return fhir_response(stored.body.encode(), headers=headers)


async def _read_access(
    request: Request, interaction: str, *, now: datetime | None = None
) -> ReadAccess:
    now = now or _now()
    return ReadAccess(
        predicate=await consent.visible_async(request),
        now=now,
        audit=consent.audit_record(request, action=Action.READ, interaction=interaction, now=now),
    )


async def _search(request: Request, resource_type: str, items: list[tuple[str, str]]) -> Response:
    check_accept(request)
    prefer = parse_prefer(request.headers.get("prefer"))
    search_request = _search_request(
        request, _permitted(request, resource_type, "s"), items, strict=prefer.strict
    )
    now = _now()
    plan = _SearchPlan(
        request=search_request,
        items=items,
        base_url=_base(request),
        now=now,
        predicate=await consent.visible_async(request),
        audit=consent.audit_record(request, action=Action.READ, interaction="search-type", now=now),
        told=access(request).kind is not CallerKind.PATIENT,
    )
    reader = _reader(request)
    found: tuple[SearchPage, list[StoredResource], bool] | None = None
    if isinstance(reader, PostgresReader) and statement.fits(search_request):
        found = await _search_on_pool(reader, plan)
    if found is None:
        found = await run_in_threadpool(_search_in_session, request, plan)
    page, included, withheld = found
    ignored = set(search_request.ignored)
    kept = [(k, v) for k, v in items if k not in ignored]
    body = render.searchset(
        page,
        # An included resource whose type the scopes do not let the caller read is left out.
        [r for r in included if access(request).allows(r.resource_type, "r")],
        base_url=plan.base_url,
        resource_type=resource_type,
        params=kept,
        summary=search_request.summary,
        elements=search_request.elements,
        withheld=withheld,
    )
    return fhir_response(body)


@dataclass(frozen=True, slots=True)
class _SearchPlan:
    """A search, checked, and who asks it."""

    request: SearchRequest
    items: list[tuple[str, str]]
    base_url: str
    now: datetime
    predicate: Predicate
    audit: AuditRecord
    told: bool  # the caller may be told that something is withheld (not the person)

    @property
    def patients(self) -> list[str]:
        return _searched_patients(self.items)

    @property
    def about_one_patient(self) -> str | None:
        patients = self.patients
        return patients[0] if len(patients) == 1 else None

    @property
    def by_patient(self) -> bool:
        # By ``patient`` every match belongs to that patient; by ``subject`` it may not.
        return any(name.startswith("patient") for name, _value in self.items)

    @property
    def may_tell(self) -> bool:
        return self.told and "_cursor" not in dict(self.items)

    def visible_on(self, row: Any) -> Any:
        return compile_visibility_live(self.predicate, row=row)

    def statement(self, who: Who | None) -> tuple[statement.PageSelect, Any]:
        """The page statement (``search.statement``) and its SQL and parameters (None when
        it cannot run raw)."""
        patient = self.about_one_patient
        visible: Any
        withholding = None
        if who is None or patient is None:
            visible = self.visible_on(ResourceRow)
        else:
            ids = sorted({*who.patient_ids, patient})
            forms = person_visibility(self.predicate, who.facts, ids, now=self.now)
            visible = forms.within if self.by_patient else forms.guarded
            if self.may_tell:
                withholding = statement.Withholding(patient, ids, visible, scope_of(self.predicate))
        try:
            selected = statement.page_select(
                self.request,
                base_url=self.base_url,
                visible_on=self.visible_on,
                visible=visible,
                withholding=withholding,
            )
        except SearchError as exc:
            raise (NotSupported if exc.unsupported else Invalid)(str(exc)) from exc
        given = {
            "limit": self.request.count + 1,
            "count": self.request.count,
            "consent_now_live": self.now,
            **audit_params(self.audit),
        }
        return selected, statement.compose(selected, given)


async def _search_on_pool(
    reader: PostgresReader, plan: _SearchPlan
) -> tuple[SearchPage, list[StoredResource], bool] | None:
    """The search as one statement on the read pool (after the person's facts, for a search
    about one patient); None when it cannot run raw."""
    patient = plan.about_one_patient
    async with reader.pool.connection() as conn:
        who = None
        if patient is not None:
            cursor = await conn.execute(FACTS_SQL, [patient])
            who = who_from_rows(patient, await cursor.fetchall())
        selected, prepared = plan.statement(who)
        if prepared is None:
            return None
        cursor = await conn.execute(*prepared)
        rows = await cursor.fetchall()
    page, withheld = statement.page_from_rows(plan.request, selected, rows)
    return page, [], withheld


def _search_in_session(
    request: Request, plan: _SearchPlan
) -> tuple[SearchPage, list[StoredResource], bool]:
    search_request = plan.request
    patient = plan.about_one_patient
    with _uow(request) as session:
        connection = session.connection()
        if connection.dialect.name == "postgresql" and statement.fits(search_request):
            # The same statement as on the read pool, in this transaction.
            driver = cast(psycopg.Connection[Any], connection.connection.driver_connection)
            with psycopg.RawCursor(driver, row_factory=namedtuple_row) as cursor:
                who = None
                if patient is not None:
                    who = who_from_rows(patient, cursor.execute(FACTS_SQL, [patient]).fetchall())
                selected, prepared = plan.statement(who)
                if prepared is not None:
                    rows = cursor.execute(*prepared).fetchall()
                    page, withheld = statement.page_from_rows(search_request, selected, rows)
                    return page, [], withheld
        visible = plan.visible_on(ResourceRow)
        joined: list[str] = []
        if patient is not None:
            # A search about one person: consent's person-level parts decided once.
            _person, joined = identity.joined_patients(session, patient)
            ids = sorted({*joined, patient})
            forms = person_visibility(plan.predicate, person_facts(session, ids), ids, now=plan.now)
            visible = forms.within if plan.by_patient else forms.guarded
        result = service.search(
            session,
            search_request,
            base_url=plan.base_url,
            visible_on=plan.visible_on,
            visible_rows=visible,
        )
        included = [r for r in result.included if access(request).allows(r.resource_type, "r")]
        persons = person_references(
            session, (r.patient_id for r in [*result.page.resources, *included])
        ).values()
        add_events(session, per_person(plan.audit, persons))
        withheld = False
        if (
            patient is not None
            and plan.may_tell
            and _may_be_told_of_withholding(request, session, patient, visible)
        ):
            withheld = something_withheld(
                session,
                patient_ids=sorted({*joined, patient}),
                visible=visible,
                types=[search_request.resource_type],
                in_scope=scope_of(plan.predicate),
            )
    return result.page, included, withheld


def _may_be_told_of_withholding(
    request: Request, session: Session, patient_id: str, visible: Any
) -> bool:
    """Only a caller who may see the patient is told that some of their record is withheld
    (else the notice would say the person exists); never the person themselves (it would
    hint at what is not for them: items not for disclosure to the patient, safeguarding)."""
    if access(request).kind is CallerKind.PATIENT:
        return False
    found = repository.get_current(session, "Patient", patient_id, visible=visible)
    return found is not None and not found.deleted


def _searched_patients(items: list[tuple[str, str]]) -> list[str]:
    """The patients a search is about (``patient=`` or ``subject=``), for the notice that
    something of their record is withheld."""
    found: list[str] = []
    for name, value in items:
        if name in ("patient", "subject", "patient:Patient", "subject:Patient"):
            for part in value.split(","):
                ident = part.removeprefix("Patient/")
                if ident and "/" not in ident:
                    found.append(ident)
    return found


@router.get("/{resource_type}")
async def search_get(request: Request, resource_type: str) -> Response:
    return await _search(request, resource_type, list(request.query_params.multi_items()))


@router.post("/{resource_type}/_search")
async def search_post(request: Request, resource_type: str) -> Response:
    kind = check_content_type(request, allow_form=True)
    if kind != FORM:
        raise Invalid(f"POST _search takes {FORM} parameters")
    body = await read_body(request, limit=request.app.state.gateway_settings.max_body_bytes)
    items = list(request.query_params.multi_items()) + parse_qsl(
        body.decode(), keep_blank_values=True
    )
    return await _search(request, resource_type, items)


async def _resource_body(request: Request) -> dict[str, Any]:
    check_content_type(request)
    raw = await read_body(request, limit=request.app.state.gateway_settings.max_body_bytes)
    return require_resource_object(parse_json(raw))


@router.post("/{resource_type}")
async def create(request: Request, resource_type: str) -> Response:
    check_accept(request)
    resource_type = _permitted(request, resource_type, "c")
    resource = await _resource_body(request)
    if resource["resourceType"] != resource_type:
        raise Invalid(f"The body is a {resource['resourceType']}, but the URL says {resource_type}")
    if_none_exist = request.headers.get("if-none-exist")
    base = _base(request)

    def work() -> Response:
        with _uow(request) as session:
            if if_none_exist:
                matches = service.find_matches(session, resource_type, if_none_exist, base_url=base)
                if len(matches) > 1:
                    raise PreconditionFailed("If-None-Exist matched more than one resource")
                if matches:
                    return _resource_result(request, matches[0], status=200, location=True)
            result = service.create(session, resource, now=_now())
        return _resource_result(request, result.stored, status=201, location=True)

    return await run_in_threadpool(work)


@router.put("/{resource_type}/{resource_id}")
async def update(request: Request, resource_type: str, resource_id: str) -> Response:
    check_accept(request)
    resource_type = _permitted(request, resource_type, "u")
    resource = await _resource_body(request)
    if resource["resourceType"] != resource_type:
        raise Invalid(f"The body is a {resource['resourceType']}, but the URL says {resource_type}")
    if_match = parse_if_match(request.headers.get("if-match"))

    def work() -> Response:
        with _uow(request) as session:
            result = service.update(
                session, resource_type, resource_id, resource, now=_now(), if_match=if_match
            )
        return _resource_result(
            request, result.stored, status=201 if result.created else 200, location=result.created
        )

    return await run_in_threadpool(work)


@router.put("/{resource_type}")
async def conditional_update(request: Request, resource_type: str) -> Response:
    check_accept(request)
    resource_type = _permitted(request, resource_type, "u")
    resource = await _resource_body(request)
    query = request.url.query
    base = _base(request)
    if_match = parse_if_match(request.headers.get("if-match"))

    def work() -> Response:
        with _uow(request) as session:
            matches = service.find_matches(session, resource_type, query, base_url=base)
            if len(matches) > 1:
                raise PreconditionFailed("The conditional update matched more than one resource")
            body_id = resource.get("id")
            if matches:
                if body_id is not None and body_id != matches[0].resource_id:
                    raise Invalid(
                        "The id in the body differs from the resource the criteria matched"
                    )
                target = matches[0].resource_id
                result = service.update(
                    session,
                    resource_type,
                    target,
                    {**resource, "id": target},
                    now=_now(),
                    if_match=if_match,
                )
            elif body_id is not None:
                result = service.update(session, resource_type, str(body_id), resource, now=_now())
            else:
                result = service.create(session, resource, now=_now())
        return _resource_result(
            request, result.stored, status=201 if result.created else 200, location=result.created
        )

    return await run_in_threadpool(work)


@router.delete("/{resource_type}/{resource_id}")
def delete(request: Request, resource_type: str, resource_id: str) -> Response:
    resource_type = _permitted(request, resource_type, "d")
    with _uow(request) as session:
        stored = service.delete(session, resource_type, resource_id, now=_now())
    headers = {"ETag": f'W/"{stored.version_id}"'} if stored else {}
    return Response(status_code=204, headers=headers)


@router.delete("/{resource_type}")
def conditional_delete(request: Request, resource_type: str) -> Response:
    resource_type = _permitted(request, resource_type, "d")
    base = _base(request)
    with _uow(request) as session:
        matches = service.find_matches(session, resource_type, request.url.query, base_url=base)
        if len(matches) > 1:
            raise PreconditionFailed("The conditional delete matched more than one resource")
        for match in matches:
            service.delete(session, resource_type, match.resource_id, now=_now())
    return Response(status_code=204)


@router.post("")
@router.post("/")
async def bundle(request: Request) -> Response:
    check_accept(request)
    data = await _resource_body(request)
    if data["resourceType"] != "Bundle":
        raise Invalid("POST to the base takes a Bundle of type transaction or batch")
    kind = data.get("type")
    if kind not in ("transaction", "batch"):
        raise Invalid(f"Bundle.type must be transaction or batch, not '{kind}'")
    base = _base(request)
    _check_bundle_scopes(request, data, base)

    def get_handler(session: Session, url: str) -> transaction.EntryResponse:
        return _get_entry(request, session, url)

    def work() -> bytes:
        with _uow(request) as session:
            process = (
                transaction.process_transaction
                if kind == "transaction"
                else transaction.process_batch
            )
            responses = process(session, data, now=_now(), base_url=base, get_handler=get_handler)
        return _bundle_response(
            responses,
            kind=f"{kind}-response",
            base_url=base,
            prefer=parse_prefer(request.headers.get("prefer")).return_,
        )

    return fhir_response(await run_in_threadpool(work))


ENTRY_PERMISSIONS = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}


def _check_bundle_scopes(request: Request, data: dict[str, Any], base: str) -> None:
    """403 for the whole bundle if any entry asks for what the token's scopes do not grant.

    Malformed entries are left for the transaction's own checks (400 with their paths).
    """
    context = access(request)
    for raw in data.get("entry") or ():
        entry_request = raw.get("request") if isinstance(raw, dict) else None
        if not isinstance(entry_request, dict):
            continue
        method, url = entry_request.get("method"), entry_request.get("url")
        if not isinstance(method, str) or not isinstance(url, str):
            continue
        parts = [p for p in url.removeprefix(base).partition("?")[0].split("/") if p]
        if parts:
            # A GET of one resource (or its history) is a read; of a type, a search.
            permission = ENTRY_PERMISSIONS.get(method) or ("r" if len(parts) > 1 else "s")
            require_scope(context, parts[0], permission)


def _visible_on(request: Request) -> Callable[[Any], Any]:
    """The caller's consent predicate, compiled for any row of the resource table."""
    predicate = consent.visible_sync(request)
    return lambda row: compile_visibility_live(predicate, row=row)


def _get_entry(request: Request, session: Session, url: str) -> transaction.EntryResponse:
    """A GET inside a batch or transaction: the same consent and audit as on its own."""
    path, _, query = url.partition("?")
    parts = [p for p in path.split("/") if p]
    now = _now()
    visible_on = _visible_on(request)
    if len(parts) == 2 and parts[0] in SUPPORTED_TYPES:
        stored = service.read(session, parts[0], parts[1], visible=visible_on(ResourceRow))
        _audit_page(request, session, interaction="read", resources=[stored], now=now)
        return transaction.EntryResponse(status="200 OK", stored=stored)
    if len(parts) == 1 and parts[0] in SUPPORTED_TYPES:
        search_request = _search_request(
            request, parts[0], parse_qsl(query, keep_blank_values=True), strict=False
        )
        result = service.search(
            session, search_request, base_url=_base(request), visible_on=visible_on
        )
        included = [r for r in result.included if access(request).allows(r.resource_type, "r")]
        _audit_page(
            request,
            session,
            interaction="search-type",
            resources=[*result.page.resources, *included],
            now=now,
        )
        body = render.searchset(
            result.page,
            included,
            base_url=_base(request),
            resource_type=parts[0],
            params=parse_qsl(query),
            summary=search_request.summary,
            elements=search_request.elements,
        )
        return transaction.EntryResponse(status="200 OK", body=parse_json(body))
    raise Invalid(f"GET '{url}' in a bundle is not a read or a search this server supports")


def _bundle_response(
    responses: list[transaction.EntryResponse], *, kind: str, base_url: str, prefer: str
) -> bytes:
    import orjson

    entries: list[dict[str, Any]] = []
    for response in responses:
        entry: dict[str, Any] = {}
        out: dict[str, Any] = {"status": response.status}
        if response.stored is not None:
            stored = response.stored
            entry["fullUrl"] = render.full_url(stored, base_url=base_url)
            if prefer != "minimal" and stored.body is not None:
                entry["resource"] = orjson.Fragment(stored.body)
            if response.location:
                out["location"] = render.version_url(stored, base_url=base_url)
            out["etag"] = f'W/"{stored.version_id}"'
            out["lastModified"] = service.format_instant(stored.last_updated)
        elif response.body is not None:
            entry["resource"] = response.body
        if response.outcome is not None:
            out["outcome"] = response.outcome
        entry["response"] = out
        entries.append(entry)
    return dumps({"resourceType": "Bundle", "type": kind, "entry": entries})


def iter_routes() -> Iterator[str]:
    for route in router.routes:
        yield str(getattr(route, "path", ""))


def method_not_allowed(method: str, path: str) -> MethodNotAllowed:
    return MethodNotAllowed(f"{method} is not allowed on {path}")

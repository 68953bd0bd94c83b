"""Response bodies: resources and Bundles built around stored JSON text.

Stored bodies are embedded with ``orjson.Fragment``, so a searchset of 50 resources is
serialised without parsing any of them; only ``_summary`` and ``_elements`` parse (they must
remove elements).
"""

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any
from urllib.parse import urlencode

import orjson
from fhir.resources.R4B import get_fhir_model_class

from fhir_gateway.rest.http import etag, http_date
from fhir_gateway.search.query import SearchPage
from fhir_gateway.store.repository import StoredResource
from fhir_gateway.store.service import format_instant
from fhir_gateway.validation import dumps, parse_json

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}


def resource_headers(stored: StoredResource, *, base_url: str, location: bool) -> dict[str, str]:
    headers = {"ETag": etag(stored.version_id), "Last-Modified": http_date(stored.last_updated)}
    if location:
        headers["Location"] = version_url(stored, base_url=base_url)
    return headers


def version_url(stored: StoredResource, *, base_url: str) -> str:
    return f"{base_url}/{stored.resource_type}/{stored.resource_id}/_history/{stored.version_id}"


def full_url(stored: StoredResource, *, base_url: str) -> str:
    return f"{base_url}/{stored.resource_type}/{stored.resource_id}"


def body_fragment(
    stored: StoredResource, *, summary: str | None = None, elements: Sequence[str] = ()
) -> Any:
    assert stored.body is not None
    if summary is None and not elements:
        return orjson.Fragment(stored.body)
    return subset(parse_json(stored.body), summary=summary, elements=elements)


@cache
def _summary_elements(resource_type: str) -> frozenset[str]:
    model = get_fhir_model_class(resource_type)
    names = set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get("summary_element_property"):
            names.add(info.alias or name)
    return frozenset(names)


@cache
def _mandatory_elements(resource_type: str) -> frozenset[str]:
    model = get_fhir_model_class(resource_type)
    names = set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if info.is_required() or (isinstance(extra, dict) and extra.get("element_required")):
            names.add(info.alias or name)
    return frozenset(names)


def subset(
    resource: dict[str, Any], *, summary: str | None, elements: Sequence[str]
) -> dict[str, Any]:
    """Apply ``_summary`` (true, text, data) or ``_elements`` (R4 3.1.1.5.9 and 3.1.1.5.10)."""
    resource_type = str(resource.get("resourceType"))
    if summary == "data":
        kept = {k: v for k, v in resource.items() if k != "text"}
    elif summary == "text":
        keep = {"resourceType", "id", "meta", "text"} | _mandatory_elements(resource_type)
        kept = {k: v for k, v in resource.items() if k in keep or k.lstrip("_") in keep}
    elif summary == "true":
        keep = {"resourceType", "id", "meta"} | _summary_elements(resource_type)
        kept = {
            k: v for k, v in resource.items() if _choice_base(k) in keep or k.lstrip("_") in keep
        }
    else:
        keep = {"resourceType", "id", "meta"} | _mandatory_elements(resource_type) | set(elements)
        kept = {
            k: v for k, v in resource.items() if _choice_base(k) in keep or k.lstrip("_") in keep
        }
    meta = dict(kept.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    kept["meta"] = meta
    return kept


def _choice_base(key: str) -> str:
    # valueQuantity is named "value" in _elements; leave ordinary names untouched.
    for i in range(1, len(key)):
        if key[i].isupper():
            return key if key in ("resourceType",) else key[:i]
    return key


def searchset(
    page: SearchPage,
    included: Iterable[StoredResource],
    *,
    base_url: str,
    resource_type: str,
    params: list[tuple[str, str]],
    summary: str | None,
    elements: Sequence[str],
    withheld: bool = False,
) -> bytes:
    kept = [(k, v) for k, v in params if k != "_cursor"]
    links = [{"relation": "self", "url": _search_url(base_url, resource_type, kept)}]
    if page.next_cursor:
        links.append(
            {
                "relation": "next",
                "url": _search_url(base_url, resource_type, [*kept, ("_cursor", page.next_cursor)]),
            }
        )
    if page.previous_cursor:
        links.append(
            {
                "relation": "previous",
                "url": _search_url(
                    base_url, resource_type, [*kept, ("_cursor", page.previous_cursor)]
                ),
            }
        )
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    entries = [
        {
            "fullUrl": full_url(r, base_url=base_url),
            "resource": body_fragment(r, summary=summary, elements=elements),
            "search": {"mode": "match"},
        }
        for r in page.resources
    ]
    entries.extend(
        {
            "fullUrl": full_url(r, base_url=base_url),
            "resource": body_fragment(r, summary=summary, elements=elements),
            "search": {"mode": "include"},
        }
        for r in included
    )
    if summary == "count":
        entries = []
    if withheld:
        entries.append(withheld_entry())
    if entries:
        bundle["entry"] = entries
    return dumps(bundle)


WITHHELD = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "information",
            "code": "suppressed",
            "diagnostics": (
                "Some of this person's record is not shown to you under the sharing "
                "agreement or their choices. Ask the organisation that recorded it, or, in "
                "an emergency and where your role allows, break glass."
            ),
        }
    ],
}


def withheld_entry() -> dict[str, Any]:
    """The search result entry saying that something is withheld (never what or how much)."""
    return {"resource": WITHHELD, "search": {"mode": "outcome"}}


def _search_url(base_url: str, resource_type: str, params: list[tuple[str, str]]) -> str:
    query = urlencode(params)
    return f"{base_url}/{resource_type}" + (f"?{query}" if query else "")


def history_bundle(
    rows: list[tuple[StoredResource, str]], *, base_url: str, self_url: str, next_url: str | None
) -> bytes:
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    entries = []
    for stored, method in rows:
        entry: dict[str, Any] = {"fullUrl": full_url(stored, base_url=base_url)}
        if stored.body is not None:
            entry["resource"] = orjson.Fragment(stored.body)
        url = (
            stored.resource_type
            if method == "POST"
            else f"{stored.resource_type}/{stored.resource_id}"
        )
        entry["request"] = {"method": method, "url": url}
        entry["response"] = {
            "status": "410 Gone"
            if method == "DELETE"
            else ("201 Created" if stored.version_id == 1 else "200 OK"),
            "etag": etag(stored.version_id),
            "lastModified": format_instant(stored.last_updated),
        }
        entries.append(entry)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history", "link": links}
    if entries:
        bundle["entry"] = entries
    return dumps(bundle)

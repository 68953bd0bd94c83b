"""The joined-up summary of one person, for people to read: pure folding over the resources
of every source patient linked to the person.

- the same fact from several sources appears once, with every source and date (problems and
  allergies folded by code, medications by product code, falling back to the text);
- disagreements are shown, not hidden: demographics per source where they differ, and
  contradictions flagged (an allergy at one source, "no known allergy" at another);
- each source shows when it last sent data, with its registered name and kind
  (``feeds.sources``) where the registry knows it.

Entered-in-error items are left out; inactive problems and stopped medications are kept,
marked as such.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fhir_gateway.feeds import ods_of_source
from fhir_gateway.feeds.sources import SourceSystem

NO_KNOWN_ALLERGY_CODES = frozenset(
    {
        "716186003",  # No known allergy
        "409137002",  # No known drug allergy
        "428607008",  # No known environmental allergy
        "429625007",  # No known food allergy
    }
)
RECENT_ENCOUNTERS = 20
TIMELINE_LIMIT = 200


@dataclass(frozen=True, slots=True)
class Item:
    resource_type: str
    resource_id: str
    source: str
    date: str | None
    body: Mapping[str, Any]


def _source(resource: Mapping[str, Any]) -> str:
    return str((resource.get("meta") or {}).get("source") or "unknown")


def _concept(concept: Any) -> tuple[str | None, str | None, str]:
    """(system, code, display) of a CodeableConcept: its first coding, or its text."""
    if not isinstance(concept, Mapping):
        return None, None, ""
    for coding in concept.get("coding") or ():
        if isinstance(coding, Mapping) and coding.get("code"):
            display = coding.get("display") or concept.get("text") or coding["code"]
            return coding.get("system"), str(coding["code"]), str(display)
    text = str(concept.get("text") or "")
    return None, None, text


def _fold_key(concept: Any) -> str:
    system, code, display = _concept(concept)
    if code:
        return f"{system}|{code}"
    return f"text|{display.strip().casefold()}"


def _date(resource: Mapping[str, Any]) -> str | None:
    kind = resource.get("resourceType")
    candidates: list[Any] = []
    if kind == "Condition":
        candidates = [resource.get("onsetDateTime"), resource.get("recordedDate")]
    elif kind == "AllergyIntolerance":
        candidates = [resource.get("recordedDate"), resource.get("onsetDateTime")]
    elif kind in ("MedicationStatement",):
        candidates = [
            resource.get("effectiveDateTime"),
            (resource.get("effectivePeriod") or {}).get("start"),
            resource.get("dateAsserted"),
        ]
    elif kind == "MedicationRequest":
        candidates = [resource.get("authoredOn")]
    elif kind in ("Encounter", "EpisodeOfCare"):
        candidates = [(resource.get("period") or {}).get("start")]
    elif kind == "Observation":
        candidates = [resource.get("effectiveDateTime"), resource.get("issued")]
    elif kind == "Procedure":
        candidates = [
            resource.get("performedDateTime"),
            (resource.get("performedPeriod") or {}).get("start"),
        ]
    elif kind == "Immunization":
        candidates = [resource.get("occurrenceDateTime")]
    elif kind == "Task":
        candidates = [resource.get("authoredOn")]
    for value in candidates:
        if isinstance(value, str) and value:
            return value
    return None


def _status_code(concept: Any) -> str | None:
    _system, code, _display = _concept(concept)
    return code


def _folded(items: Iterable[Item], concept_of: Any) -> list[dict[str, Any]]:
    groups: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        groups[_fold_key(concept_of(item.body))].append(item)
    folded: list[dict[str, Any]] = []
    for group in groups.values():
        _system, code, display = _concept(concept_of(group[0].body))
        folded.append(
            {
                "display": display,
                "code": code,
                "recordedBy": sorted(
                    (
                        {
                            "source": i.source,
                            "date": i.date,
                            "reference": f"{i.resource_type}/{i.resource_id}",
                            **_extra(i.body),
                        }
                        for i in group
                    ),
                    key=lambda r: (r["date"] or "", r["source"]),
                    reverse=True,
                ),
            }
        )
    folded.sort(key=_latest, reverse=True)
    return folded


def _latest(fact: dict[str, Any]) -> str:
    return max(str(r["date"] or "") for r in fact["recordedBy"])


def _extra(body: Mapping[str, Any]) -> dict[str, Any]:
    kind = body.get("resourceType")
    if kind in ("Condition", "AllergyIntolerance"):
        status = _status_code(body.get("clinicalStatus"))
        return {"clinicalStatus": status} if status else {}
    if kind in ("MedicationStatement", "MedicationRequest"):
        return {"status": body.get("status")}
    return {}


def _demographics(patients: list[Item]) -> dict[str, Any]:
    fields: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for item in patients:
        body = item.body
        for name in body.get("name") or ():
            if isinstance(name, Mapping) and name.get("use") in (None, "official", "usual"):
                text = " ".join([*(name.get("given") or ()), str(name.get("family") or "")]).strip()
                if text:
                    fields["name"][text].append(item.source)
                break
        for key in ("birthDate", "gender"):
            if body.get(key):
                fields[key][str(body[key])].append(item.source)
        for identifier in body.get("identifier") or ():
            if isinstance(identifier, Mapping) and identifier.get("system") == (
                "https://fhir.nhs.uk/Id/nhs-number"
            ):
                fields["nhsNumber"][str(identifier.get("value"))].append(item.source)
        for address in body.get("address") or ():
            if isinstance(address, Mapping) and address.get("postalCode"):
                fields["postcode"][str(address["postalCode"]).upper()].append(item.source)
                break
        if body.get("deceasedBoolean") or body.get("deceasedDateTime"):
            fields["deceased"][str(body.get("deceasedDateTime") or "yes")].append(item.source)
    result: dict[str, Any] = {}
    for key, values in fields.items():
        result[key] = {
            "value": max(values, key=lambda v: len(values[v])),
            "agreed": len(values) == 1,
            "bySource": [{"value": v, "sources": sorted(set(s))} for v, s in values.items()],
        }
    return result


def _source_view(source: str, last: str, systems: Mapping[str, SourceSystem]) -> dict[str, Any]:
    ods = ods_of_source(source)
    system = systems.get(ods) if ods else None
    return {
        "source": source,
        "lastSent": last,
        "organisation": ods,
        "system": system.id if system else None,
        "name": system.name if system else None,
        "kind": system.kind if system else None,
    }


def summarise(
    resources: Iterable[Mapping[str, Any]], systems: Mapping[str, SourceSystem] | None = None
) -> dict[str, Any]:
    """The summary of the resources of one person's linked source patients; ``systems``: the
    registered source systems by ODS code, to name each source."""
    by_type: dict[str, list[Item]] = defaultdict(list)
    last_sent: dict[str, str] = {}
    for resource in resources:
        kind = str(resource.get("resourceType"))
        if resource.get("status") == "entered-in-error":
            continue
        if _status_code(resource.get("verificationStatus")) == "entered-in-error":
            continue
        source = _source(resource)
        updated = str((resource.get("meta") or {}).get("lastUpdated") or "")
        if source != "urn:carejoin:identity" and updated > last_sent.get(source, ""):
            last_sent[source] = updated
        by_type[kind].append(Item(kind, str(resource.get("id")), source, _date(resource), resource))

    allergies = list(by_type["AllergyIntolerance"])
    none_known = [
        i for i in allergies if _status_code(i.body.get("code")) in NO_KNOWN_ALLERGY_CODES
    ]
    real = [i for i in allergies if i not in none_known]
    contradictions = []
    if none_known and real:
        contradictions.append(
            {
                "about": "allergies",
                "text": "One source records no known allergy while another records an allergy",
                "noKnownAllergy": sorted({i.source for i in none_known}),
                "allergy": sorted({i.source for i in real}),
            }
        )
    encounters = sorted(by_type["Encounter"], key=lambda i: i.date or "", reverse=True)

    def is_admission(item: Item) -> bool:
        return ((item.body.get("class") or {}).get("code")) == "IMP"

    def encounter_view(item: Item) -> dict[str, Any]:
        body = item.body
        priority = _status_code(body.get("priority"))
        method = next(
            (
                _concept(e.get("valueCodeableConcept"))[2]
                for e in body.get("extension") or ()
                if isinstance(e, Mapping) and str(e.get("url", "")).endswith("AdmissionMethod")
            ),
            None,
        )
        return {
            "reference": f"Encounter/{item.resource_id}",
            "source": item.source,
            "start": (body.get("period") or {}).get("start"),
            "end": (body.get("period") or {}).get("end"),
            "status": body.get("status"),
            "class": (body.get("class") or {}).get("code"),
            "emergency": priority == "EM" if priority else None,
            "admissionMethod": method,
            "type": _concept((body.get("type") or [None])[0])[2] or None,
        }

    social = [
        i
        for i in [*by_type["EpisodeOfCare"], *by_type["Task"], *by_type["Encounter"]]
        if i.resource_type != "Encounter" or (i.body.get("class") or {}).get("code") == "HH"
    ]
    timeline = sorted(
        (
            {
                "date": i.date,
                "type": i.resource_type,
                "display": _timeline_display(i.body),
                "source": i.source,
                "reference": f"{i.resource_type}/{i.resource_id}",
            }
            for kind, items in by_type.items()
            if kind not in ("Patient", "Person", "Provenance", "Organization", "Practitioner")
            for i in items
            if i.date
        ),
        key=lambda t: t["date"] or "",
        reverse=True,
    )
    return {
        "demographics": _demographics(by_type["Patient"]),
        "sources": [_source_view(s, when, systems or {}) for s, when in sorted(last_sent.items())],
        "problems": _folded(by_type["Condition"], lambda b: b.get("code")),
        "medications": _folded(
            [*by_type["MedicationStatement"], *by_type["MedicationRequest"]],
            lambda b: b.get("medicationCodeableConcept"),
        ),
        "allergies": _folded(real, lambda b: b.get("code")),
        "noKnownAllergyRecordedBy": sorted({i.source for i in none_known}),
        "contradictions": contradictions,
        "recentEncounters": [encounter_view(i) for i in encounters[:RECENT_ENCOUNTERS]],
        "admissions": [encounter_view(i) for i in encounters if is_admission(i)][
            :RECENT_ENCOUNTERS
        ],
        "socialCare": [
            {
                "reference": f"{i.resource_type}/{i.resource_id}",
                "kind": {
                    "EpisodeOfCare": "service",
                    "Task": "request",
                    "Encounter": "assessment or review",
                }[i.resource_type],
                "display": _timeline_display(i.body),
                "status": i.body.get("status"),
                "start": i.date,
                "source": i.source,
            }
            for i in sorted(social, key=lambda i: i.date or "", reverse=True)
        ],
        "timeline": timeline[:TIMELINE_LIMIT],
    }


def _timeline_display(body: Mapping[str, Any]) -> str:
    for key in ("code", "medicationCodeableConcept", "vaccineCode"):
        if body.get(key):
            return _concept(body[key])[2]
    if body.get("type"):
        first = body["type"][0] if isinstance(body["type"], list) else body["type"]
        return _concept(first)[2]
    if body.get("resourceType") == "Encounter":
        return str(
            (body.get("class") or {}).get("display")
            or (body.get("class") or {}).get("code")
            or "encounter"
        )
    return str(body.get("resourceType"))

"""The CapabilityStatement: exactly what this server does (R4 3.1.0.14 "capabilities").

Built from the same registry the search engine uses, so it cannot claim a parameter the
server does not index.
"""

from typing import Any

from fhir_gateway.search.model import ParamType
from fhir_gateway.search.registry import SEARCH_PARAMS
from fhir_gateway.store.refile import REFILABLE_TYPES

INTERACTIONS = (
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
COMMON = ("_id", "_lastUpdated", "_tag", "_security", "_profile", "_source")
RESULT_PARAMS = ("_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total")


def capability_statement(*, base_url: str, software_version: str) -> dict[str, Any]:
    resources = []
    for resource_type in sorted(SEARCH_PARAMS):
        params = SEARCH_PARAMS[resource_type]
        resources.append(
            {
                "type": resource_type,
                "interaction": [{"code": code} for code in INTERACTIONS],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": True,
                "conditionalCreate": True,
                "conditionalUpdate": True,
                "conditionalDelete": "single",
                "searchInclude": sorted(
                    f"{resource_type}:{p.code}"
                    for p in params.values()
                    if p.type is ParamType.REFERENCE
                ),
                "searchParam": [
                    {
                        "name": p.code,
                        "type": str(p.type),
                        **({"documentation": p.description} if p.description else {}),
                    }
                    for p in sorted(params.values(), key=lambda p: p.code)
                    if p.code not in COMMON
                ],
            }
        )
    for resource in resources:
        if resource["type"] == "AuditEvent":
            # The audit trail is written by the server alone and read by privacy officers
            # (and, for their own record, the person): docs/audit.md.
            resource.update(
                {
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "versioning": "no-version",
                    "readHistory": False,
                    "updateCreate": False,
                    "conditionalCreate": False,
                    "conditionalUpdate": False,
                    "conditionalDelete": "not-supported",
                    "searchInclude": [],
                    "searchParam": [
                        {"name": name, "type": kind}
                        for name, kind in (
                            ("agent", "reference"),
                            ("agent-role", "token"),
                            ("date", "date"),
                            ("organization", "token"),
                            ("outcome", "token"),
                            ("patient", "reference"),
                            ("purpose", "token"),
                        )
                    ],
                }
            )
        if resource["type"] in REFILABLE_TYPES:
            resource["operation"] = [
                {
                    "name": "refile",
                    "definition": "https://carejoin.example/fhir/OperationDefinition/refile",
                    "documentation": (
                        "Correct a record filed against the wrong patient: it is marked "
                        "entered-in-error, a copy is filed against the right patient, and a "
                        "Provenance names who, when and why (Parameters: patient, reason, steward)."
                    ),
                }
            ]
        if resource["type"] == "Patient":
            resource["operation"] = [
                {
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                    "documentation": (
                        "The joined-up record: every source patient linked to the same Person. "
                        "Parameters: start, end (care dates), _since, _type, _count; keyset paging."
                    ),
                },
                {
                    "name": "match",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match",
                    "documentation": (
                        "Scored candidates (search.score, match-grade) from identity's "
                        "probabilistic matching; onlyCertainMatches and count honoured."
                    ),
                },
            ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-24",
        "publisher": "carejoin",
        "kind": "instance",
        "software": {"name": "carejoin", "version": software_version},
        "implementation": {"description": "carejoin shared care record FHIR API", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Search result parameters supported: "
                    + ", ".join(RESULT_PARAMS)
                    + ". Modifiers: :missing on every type; :not on token; :exact and :contains on "
                    "string; :[Type] on reference; chained parameters and reverse chaining (_has), "
                    "each through only what the caller may see. Unknown parameters follow "
                    "Prefer: handling=lenient (default) or strict."
                ),
                "resource": resources,
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
                "searchParam": [
                    {"name": "_id", "type": "token"},
                    {"name": "_lastUpdated", "type": "date"},
                    {"name": "_tag", "type": "token"},
                    {"name": "_security", "type": "token"},
                    {"name": "_profile", "type": "uri"},
                    {"name": "_source", "type": "uri"},
                ],
            }
        ],
    }

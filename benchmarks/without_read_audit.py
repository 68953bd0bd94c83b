"""Reads by id without their AuditEvent insert: imported by a benchmark's server process
(``server(..., preload="benchmarks.without_read_audit")``) to measure what writing the audit
costs the service's read throughput. Never part of the service: the read path always audits.
"""

from typing import Any

from fhir_gateway.store import reads

_audited = reads._compiled


def _unaudited(kind: str, predicate: Any, *, audited: bool = True) -> reads.ReadStatement:
    return _audited(kind, predicate, audited=False)


reads._compiled = _unaudited

"""Reads by id without their AuditEvent insert: the app factory of a benchmark's server
(``server(..., app="benchmarks.without_read_audit:create_service")``) that measures what
writing the audit costs the service's read throughput. Importing this module takes the insert
out; uvicorn's every worker process imports the factory's module, so every one of them serves
the changed reads. Never part of the service: the read path always audits.
"""

from typing import Any

from carejoin.app import create_service
from fhir_gateway.store import reads

__all__ = ["create_service"]

_audited = reads._compiled


def _unaudited(kind: str, predicate: Any, *, audited: bool = True) -> reads.ReadStatement:
    return _audited(kind, predicate, audited=False)


reads._compiled = _unaudited

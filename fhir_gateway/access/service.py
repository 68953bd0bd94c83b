"""The agreement in force, and what one request's caller may see.

The agreement is data: the newest version an administrator loaded (table
``sharing_agreement``), or, while none has been loaded, the document at
``GatewaySettings.agreement_path``; with neither, nothing is shared (fail closed: callers see
their own organisation's records and the directory). Each process re-reads the version in
force at most every ``ttl`` seconds, so a change made through one replica reaches the others
within that time.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.agreements import Agreement, AgreementError, parse_agreement
from consent.context import AccessContext
from consent.labels import default_value_sets
from consent.visibility import Predicate, visibility
from fhir_gateway.access.models import SharingAgreementRow
from fhir_gateway.outcomes import Unprocessable

NO_AGREEMENT = Agreement(version="none", parties={}, contributions={}, rules=())


def sensitive_categories() -> frozenset[str]:
    return frozenset(c.code for c in default_value_sets().categories)


def parse_document(document: object) -> Agreement:
    """The agreement in a JSON document, or 422 naming what is wrong with it."""
    if not isinstance(document, dict):
        raise Unprocessable("The agreement must be a JSON object")
    try:
        return parse_agreement(document, sensitive_categories=sensitive_categories())
    except AgreementError as exc:
        raise Unprocessable(f"The agreement cannot be enforced: {exc}") from exc


@dataclass(frozen=True, slots=True)
class _Cached:
    agreement: Agreement
    fetched: float
    source: str  # which row (or file) it was parsed from


class AgreementStore:
    def __init__(self, *, default_path: str | None, ttl: float = 5.0) -> None:
        self._default_path = default_path
        self._ttl = ttl
        self._cached: _Cached | None = None
        self._lock = threading.Lock()

    def fresh(self) -> Agreement | None:
        """The cached agreement if it is recent enough (no I/O), else None."""
        cached = self._cached
        if cached is not None and time.monotonic() - cached.fetched < self._ttl:
            return cached.agreement
        return None

    def current(self, unit_of_work: Callable[[], AbstractContextManager[Session]]) -> Agreement:
        """The agreement in force (the database is asked at most every ``ttl`` seconds which
        version is in force; the document is parsed again only when that changes, so the same
        agreement object is returned while it stays in force)."""
        agreement = self.fresh()
        if agreement is not None:
            return agreement
        with self._lock:
            with unit_of_work() as session:
                newest = session.execute(
                    select(SharingAgreementRow.pk, SharingAgreementRow.version)
                    .where(SharingAgreementRow.active.is_(True))
                    .order_by(SharingAgreementRow.pk.desc())
                    .limit(1)
                ).first()
                cached = self._cached
                source = f"db:{newest.pk}" if newest is not None else f"file:{self._default_path}"
                if cached is not None and cached.source == source:
                    self._cached = _Cached(cached.agreement, time.monotonic(), source)
                    return cached.agreement
                document = (
                    session.scalar(
                        select(SharingAgreementRow.document).where(
                            SharingAgreementRow.pk == newest.pk
                        )
                    )
                    if newest is not None
                    else None
                )
            if document is not None:
                agreement = parse_document(orjson.loads(document))
            elif self._default_path:
                agreement = parse_document(orjson.loads(Path(self._default_path).read_bytes()))
            else:
                agreement = NO_AGREEMENT
            self._cached = _Cached(agreement, time.monotonic(), source)
            return agreement

    def forget(self) -> None:
        self._cached = None


def load_agreement(
    session: Session, document: object, *, loaded_by: str, now: datetime
) -> Agreement:
    """Validate ``document`` and make it the agreement in force (a new version)."""
    agreement = parse_document(document)
    exists = session.scalar(
        select(SharingAgreementRow.pk).where(SharingAgreementRow.version == agreement.version)
    )
    if exists is not None:
        raise Unprocessable(
            f"Version {agreement.version} has been loaded before; give the change a new version"
        )
    session.add(
        SharingAgreementRow(
            version=agreement.version,
            loaded_at=now,
            loaded_by=loaded_by,
            document=orjson.dumps(document).decode(),
            active=True,
        )
    )
    session.flush()
    return agreement


_PREDICATES: OrderedDict[tuple[int, AccessContext], Predicate] = OrderedDict()
_PREDICATES_LOCK = threading.Lock()
PREDICATE_CACHE_SIZE = 4096


def predicate_for(context: AccessContext, agreement: Agreement) -> Predicate:
    """What ``context`` may see under ``agreement`` (consent's tree, for the store).

    Remembered per caller and agreement object (a caller sends the same token request after
    request), so the same tree object comes back and the read path finds its compiled SQL
    without rebuilding or rehashing it. A new agreement is a new object: nothing stale."""
    key = (id(agreement), context)
    with _PREDICATES_LOCK:
        found = _PREDICATES.get(key)
        if found is not None:
            _PREDICATES.move_to_end(key)
            return found
    predicate = visibility(context, agreement, sensitive_categories=sensitive_categories())
    with _PREDICATES_LOCK:
        # Keep the agreement alive while its predicates are cached, so its id is not reused
        # (the few most recent agreements: a new version replaces the old within seconds).
        _AGREEMENTS[id(agreement)] = agreement
        while len(_AGREEMENTS) > 8:
            dropped = next(iter(_AGREEMENTS))
            del _AGREEMENTS[dropped]
            for stale in [k for k in _PREDICATES if k[0] == dropped]:
                del _PREDICATES[stale]
        _PREDICATES[key] = predicate
        while len(_PREDICATES) > PREDICATE_CACHE_SIZE:
            _PREDICATES.popitem(last=False)
    return predicate


_AGREEMENTS: dict[int, Agreement] = {}

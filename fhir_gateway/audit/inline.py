"""AuditEvents inserted by the very statement that releases the data they describe.

The PostgreSQL read paths that run as one statement in autocommit (``store.reads``,
``record.everything``, ``search.statement``) add a data-modifying CTE built here: the
records commit with the data, before a byte of it leaves, and a failed insert fails the
statement, so nothing is released unaudited.
"""

from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    exists,
    func,
    insert,
    literal_column,
    not_,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import aliased

from consent.audit import AuditRecord
from fhir_gateway.audit.models import AuditEventRow
from fhir_gateway.audit.repository import row_values
from fhir_gateway.identity.models import IdentityRecord
from fhir_gateway.store.raw import slot

# The audit_event columns every statement fills from the audit record (besides the event
# id, the person and the resource), each from the slot ``a_<column>``.
AUDIT_COLUMNS = (
    "recorded_at",
    "action",
    "interaction",
    "outcome",
    "caller_kind",
    "agent",
    "organisation",
    "role",
    "purpose",
    "break_glass",
    "query",
    "detail",
)


def column_slots() -> list[Any]:
    """The slots of ``AUDIT_COLUMNS``, in order (typed as their columns)."""
    return [slot(f"a_{n}", AuditEventRow.__table__.c[n].type) for n in AUDIT_COLUMNS]


def audit_events(released: Any, anchor_ok: ColumnElement[bool] | None = None) -> Any:
    """``audit_insert`` as a data-modifying CTE."""
    return audit_insert(released, anchor_ok).cte("audited")


def audit_insert(released: Any, anchor_ok: ColumnElement[bool] | None = None) -> Any:
    """An INSERT of one AuditEvent per person among ``released``'s
    ``patient_id``s (a Person where identity filed the patient, else the Patient; one for
    nobody in particular when none), ids from the slot ``a_event_id`` with the person's
    number in the last four digits. ``anchor_ok``: insert only if it holds."""
    identity = aliased(IdentityRecord)
    person = func.coalesce(
        literal_column("'Person/'", String()) + identity.person_id,
        literal_column("'Patient/'", String()) + released.c.patient_id,
    )
    persons = (
        select(person.label("person"))
        .select_from(released.outerjoin(identity, identity.patient_id == released.c.patient_id))
        .where(released.c.patient_id.is_not(None))
        .distinct()
    )
    nobody = select(null().label("person")).where(
        not_(exists(select(released.c.patient_id).where(released.c.patient_id.is_not(None))))
    )
    who = union_all(persons, nobody).subquery("who")
    number = func.row_number().over(order_by=who.c.person)
    event_id = func.concat(
        func.left(slot("a_event_id", String()), literal_column("28")),
        func.lpad(func.to_hex(number), literal_column("4"), literal_column("'0'")),
    )
    values = select(
        event_id,
        *column_slots(),
        who.c.person,
    )
    if anchor_ok is not None:
        values = values.where(anchor_ok)
    return insert(AuditEventRow).from_select(["event_id", *AUDIT_COLUMNS, "person"], values)


def audit_params(record: AuditRecord) -> dict[str, Any]:
    """The values of the audit slots (``a_event_id`` and ``column_slots``) for ``record``."""
    values = row_values(record)
    return {f"a_{n}": values[n] for n in ("event_id", *AUDIT_COLUMNS)}

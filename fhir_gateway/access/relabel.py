"""Re-deriving consent's data for what is already stored (``carejoin relabel``).

Run after the sensitive-data value sets change, or once when upgrading a database stored
before labels existed. For each resource, in primary-key batches each committed on its own:
the sensitivity column is recomputed from the stored JSON (the stored body is not rewritten:
its ``meta.security`` keeps what was computed when it was written, so a narrowed value set
adds no new codes there but the column consent queries is current), and the relationships
and directives of the types they derive from are replaced. Safe to run while the service
runs; idempotent.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from consent.labels import default_value_sets, label_resource
from consent.visibility import labels_text
from fhir_gateway.access import derive
from fhir_gateway.access.models import CareRelationshipRow, ConsentDirectiveRow
from fhir_gateway.store.models import ResourceRow
from fhir_gateway.store.repository import PendingWrite


@dataclass
class RelabelReport:
    resources: int = 0
    sensitive: int = 0
    relationships: int = 0
    directives: int = 0


def relabel_all(
    factory: sessionmaker[Session], *, batch: int, progress: Callable[[int], Any]
) -> RelabelReport:
    report = RelabelReport()
    value_sets = default_value_sets()
    after = 0
    while True:
        with factory.begin() as session:
            rows = session.execute(
                select(
                    ResourceRow.pk,
                    ResourceRow.resource_type,
                    ResourceRow.resource_id,
                    ResourceRow.version_id,
                    ResourceRow.last_updated,
                    ResourceRow.deleted,
                    ResourceRow.patient_id,
                    ResourceRow.source,
                    ResourceRow.sensitivity,
                    ResourceRow.body,
                )
                .where(ResourceRow.pk > after)
                .order_by(ResourceRow.pk)
                .limit(batch)
            ).all()
            if not rows:
                break
            changes: list[dict[str, Any]] = []
            derived: list[PendingWrite] = []
            for row in rows:
                if row.deleted or row.body is None:
                    continue
                body = orjson.loads(row.body)
                categories, _security = label_resource(body, value_sets)
                text = labels_text(categories)
                if text:
                    report.sensitive += 1
                source_org = derive.source_organisation(row.source)
                if text != row.sensitivity:
                    changes.append({"pk": row.pk, "sensitivity": text})
                if (
                    row.resource_type in derive.RELATIONSHIP_TYPES
                    or row.resource_type in derive.DIRECTIVE_TYPES
                ):
                    derived.append(
                        PendingWrite(
                            resource_type=row.resource_type,
                            resource_id=row.resource_id,
                            version_id=row.version_id,
                            last_updated=row.last_updated,
                            method="PUT",
                            body=row.body,
                            patient_id=row.patient_id,
                            source=row.source,
                            security=None,
                            index=None,
                            existing_pk=row.pk,
                            source_org=source_org,
                        )
                    )
            if changes:
                session.execute(update(ResourceRow), changes)
            session.execute(
                update(ResourceRow)
                .where(
                    ResourceRow.pk.in_([r.pk for r in rows]),
                    ResourceRow.source_org.is_(None),
                    ResourceRow.source.is_not(None),
                )
                .values(
                    source_org=func.substr(ResourceRow.source, len(derive.SOURCE_PREFIXES[0]) + 1)
                )
                .where(ResourceRow.source.like(derive.SOURCE_PREFIXES[0] + "%"))
            )
            derive.replace_derived(session, derived, now=datetime.now(UTC))
            after = rows[-1].pk
            report.resources += len(rows)
        progress(len(rows))
    with factory.begin() as session:
        report.relationships = int(
            session.scalar(select(func.count()).select_from(CareRelationshipRow)) or 0
        )
        report.directives = int(
            session.scalar(select(func.count()).select_from(ConsentDirectiveRow)) or 0
        )
    return report

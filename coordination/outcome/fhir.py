"""Outcome reports as FHIR MeasureReports and as CSV (pure)."""

import csv
import io
from collections.abc import Sequence
from datetime import date
from typing import Any

from coordination.outcome.service import MEASURES, Report

MEASURE = "https://fhir.carejoin.example/Measure/coordination-outcomes"
MEASURE_SYSTEM = "https://fhir.carejoin.example/CodeSystem/coordination-outcome"
MASKED = {
    "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
    "valueCode": "masked",
}
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def measure_report(report: Report, *, generated: str) -> dict[str, Any]:
    groups = []
    for key, figure in report.figures.items():
        group: dict[str, Any] = {
            "code": {"coding": [{"system": MEASURE_SYSTEM, "code": key, "display": MEASURES[key]}]}
        }
        if figure.suppressed:
            group["extension"] = [MASKED]
        elif figure.value is not None:
            group["measureScore"] = {"value": figure.value}
        groups.append(group)
    month = report.month
    subject = (
        {"identifier": {"system": ODS, "value": report.practice}}
        if report.practice
        else {"reference": f"Organization/{report.team_id}"}
    )
    return {
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": "summary",
        "measure": MEASURE,
        "date": generated,
        "period": {
            "start": month.first_day.isoformat(),
            "end": date.fromordinal(month.next_first_day.toordinal() - 1).isoformat(),
        },
        "reporter": {"reference": f"Organization/{report.team_id}"},
        "subject": subject,
        "group": groups,
    }


def bundle(reports: Sequence[Report], *, generated: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": generated,
        "entry": [{"resource": measure_report(r, generated=generated)} for r in reports],
    }


def as_csv(reports: Sequence[Report]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["month", "team", "practice", "measure", "value", "suppressed"])
    for report in reports:
        for key, figure in report.figures.items():
            writer.writerow(
                [
                    str(report.month),
                    report.team_id,
                    report.practice or "",
                    key,
                    "" if figure.value is None else f"{figure.value:g}",
                    "yes" if figure.suppressed else "",
                ]
            )
    return out.getvalue()

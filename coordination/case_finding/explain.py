"""What case-finding keeps and shows of an assessment (pure).

``summary`` turns an ``Assessment`` into the stored columns, a sortable need and the full
explanation (every measure's contributions, each with its facts and their sources and
labels). ``for_team`` is what the team's ranked list shows: name, band, the figures and the
contributing facts, with every fact that carries a sensitive label left out.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from coordination.case_finding.rules import Assessment, Contribution, Fact, Need

# Need compared field by field, packed into one number so the database can sort on it:
# each field capped to its digits, most significant first (the HFRS tenths as a fraction).
_DIGITS = (
    ("frailty_band", 1),
    ("emergency_admissions", 2),
    ("charlson_index", 2),
    ("ltc_count", 2),
    ("emergency_bed_days", 3),
    ("ae_attendances", 2),
)


def need_value(need: Need) -> float:
    value = 0
    for field, digits in _DIGITS:
        value = value * 10**digits + min(int(getattr(need, field)), 10**digits - 1)
    return value + min(need.hfrs_tenths, 9999) / 10_000


@dataclass(frozen=True, slots=True)
class Summary:
    columns: Mapping[str, Any]
    need: float
    explanation: dict[str, Any]


def _fact(fact: Fact) -> dict[str, Any]:
    return {
        "reference": fact.reference,
        "organisation": fact.organisation,
        "date": fact.date.isoformat() if fact.date else None,
        "display": fact.display,
        "labels": sorted(fact.labels),
    }


def _contributions(items: Sequence[Contribution]) -> list[dict[str, Any]]:
    return [
        {
            "key": c.key,
            "display": c.display,
            "points": c.points,
            "facts": [_fact(f) for f in c.facts],
        }
        for c in items
    ]


def summary(assessment: Assessment) -> Summary:
    frailty = assessment.frailty
    emergency = assessment.emergency
    columns = {
        "age": assessment.age,
        "hfrs": frailty.score if frailty else None,
        "hfrs_band": frailty.band if frailty else None,
        "charlson": assessment.charlson.index,
        "conditions": assessment.conditions.count,
        "emergency_admissions": emergency.emergency_admissions,
        "emergency_bed_days": emergency.emergency_bed_days,
        "ae_attendances": emergency.ae_attendances,
        "services": len(assessment.services),
    }
    explanation = {
        "asOf": assessment.as_of.isoformat(),
        "hfrs": None
        if frailty is None
        else {
            "score": frailty.score,
            "band": frailty.band,
            "lookbackYears": frailty.lookback_years,
            "contributions": _contributions(frailty.contributions),
        },
        "charlson": {
            "index": assessment.charlson.index,
            "weights": assessment.charlson.weights,
            "lookbackYears": assessment.charlson.lookback_years,
            "contributions": _contributions(assessment.charlson.contributions),
        },
        "longTermConditions": {
            "count": assessment.conditions.count,
            "contributions": _contributions(assessment.conditions.contributions),
        },
        "emergencyUse": {
            "months": emergency.months,
            "from": emergency.window_start.isoformat(),
            "admissions": emergency.emergency_admissions,
            "bedDays": emergency.emergency_bed_days,
            "aeAttendances": emergency.ae_attendances,
            "contributions": _contributions(emergency.contributions),
        },
        "socialCareServices": [
            {
                "display": s.display,
                "start": s.start.isoformat() if s.start else None,
                "fact": _fact(s.fact),
            }
            for s in assessment.services
        ],
    }
    return Summary(columns, need_value(assessment.need), explanation)


def _visible(contributions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Contributions with only their unlabelled facts; one with none left is left out."""
    shown = []
    for c in contributions:
        facts = [f for f in c["facts"] if not f["labels"]]
        if facts:
            shown.append({**c, "facts": facts})
    return shown


def for_team(row: Any) -> dict[str, Any]:
    """One entry of a team's ranked list (``row``: a ``CaseFindingRow``)."""
    explanation = orjson.loads(row.explanation)
    hfrs = explanation.get("hfrs")
    return {
        "person": f"Person/{row.person_id}",
        "patient": f"Patient/{row.patient_id}" if row.patient_id else None,
        "name": row.name,
        "birthDate": row.birth_date,
        "age": row.age,
        "practice": row.practice,
        "cohorts": row.cohorts.split(),
        "hfrs": None if hfrs is None else {"score": row.hfrs, "band": row.hfrs_band},
        "charlson": row.charlson,
        "longTermConditions": row.conditions,
        "emergencyAdmissions": row.emergency_admissions,
        "emergencyBedDays": row.emergency_bed_days,
        "aeAttendances": row.ae_attendances,
        "socialCareServices": row.services,
        "contributions": {
            "hfrs": _visible(hfrs["contributions"]) if hfrs else [],
            "charlson": _visible(explanation["charlson"]["contributions"]),
            "longTermConditions": _visible(explanation["longTermConditions"]["contributions"]),
            "emergencyUse": _visible(explanation["emergencyUse"]["contributions"]),
            "socialCareServices": [
                s for s in explanation["socialCareServices"] if not s["fact"]["labels"]
            ],
        },
        "computedAt": row.computed_at.isoformat(),
    }

"""Proposing a coordinator (pure).

For a person found by case-finding or referred, among the active coordinators of the team
aligned with their practice:

1. Continuity: a coordinator who already coordinates (or last coordinated) the person keeps
   them, while still in the team, whatever their caseload.
2. Room: only coordinators with a caseload below their capacity; if none has room, the
   person waits in the team's queue, ordered by need.
3. Fit: the disciplines the person's needs call for, in order (``needs_from``); a coordinator
   of the first fits best, of a later one less, of another discipline least.
4. Balance: among equally fitting coordinators, the one with the lowest share of their
   capacity in use, then the most room, then by id (so the proposal is repeatable).

Every proposal says why, in words a team lead can check.
"""

from collections.abc import Sequence
from dataclasses import dataclass

MENTAL_HEALTH_CONDITIONS = frozenset({"depression", "serious_mental_illness"})
NURSING_CONDITIONS = frozenset(
    {"heart_failure", "copd", "diabetes", "ckd", "af", "chd", "dementia", "stroke_tia"}
)


@dataclass(frozen=True, slots=True)
class Needs:
    disciplines: tuple[str, ...]  # preferred, best first (may be empty: any discipline)
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CoordinatorLoad:
    practitioner: str
    discipline: str
    capacity: int
    caseload: int

    @property
    def room(self) -> int:
        return self.capacity - self.caseload

    @property
    def used(self) -> float:
        return self.caseload / self.capacity if self.capacity else 1.0


@dataclass(frozen=True, slots=True)
class Proposal:
    coordinator: str | None  # None: the person waits in the team's queue
    reasons: tuple[str, ...]

    @property
    def waiting(self) -> bool:
        return self.coordinator is None


def needs_from(
    *,
    conditions: Sequence[str],
    social_care_services: int,
    hfrs_band: str | None,
    emergency_admissions: int,
) -> Needs:
    """Which disciplines fit, from the case-finding facts: mental health conditions call for
    mental health; current social care services for social work; frailty, physical long-term
    conditions or emergency admissions for nursing."""
    ranked: list[tuple[str, str]] = []
    mental = sorted(MENTAL_HEALTH_CONDITIONS.intersection(conditions))
    physical = sorted(NURSING_CONDITIONS.intersection(conditions))
    if mental:
        ranked.append(("mental-health", f"mental health conditions ({', '.join(mental)})"))
    if hfrs_band in {"intermediate", "high"} or len(physical) >= 2 or emergency_admissions >= 2:
        why = []
        if hfrs_band in {"intermediate", "high"}:
            why.append(f"{hfrs_band} frailty")
        if physical:
            why.append(f"long-term conditions ({', '.join(physical)})")
        if emergency_admissions >= 2:
            why.append(f"{emergency_admissions} emergency admissions in 12 months")
        ranked.append(("nursing", "; ".join(why)))
    if social_care_services:
        ranked.append(("social-work", f"{social_care_services} current social care services"))
    return Needs(
        disciplines=tuple(d for d, _ in ranked),
        reasons=tuple(f"{d}: {why}" for d, why in ranked),
    )


def propose(
    needs: Needs, coordinators: Sequence[CoordinatorLoad], *, current: str | None = None
) -> Proposal:
    if current is not None:
        for c in coordinators:
            if c.practitioner == current:
                note = "" if c.room > 0 else " (over capacity: the team lead may rebalance)"
                return Proposal(
                    c.practitioner,
                    (
                        f"continuity: already known to {c.practitioner}{note}",
                        f"caseload {c.caseload}/{c.capacity}",
                    ),
                )
    with_room = [c for c in coordinators if c.room > 0]
    if not with_room:
        return Proposal(
            None,
            (
                "every coordinator in the team is at capacity: waiting in the team's queue, "
                "ordered by need",
            ),
        )

    def fit(c: CoordinatorLoad) -> int:
        if c.discipline in needs.disciplines:
            return len(needs.disciplines) - needs.disciplines.index(c.discipline)
        return 0

    best = min(with_room, key=lambda c: (-fit(c), c.used, -c.room, c.practitioner))
    reasons: list[str] = []
    if fit(best):
        reasons.append(f"discipline {best.discipline} fits: " + "; ".join(needs.reasons))
    elif needs.disciplines:
        reasons.append(
            "no coordinator of a fitting discipline ("
            + ", ".join(needs.disciplines)
            + f") has room; {best.discipline} has"
        )
    else:
        reasons.append("no particular discipline needed")
    peers = [c for c in with_room if fit(c) == fit(best)]
    reasons.append(
        f"caseload {best.caseload}/{best.capacity}"
        + (" (the least loaded of those who fit)" if len(peers) > 1 else "")
    )
    return Proposal(best.practitioner, tuple(reasons))

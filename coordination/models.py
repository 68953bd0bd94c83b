"""All of coordination's tables (imported by the migrations' env so Alembic sees them)."""

from coordination.case_finding.models import CaseFindingRow, RescoreRow
from coordination.caseload.models import CaseRow, PersonStateRow, TaskRow
from coordination.team.models import MemberRow, TeamPracticeRow, TeamRow

__all__ = [
    "CaseFindingRow",
    "CaseRow",
    "MemberRow",
    "PersonStateRow",
    "RescoreRow",
    "TaskRow",
    "TeamPracticeRow",
    "TeamRow",
]

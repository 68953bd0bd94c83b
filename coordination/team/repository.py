"""Every query on coordination's team tables."""

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from coordination.team.models import MemberRow, TeamPracticeRow, TeamRow


def get_team(session: Session, team_id: str) -> TeamRow | None:
    return session.get(TeamRow, team_id)


def all_teams(session: Session) -> Sequence[TeamRow]:
    return session.scalars(select(TeamRow).order_by(TeamRow.team_id)).all()


def practices_of(session: Session, team_id: str) -> list[str]:
    return list(
        session.scalars(
            select(TeamPracticeRow.practice)
            .where(TeamPracticeRow.team_id == team_id)
            .order_by(TeamPracticeRow.practice)
        )
    )


def practice_teams(session: Session) -> dict[str, str]:
    """Every aligned practice (ODS) and its team."""
    rows = session.execute(select(TeamPracticeRow.practice, TeamPracticeRow.team_id)).all()
    return dict(rows)


def team_of_practice(session: Session, practice: str) -> str | None:
    return session.scalar(
        select(TeamPracticeRow.team_id).where(TeamPracticeRow.practice == practice)
    )


def members_of(session: Session, team_id: str, *, active_only: bool = True) -> list[MemberRow]:
    stmt = select(MemberRow).where(MemberRow.team_id == team_id)
    if active_only:
        stmt = stmt.where(MemberRow.active.is_(True))
    return list(session.scalars(stmt.order_by(MemberRow.practitioner)))


def memberships(session: Session, practitioner: str) -> list[MemberRow]:
    return list(
        session.scalars(
            select(MemberRow).where(
                MemberRow.practitioner == practitioner, MemberRow.active.is_(True)
            )
        )
    )


def replace_practices(session: Session, team_id: str, practices: Sequence[str]) -> None:
    session.execute(delete(TeamPracticeRow).where(TeamPracticeRow.team_id == team_id))
    session.add_all(TeamPracticeRow(practice=p, team_id=team_id) for p in practices)
    session.flush()

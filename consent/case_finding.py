"""Who may see case-finding results (pure).

Case-finding is direct care on behalf of the registered practice: the agreement names the
roles (``case_finding_roles``) in the integrated team aligned with a practice that may see
that practice's results, under the purpose CASEFIND. Whether the user is in that team is a
fact coordination knows (its membership); the decision is here.
"""

from consent.agreements import Agreement
from consent.context import AccessContext, CallerKind, Purpose


def may_see_case_finding(context: AccessContext, agreement: Agreement, *, in_team: bool) -> bool:
    return (
        context.kind is CallerKind.USER
        and context.purpose is Purpose.CASEFIND
        and context.organisation is not None
        and context.organisation in agreement.parties
        and context.role in agreement.case_finding_roles
        and in_team
    )


def why_not(context: AccessContext, agreement: Agreement, *, in_team: bool) -> str:
    """For the 403: what is missing (never anything about people)."""
    if context.kind is not CallerKind.USER:
        return "Case-finding results are shown to members of staff only"
    if context.purpose is not Purpose.CASEFIND:
        return "Sign in with the purpose of use CASEFIND to see case-finding results"
    if context.organisation not in agreement.parties:
        return "The caller's organisation is not party to the sharing agreement"
    if context.role not in agreement.case_finding_roles:
        return "The sharing agreement does not let this role see case-finding results"
    if not in_team:
        return "Only members of the team aligned with the practice see its case-finding results"
    return "Not permitted"

"""OperationOutcome builders and the OutcomeError family.

Every error the gateway returns is a FHIR ``OperationOutcome`` with the HTTP status that the
RESTful API specification (R4 3.1.0 "RESTful API", section 3.1.0.1.7 et seq.) gives for it.
Services raise these; one set of handlers in ``create_app`` turns them into responses.
"""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: severity, code (IssueType), diagnostics and FHIRPath."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()


def outcome(*issues: Issue) -> dict[str, Any]:
    """An OperationOutcome as JSON."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [_issue_json(i) for i in issues],
    }


def _issue_json(issue: Issue) -> dict[str, Any]:
    data: dict[str, Any] = {
        "severity": issue.severity,
        "code": issue.code,
        "diagnostics": issue.diagnostics,
    }
    if issue.expression:
        data["expression"] = list(issue.expression)
    return data


def information(message: str) -> dict[str, Any]:
    return outcome(Issue(code="informational", diagnostics=message, severity="information"))


class OutcomeError(Exception):
    """An error that is answered with an OperationOutcome and an HTTP status."""

    status_code = 500
    issue_code = "exception"
    headers: dict[str, str] | None = None

    def __init__(self, message: str, *, issues: tuple[Issue, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.issues = issues or (Issue(code=self.issue_code, diagnostics=message),)

    def to_outcome(self) -> dict[str, Any]:
        return outcome(*self.issues)


class Invalid(OutcomeError):
    """The request or resource is malformed or fails validation (400)."""

    status_code = 400
    issue_code = "invalid"


class Unprocessable(Invalid):
    """The resource is well formed but breaks a business rule (422)."""

    status_code = 422
    issue_code = "processing"


class NotSupported(Invalid):
    """A search parameter, modifier or interaction the server does not support (400)."""

    issue_code = "not-supported"


class Unauthorized(OutcomeError):
    status_code = 401
    issue_code = "login"


class Forbidden(OutcomeError):
    status_code = 403
    issue_code = "forbidden"


class NotFound(OutcomeError):
    status_code = 404
    issue_code = "not-found"


class MethodNotAllowed(OutcomeError):
    status_code = 405
    issue_code = "not-supported"


class Conflict(OutcomeError):
    status_code = 409
    issue_code = "conflict"


class Gone(OutcomeError):
    status_code = 410
    issue_code = "deleted"


class PreconditionFailed(OutcomeError):
    status_code = 412
    issue_code = "conflict"


class PreconditionRequired(OutcomeError):
    """428 (RFC 6585): the change needs a condition (If-Match) the request did not give."""

    status_code = 428
    issue_code = "conflict"


class PayloadTooLarge(OutcomeError):
    status_code = 413
    issue_code = "too-costly"


class UnsupportedMediaType(OutcomeError):
    status_code = 415
    issue_code = "not-supported"


class NotAcceptable(OutcomeError):
    status_code = 406
    issue_code = "not-supported"

"""FHIR errors. Each carries its HTTP status and renders itself as an OperationOutcome.

    FhirError (500, exception)
    ├── BadRequest (400, invalid)
    │   ├── InvalidResource (400, invalid; carries one issue per problem)
    │   └── InvalidSearch (400, invalid / not-supported)
    ├── Unauthorized (401, login)
    ├── Forbidden (403, forbidden)
    ├── NotFound (404, not-found)
    ├── Gone (410, deleted)
    ├── MethodNotAllowed (405, not-supported)
    ├── NotAcceptable (406, not-supported)
    ├── Conflict (409, conflict)
    ├── PreconditionFailed (412, conflict)
    ├── PayloadTooLarge (413, too-costly)
    ├── UnsupportedMediaType (415, not-supported)
    └── Unprocessable (422, processing; business-rule failures)

Issue codes are from http://hl7.org/fhir/R4/valueset-issue-type.html.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "BadRequest",
    "Conflict",
    "FhirError",
    "Forbidden",
    "Gone",
    "InvalidResource",
    "InvalidSearch",
    "Issue",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "Unauthorized",
    "Unprocessable",
    "UnsupportedMediaType",
    "operation_outcome",
]


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue: severity, code (issue-type), diagnostics, FHIRPath expression."""

    severity: str
    code: str
    diagnostics: str
    expression: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = [self.expression]
        return out


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


class FhirError(Exception):
    status = 500
    code = "exception"

    def __init__(self, diagnostics: str, expression: str | None = None, issues: list[Issue] | None = None):
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.issues = issues or [Issue("error", self.code, diagnostics, expression)]
        self.headers: dict[str, str] = {}

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class BadRequest(FhirError):
    status = 400
    code = "invalid"


class InvalidResource(BadRequest):
    """The resource failed validation; ``issues`` lists every problem found."""


class InvalidSearch(BadRequest):
    pass


class Unauthorized(FhirError):
    status = 401
    code = "login"


class Forbidden(FhirError):
    status = 403
    code = "forbidden"


class NotFound(FhirError):
    status = 404
    code = "not-found"


class Gone(FhirError):
    status = 410
    code = "deleted"


class MethodNotAllowed(FhirError):
    status = 405
    code = "not-supported"


class NotAcceptable(FhirError):
    status = 406
    code = "not-supported"


class Conflict(FhirError):
    status = 409
    code = "conflict"


class PreconditionFailed(FhirError):
    status = 412
    code = "conflict"


class PayloadTooLarge(FhirError):
    status = 413
    code = "too-costly"


class UnsupportedMediaType(FhirError):
    status = 415
    code = "not-supported"


class Unprocessable(FhirError):
    status = 422
    code = "processing"

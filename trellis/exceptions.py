"""Every error the platform raises on purpose.

Each carries an HTTP status, a stable machine-readable ``code`` and optional
``details`` (a list of ``{"field": ..., "message": ...}``), so the API can turn
any of them into the JSON error body of DESIGN §4 without knowing the type.
"""

from __future__ import annotations

from typing import Any


class TrellisError(Exception):
    """Base class: a refusal the caller can act on."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body: ``{"error": {code, message, details}}``."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(TrellisError):
    """A request the platform cannot act on as sent (400)."""

    status = 400
    code = "bad_request"


class InvalidQuery(BadRequest):
    """A filter, sort, cursor or field list that cannot be understood."""

    code = "invalid_query"


class AuthenticationRequired(TrellisError):
    """No signed-in user or valid token where one is needed (401)."""

    status = 401
    code = "unauthenticated"


class Forbidden(TrellisError):
    """The caller is known but their roles do not allow this (403)."""

    status = 403
    code = "forbidden"


class CsrfFailed(TrellisError):
    """A write made with a browser session that lacks the page's CSRF token.

    Not a ``Forbidden``: the caller's rights are not in question, the request's origin is.
    """

    status = 403
    code = "csrf_failed"


class NotFound(TrellisError):
    """No such object, record or document, or one the caller may not see (404)."""

    status = 404
    code = "not_found"


class Conflict(TrellisError):
    """The request clashes with the stored state (409); subclasses say how."""

    status = 409
    code = "conflict"


class StaleRecord(Conflict):
    """The caller's ``version`` is not the stored one: somebody saved first."""

    code = "stale_version"


class NotRetryable(Conflict):
    """Only a failed job can be retried."""

    code = "not_retryable"


class ReferencedRecord(Conflict):
    """A record other records still point at cannot be deleted."""

    code = "referenced"


class ReferencedDocument(Conflict):
    """A definition (or role) that other metadata still depends on cannot be deleted."""

    code = "referenced"


class DuplicateValue(Conflict):
    """A unique field's value another record (or this request) already holds (409)."""

    code = "duplicate"


class TransitionNotAllowed(Conflict):
    """A workflow transition that does not leave the record's current state (409)."""

    code = "transition_not_allowed"


class AwaitingApproval(Conflict):
    """The record awaits approval: it is read-only until decided or recalled (409)."""

    code = "awaiting_approval"


class ApprovalConflict(Conflict):
    """The approval task or request is not in a state that allows this (409)."""

    code = "approval_conflict"


class TransitionRefused(TrellisError):
    """A transition whose guard is false or whose required comment is missing (422)."""

    status = 422
    code = "transition_refused"


class InvalidDefinition(TrellisError):
    """An object definition refused by the meta-schema or by the platform's rules."""

    status = 422
    code = "invalid_definition"


class IncompatibleChange(InvalidDefinition):
    """A definition change that the stored data cannot survive."""

    code = "incompatible_change"


class ValidationFailed(TrellisError):
    """A record refused by its object's schema or rules."""

    status = 422
    code = "validation_failed"


class TargetRefused(ValidationFailed):
    """A webhook URL that is not http(s) or points into a private network (422)."""

    code = "target_refused"


class DeliveryFailed(TrellisError):
    """A webhook or e-mail the receiver did not take; the outbox relay retries it (502)."""

    status = 502
    code = "delivery_failed"


class FileTooLarge(TrellisError):
    """An upload larger than its field takes (413); nothing of it is kept."""

    status = 413
    code = "file_too_large"


class PackError(TrellisError):
    """A pack that cannot be read or installed: missing files, bad JSON, invalid content (422)."""

    status = 422
    code = "invalid_pack"


class TooManyAttempts(TrellisError):
    """Sign-in slowed down or locked after repeated failures."""

    status = 429
    code = "too_many_attempts"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, [{"field": "retry_after", "message": str(retry_after)}])
        self.retry_after = retry_after

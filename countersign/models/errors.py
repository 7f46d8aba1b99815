"""One error tree: every error Countersign raises on purpose is a `CountersignError`, so a caller can
tell ours from a library's or a bug with one `except`. Errors keep a second, familiar base where callers
already expect one (`ValueError` for bad input, `KeyError` for an unknown name).

    CountersignError
    ├── RequestError          a request the gateway refuses: one HTTP status per subclass (api/main.py)
    │   ├── NotFound, Forbidden, Conflict (WorkflowFinished), Invalid (InvalidAction), Unavailable
    ├── configuration         SpecError, PolicyFileError, MissingKey, EvalFileError, PayloadCodecError
    ├── input and rules       WireError, ExpressionError, NoRoute, GraphInvalid
    ├── stores                AuditConflict, AuditGap, LedgerConflict, LeaseLost, SignInRefused, ...
    └── plug-ins              ProviderError (llm/), RetryLater, UnknownToolError, HttpRefused, SmtpRefused,
                              NodeError (graphs/)

An error that crosses Temporal travels as an `ApplicationError` whose `type` is a `FailureType`: named
here once, used where it is raised (activities) and where it is retried or not (workflows).
"""

from enum import StrEnum
from typing import Any


class CountersignError(Exception):
    """The root; `code` is a stable machine-readable reason."""

    code = "error"

    def __init__(self, message: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class RequestError(CountersignError):
    """A request the gateway refuses; the gateway maps each subclass to one HTTP status."""


class NotFound(RequestError):
    code = "NotFound"


class Forbidden(RequestError):
    code = "Forbidden"


class Conflict(RequestError):
    code = "Conflict"


class WorkflowFinished(Conflict):
    """A message for a workflow that has already ended: nothing it says can change the outcome."""


class Invalid(RequestError):
    code = "Invalid"


class InvalidAction(Invalid):
    """A caller's action the gateway refuses before anything starts: each finding names what is wrong
    (`code`, `message`, `field`), as validation would have told a reviewer."""

    code = "InvalidAction"

    def __init__(self, findings: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(f.get("message")) for f in findings) or "invalid action")
        self.findings = findings


class Unavailable(RequestError):
    code = "Unavailable"


class FailureType(StrEnum):
    """The `type` of an ApplicationError an activity raises; workflows name the same members in their
    retry policies' `non_retryable_error_types`. Values are recorded in histories: never rename one."""

    UNKNOWN_TOOL = "UnknownTool"
    INVALID_ARGS = "InvalidArgs"
    TOOL_REFUSED = "ToolRefused"
    TOOL_UNAVAILABLE = "ToolUnavailable"
    LEASE_LOST = "LeaseLost"
    UNKNOWN_NODE_FUNCTION = "UnknownNodeFunction"
    NODE_OUTPUT_INVALID = "NodeOutputInvalid"
    AUDIT_CONFLICT = "AuditConflict"
    AUDIT_GAP = "AuditGap"
    CALLBACK_UNDELIVERED = "CallbackUndelivered"

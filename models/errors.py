"""Domain errors raised by the service layer; the gateway maps each to one HTTP status."""

from temporalio.service import RPCError, RPCStatusCode

from models.decisions import Refusal


class CountersignError(Exception):
    """Base class; `code` is a stable machine-readable reason."""

    code = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class NotFound(CountersignError):
    code = "NotFound"


class Forbidden(CountersignError):
    code = "Forbidden"


class Conflict(CountersignError):
    code = "Conflict"


class Invalid(CountersignError):
    code = "Invalid"


class Unavailable(CountersignError):
    code = "Unavailable"


# How each refusal a workflow sends back (its ApplicationError type) reaches the caller.
REFUSAL_ERRORS: dict[str, type[CountersignError]] = {
    Refusal.NOT_WAITING: Conflict,
    Refusal.STALE_PROPOSAL: Conflict,
    Refusal.ALREADY_DECIDED: Conflict,
    Refusal.INVALID_PROPOSAL: Conflict,
    Refusal.EDIT_IN_PROGRESS: Conflict,
    Refusal.TOO_LATE: Conflict,
    Refusal.ROLE_MISSING: Forbidden,
    Refusal.SELF_APPROVAL: Forbidden,
    Refusal.NOT_ALLOWED: Forbidden,
    Refusal.REASON_REQUIRED: Invalid,
    Refusal.INVALID_EDIT: Invalid,
    Refusal.BAD_REQUEST: Invalid,
}


def finished_workflow(message: str) -> bool:
    """Temporal's NOT_FOUND for a workflow that exists but has finished or is finishing."""
    return any(word in message for word in ("completed", "closed", "closing"))


def rpc_error(error: RPCError, workflow_id: str) -> CountersignError | RPCError:
    if error.status == RPCStatusCode.NOT_FOUND:
        return NotFound(f"no workflow {workflow_id}")
    return error

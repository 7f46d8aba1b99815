"""What Temporal answers, as the gateway's request errors: a workflow's refusal (its ApplicationError
type), a workflow that does not exist or has finished."""

from temporalio.service import RPCError, RPCStatusCode

from countersign.models.decisions import Refusal
from countersign.models.errors import Conflict, Forbidden, Invalid, NotFound, RequestError

# How each refusal a workflow sends back (its ApplicationError type) reaches the caller.
REFUSAL_ERRORS: dict[str, type[RequestError]] = {
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


def rpc_error(error: RPCError, workflow_id: str) -> RequestError | RPCError:
    if error.status == RPCStatusCode.NOT_FOUND:
        return NotFound(f"no workflow {workflow_id}")
    return error

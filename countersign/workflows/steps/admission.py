"""Who may act on a step now, the same in both workflows: pure functions that return a refusal (a code
the gateway maps to an HTTP status, and a message) or None; only `refuse` raises one."""

from typing import NoReturn, TypeVar

from temporalio.exceptions import ApplicationError

from countersign.models.decisions import ApprovalStep, ReassignInput, Refusal, StepStatus
from countersign.models.enums import Role
from countersign.models.principals import Principal

Refused = tuple[Refusal, str]
_T = TypeVar("_T")


def refuse(refused: Refused, *details: object) -> NoReturn:
    """The one place a refusal is raised, as the error an update's validator or handler fails with
    (typed by its code, which the gateway maps to an HTTP status; retrying cannot change it)."""
    code, message = refused
    raise ApplicationError(message, *details, type=code, non_retryable=True)


def admit(checked: Refused | _T) -> _T:
    """What the check allowed, or its refusal raised."""
    if isinstance(checked, tuple):
        refuse(checked)
    return checked


def admin_refusal(admin: Principal, action: str, *, tenant: str) -> Refused | None:
    """An ADMIN of this workflow's tenant (another tenant's is told nothing more)."""
    if admin.tenant != tenant:
        return Refusal.WRONG_TENANT, "another tenant"
    if Role.ADMIN not in admin.roles:
        return Refusal.ROLE_MISSING, f"only an ADMIN may {action}"
    return None


def reassign_refusal(
    request: ReassignInput,
    *,
    tenant: str,
    requester_id: str,
    enterprise: bool,
    trusted: bool,
    waiting: bool,
    step: ApprovalStep | None,
) -> Refused | None:
    """Update `reassign`: an ADMIN hands the waiting step to a role or to a person."""
    if (refused := admin_refusal(request.admin, "reassign a step", tenant=tenant)) is not None:
        return refused
    if not enterprise or not waiting or step is None or step.status != StepStatus.WAITING:
        return Refusal.NOT_WAITING, "the workflow is not waiting for a decision"
    if (request.to_role is None) == (request.to_principal is None):
        return Refusal.BAD_REQUEST, "name exactly one of a role or a principal to reassign to"
    target = request.to_principal
    if trusted and target is not None and target.id == request.admin.id:
        # Otherwise an ADMIN could hand themselves a step and approve it alone.
        return Refusal.NOT_ALLOWED, "an ADMIN may not assign a step to themselves"
    if target is not None and (target.tenant != tenant or target.id == requester_id):
        return (
            Refusal.NOT_ALLOWED,
            "a step can be assigned to someone of the tenant other than the requester",
        )
    if not request.reason.strip():
        return Refusal.REASON_REQUIRED, "reassigning needs a reason"
    return None

"""Who may send which message now: pure functions, one style.

Each check returns the refusal (`Refused`: a code the gateway maps to an HTTP status, and a message)
or, when it passes, None (or the `Authority` a decision or an edit is made with). They read nothing
but their arguments, so a validator and its handler ask the same question and get the same answer.
Only `refuse` turns a refusal into the error an update raises (`admit` calls it for a check that failed).
"""

from countersign.models.decisions import (
    ApprovalStep,
    CancelInput,
    DecideInput,
    EditInput,
    Refusal,
    ResultInput,
    RetryInput,
    StepStatus,
)
from countersign.models.enums import Role, WorkflowState
from countersign.models.proposal import Proposal
from countersign.workflows.policy import Authority, check_decision, check_reviewer
from countersign.workflows.steps.admission import Refused, admin_refusal

# The states of one phase: moving between them is not going back.
_PHASE = {WorkflowState.ESCALATED: WorkflowState.WAITING_FOR_APPROVAL}


def rank(state: WorkflowState) -> int:
    """A state's place in the one forward order of the lifecycle (waiting and escalated are one)."""
    return list(WorkflowState).index(_PHASE.get(state, state))


def decision_refusal(
    decision: DecideInput,
    *,
    tenant: str,
    requester_id: str,
    editing: bool,
    waiting: bool,
    step: ApprovalStep | None,
    chain: list[ApprovalStep],
    proposal: Proposal | None,
    proposal_valid: bool,
    require_version: bool,
) -> Refused | Authority:
    """Update `decide` and Signal `decision`: the refusal, or the authority the decision is made with."""
    # The tenant first: another tenant learns nothing, not even that an edit is under way.
    if decision.reviewer.tenant != tenant:
        return Refusal.WRONG_TENANT, "reviewer belongs to another tenant"
    if editing:
        return Refusal.EDIT_IN_PROGRESS, "the proposal is being edited; decide on the new version"
    return check_decision(
        decision,
        waiting=waiting,
        step=step,
        chain=chain,
        proposal_version=proposal.version if proposal else None,
        proposal_valid=proposal_valid,
        requester_id=requester_id,
        tenant=tenant,
        editor_id=proposal.edited_by_id if proposal else None,
        require_version=require_version,
    )


def edit_refusal(
    request: EditInput,
    *,
    tenant: str,
    requester_id: str,
    enterprise: bool,
    editing: bool,
    waiting: bool,
    step: ApprovalStep | None,
    chain: list[ApprovalStep],
    proposal: Proposal | None,
) -> Refused | Authority:
    """Update `edit` (approve with changes), before its args are validated."""
    if request.reviewer.tenant != tenant:
        return Refusal.WRONG_TENANT, "another tenant"
    if not enterprise:
        return Refusal.NOT_ALLOWED, "this workflow predates editing"
    if editing:
        return Refusal.EDIT_IN_PROGRESS, "another edit is being validated"
    checked = check_reviewer(
        request.reviewer,
        request.acting_for,
        waiting=waiting,
        step=step,
        chain=chain,
        proposal_version=proposal.version if proposal else None,
        named_version=request.proposal_version,
        requester_id=requester_id,
        tenant=tenant,
    )
    if not isinstance(checked, Authority):
        return checked
    assert proposal is not None  # check_reviewer refuses when there is none
    if request.args == proposal.args:
        return Refusal.INVALID_EDIT, "the edited args are the same as the proposal's"
    return checked


def edited_step_refusal(waiting: bool, step: ApprovalStep | None) -> Refused | None:
    """Update `edit`, once its args have validated: the step it edits must still be waiting."""
    if not waiting or step is None or step.status != StepStatus.WAITING:
        return Refusal.NOT_WAITING, "the workflow stopped waiting while the edit was validated"
    return None


def withdraw_refusal(
    request: CancelInput,
    *,
    tenant: str,
    requester_id: str,
    enterprise: bool,
    withdrawn: bool,
    state: WorkflowState,
) -> Refused | None:
    """Update `withdraw`: the requester (or an ADMIN) takes the request back before execution starts."""
    who = request.principal
    if who.tenant != tenant:
        return Refusal.WRONG_TENANT, "another tenant"
    if not enterprise:
        return Refusal.NOT_ALLOWED, "this workflow predates withdrawal"
    if who.id != requester_id and Role.ADMIN not in who.roles:
        return Refusal.NOT_ALLOWED, "only the requester or an ADMIN may withdraw a request"
    if withdrawn or rank(state) >= rank(WorkflowState.APPROVED):
        return (
            Refusal.TOO_LATE,
            f"the request is {state.value}; it can be withdrawn only before execution starts",
        )
    if not request.reason.strip():
        return Refusal.REASON_REQUIRED, "withdrawing needs a reason"
    return None


def retry_refusal(
    request: RetryInput,
    *,
    tenant: str,
    dead_letters: bool,
    state: WorkflowState,
    retrying: bool,
) -> Refused | None:
    """Update `retry`: an ADMIN retries a dead letter, once."""
    if (refused := admin_refusal(request.admin, "retry", tenant=tenant)) is not None:
        return refused
    if not dead_letters or state != WorkflowState.FAILED or retrying:
        return Refusal.NOT_WAITING, "only a failed workflow (a dead letter) can be retried"
    if not request.reason.strip():
        return Refusal.REASON_REQUIRED, "a retry needs a reason"
    return None


def result_refusal(
    request: ResultInput, *, tenant: str, requester_id: str, awaiting: bool, reported: bool, overdue: bool
) -> Refused | None:
    """Update `report_result`: only the requester (the caller that proposed the action) reports, once,
    while the approved action awaits its result and before the deadline."""
    if request.principal.tenant != tenant:
        return Refusal.WRONG_TENANT, "another tenant"
    if request.principal.id != requester_id:
        return Refusal.NOT_ALLOWED, "only the caller who proposed the action reports its result"
    if reported:
        return Refusal.ALREADY_DECIDED, "a result was already reported"
    if overdue:
        return Refusal.TOO_LATE, "the deadline for the result has passed: the workflow has failed"
    if not awaiting:
        return Refusal.NOT_WAITING, "the workflow is not awaiting a result (the action is not approved yet)"
    return None

"""What a decision link's page needs to know about its workflow now: whether the link still applies
(the proposal version and the step it was minted for are still the ones waiting), and the facts to
show, in the same shape as the message that carried the link."""

from countersign.models.channels import DecisionPrompt
from countersign.models.decisions import StepStatus
from countersign.models.enums import WorkflowState
from countersign.models.links import LinkGrant
from countersign.models.prompts import decision_prompt
from countersign.models.views import WorkflowView
from countersign.workflows.approval.caller import CALLER_PLANNER

# Ended, or past deciding: nothing a link says can change it.
_PAST_DECIDING = frozenset({WorkflowState.APPROVED, WorkflowState.ACTION_EXECUTED}) | {
    s for s in WorkflowState if s.is_final
}


def _deciders(view: WorkflowView, index: int) -> str:
    step = view.chain[index]
    return ", ".join(f"{d.reviewer_name} ({d.decision})" for d in step.decisions) or "nobody"


def superseded(view: WorkflowView, grant: LinkGrant) -> str | None:
    """Why the link no longer applies, in words for its holder; None while it does."""
    proposal = view.proposal
    if proposal is None or proposal.version != grant.proposal_version:
        now = f"version {proposal.version}" if proposal is not None else "no proposal"
        return (
            f"The proposal was edited: this link is for version {grant.proposal_version} and the "
            f"request now has {now}. Open the newer message, or the request in the inbox."
        )
    index = grant.step_index
    decided_here = index < len(view.chain) and bool(view.chain[index].decisions)
    if view.state in _PAST_DECIDING:
        if decided_here:
            return (
                f"Someone else decided: step {index + 1} was decided by {_deciders(view, index)}, and "
                f"the request is now {view.state.value}."
            )
        return f"The request has ended: it is {view.state.value}."
    if not view.state.is_waiting:
        return f"The request is not waiting for a decision now: it is {view.state.value}."
    if view.current_step != index:
        at = view.current_step
        where = f"step {at + 1} of {len(view.chain)}" if at is not None else "its next stage"
        by = f" (decided by {_deciders(view, index)})" if decided_here else ""
        return f"The step moved on: step {index + 1}{by} is over, and the request is at {where}."
    step = view.chain[index]
    mine = [d for d in step.decisions if d.reviewer_id == grant.principal_id]
    if mine:
        return f"You already decided this step ({mine[0].decision}); a link decides once."
    if step.status != StepStatus.WAITING:
        return f"Step {index + 1} is not waiting for a decision: it is {step.status.value}."
    return None


def prompt_of_view(view: WorkflowView) -> DecisionPrompt | None:
    """The current step's prompt, as the workflow builds it for messages, read from the view: the page
    shows what the email showed."""
    index, proposal = view.current_step, view.proposal
    if index is None or proposal is None or index >= len(view.chain):
        return None
    return decision_prompt(
        workflow_id=view.workflow_id,
        requester=view.requester,
        chain=view.chain,
        index=index,
        proposal=proposal,
        report=view.validation,
        by_caller=proposal.planner == CALLER_PLANNER,
    )

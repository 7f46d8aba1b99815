"""The "decision needed" prompt of one step, from the facts the workflow holds: built by the workflow
for its messages, and by the gateway from the view for a link's confirmation page, so both show alike."""

from countersign.models.channels import DecisionPrompt, PromptFinding, SummaryAuthor
from countersign.models.decisions import ApprovalStep
from countersign.models.enums import Risk
from countersign.models.principals import Principal
from countersign.models.proposal import Proposal, ValidationReport


def decision_prompt(
    *,
    workflow_id: str,
    requester: Principal,
    chain: list[ApprovalStep],
    index: int,
    proposal: Proposal,
    report: ValidationReport | None,
    by_caller: bool,
) -> DecisionPrompt:
    """`by_caller`: the summary is the caller's words (a caller-proposed action), else the AI's."""
    step = chain[index]
    risk = report.risk if report is not None else None
    sign_in = step.require_sign_in if step.require_sign_in is not None else risk == Risk.HIGH
    return DecisionPrompt(
        workflow_id=workflow_id,
        tenant=requester.tenant,
        requester_name=requester.name,
        step_index=index,
        total_steps=len(chain),
        awaiting=step.deciding_roles or step.roles,
        quorum=step.quorum,
        approvals=step.approvals(),
        proposal_version=proposal.version,
        tool=proposal.tool,
        args=proposal.args,
        confidence=proposal.confidence,
        risk=risk.value if risk is not None else None,
        findings=[PromptFinding(**f.model_dump()) for f in report.findings] if report is not None else [],
        quoted_summary=proposal.summary[:2000],
        summary_author=summary_author(proposal, by_caller=by_caller),
        sla_due_at=step.sla_due_at,
        expires_at=step.deadline_at or step.sla_due_at,
        require_sign_in=sign_in,
        email_reply=step.email_reply,
    )


def summary_author(proposal: Proposal, *, by_caller: bool) -> SummaryAuthor:
    """Whose words `proposal.summary` is: Countersign's for a version described from its own args (an
    edited one, which keeps version 1's words in `ai_summary`), else the caller's or the AI's."""
    if proposal.ai_summary is not None:
        return "countersign"
    return "caller" if by_caller else "ai"

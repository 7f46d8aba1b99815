"""What the MCP tools answer: the essentials of a workflow's view, read from the gateway's JSON.

Read as JSON rather than as the gateway's own models on purpose: over stdio the gateway may run another
version of Countersign, and a field added there must not make these answers fail. Pure functions.
"""

from typing import Any

from pydantic import BaseModel, Field

# States in which the proposal's current version stands approved: its args are the ones to act on.
APPROVED_STATES = frozenset({"APPROVED", "ACTION_EXECUTED"})
FINAL_STATES = frozenset({"ACTION_EXECUTED", "REJECTED", "EXPIRED", "CANCELLED", "FAILED"})
WAITING_STATES = frozenset({"WAITING_FOR_APPROVAL", "ESCALATED"})


class DecisionSummary(BaseModel):
    reviewer: str
    role: str | None = None
    decision: str
    notes: str | None = None
    proposal_version: int | None = None
    at: str | None = None


class Approval(BaseModel):
    """One approval request as an agent needs it: where it stands, what was proposed, who decided what,
    and once approved the args to act on (a reviewer may have changed them: approve with changes)."""

    workflow_id: str
    state: str
    final: bool = Field(description="True once the workflow has ended: its state will not change again")
    tool: str | None = None
    args: dict[str, Any] | None = Field(default=None, description="The current proposal's args")
    proposal_version: int | None = None
    execution: str | None = Field(
        default=None,
        description="Who executes the approved action: `countersign`, or `caller` (a tool your tenant "
        "declared: run it with approved_args, then call report_result by result_due_at)",
    )
    approved_args: dict[str, Any] | None = Field(
        default=None,
        description="Set once approved: exactly the args to act on (a reviewer may have edited them)",
    )
    result_due_at: str | None = None
    awaiting: list[str] = Field(
        default_factory=list, description="The roles the waiting step needs a decision from"
    )
    decisions: list[DecisionSummary] = Field(default_factory=list)
    findings: list[dict[str, Any]] = Field(
        default_factory=list, description="What validation found about the proposal"
    )
    result: dict[str, Any] | None = Field(default=None, description="What the executed action returned")
    error: str | None = None


class ToolCatalog(BaseModel):
    """`GET /tools`: every tool an approval may be requested for, with its args schema."""

    items: list[dict[str, Any]]


class PendingApprovals(BaseModel):
    """`GET /approvals/inbox`: what the caller may decide now, earliest SLA first."""

    items: list[dict[str, Any]]


def handle(submitted: dict[str, Any]) -> Approval:
    """`POST /workflows`'s answer: the view when it came with one, else the id and the state."""
    view = submitted.get("view")
    if isinstance(view, dict):
        return essentials(view)
    state = str(submitted.get("state", ""))
    return Approval(workflow_id=str(submitted["workflow_id"]), state=state, final=state in FINAL_STATES)


def essentials(view: dict[str, Any]) -> Approval:
    state = str(view.get("state", ""))
    proposal = _object(view.get("proposal"))
    args = _object(proposal.get("args")) if proposal else None
    version = proposal.get("version")
    chain = [step for step in view.get("chain") or [] if isinstance(step, dict)]
    result = _object(view.get("result"))
    return Approval(
        workflow_id=str(view.get("workflow_id", "")),
        state=state,
        final=state in FINAL_STATES,
        tool=proposal.get("tool"),
        args=args,
        proposal_version=version if isinstance(version, int) else None,
        execution=view.get("execution"),
        approved_args=_approved_args(view, state, args),
        result_due_at=view.get("result_due_at"),
        awaiting=_awaiting(chain, view.get("current_step")) if state in WAITING_STATES else [],
        decisions=[_decision(d) for s in chain for d in s.get("decisions") or [] if isinstance(d, dict)],
        findings=[f for f in _object(view.get("validation")).get("findings") or [] if isinstance(f, dict)],
        result=_object(result.get("result")) if result else None,
        error=view.get("error"),
    )


def _approved_args(view: dict[str, Any], state: str, args: dict[str, Any] | None) -> dict[str, Any] | None:
    """The view's own `approved_args` (the validated args of the approved version); from a gateway that
    predates them, the current proposal's args once it stands approved."""
    if "approved_args" in view:
        approved = view["approved_args"]
        return approved if isinstance(approved, dict) else None
    return args if state in APPROVED_STATES else None


def _awaiting(chain: list[dict[str, Any]], current: object) -> list[str]:
    if not isinstance(current, int) or not 0 <= current < len(chain):
        return []
    step = chain[current]
    roles = step.get("any_of") or [step.get("role")]
    return [str(role) for role in roles if role]


def _decision(record: dict[str, Any]) -> DecisionSummary:
    return DecisionSummary(
        reviewer=str(record.get("reviewer_name", "")),
        role=record.get("role"),
        decision=str(record.get("decision", "")),
        notes=record.get("notes"),
        proposal_version=record.get("proposal_version"),
        at=record.get("at"),
    )


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}

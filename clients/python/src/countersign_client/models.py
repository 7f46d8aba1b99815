"""The gateway's shapes, as far as the client sends or reads them.

What the client reads ignores fields it does not know, so a newer server never breaks it; what it sends
is checked by the server. `clients/python/tests/test_client_openapi.py` compares these models with a
live gateway's `/openapi.json`.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class WorkflowState(StrEnum):
    """The states a request goes through (the gateway's `WorkflowState`). Views carry the state as a
    plain string, so a state added by a newer server reads as itself."""

    RECEIVED = "RECEIVED"
    AI_ANALYZED = "AI_ANALYZED"
    WAITING_FOR_APPROVAL = "WAITING_FOR_APPROVAL"
    ESCALATED = "ESCALATED"
    APPROVED = "APPROVED"
    ACTION_EXECUTED = "ACTION_EXECUTED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


FINAL_STATES = frozenset(
    {
        WorkflowState.ACTION_EXECUTED,
        WorkflowState.REJECTED,
        WorkflowState.EXPIRED,
        WorkflowState.CANCELLED,
        WorkflowState.FAILED,
    }
)
# Before a decision: planning, validation, the wait for reviewers. Anything else is decided.
UNDECIDED_STATES = frozenset(
    {
        WorkflowState.RECEIVED,
        WorkflowState.AI_ANALYZED,
        WorkflowState.WAITING_FOR_APPROVAL,
        WorkflowState.ESCALATED,
    }
)

Until = Literal["decided", "final"]


def reached(state: str, until: Until) -> bool:
    """`decided`: approved (by people or a policy rule) or ended; `final`: ended. As the gateway's
    long-poll decides it."""
    if until == "decided":
        return state not in UNDECIDED_STATES
    return state in FINAL_STATES


class _Sent(BaseModel):
    """A body the client sends: unknown fields are a mistake of ours."""

    model_config = ConfigDict(extra="forbid")


class _Read(BaseModel):
    """A body the client reads: fields a newer server adds are kept (`model_extra`), never refused."""

    model_config = ConfigDict(extra="allow")


# ---- sent -----------------------------------------------------------------------------------------


class ProposedAction(_Sent):
    tool: str
    args: dict[str, Any]


class SubmitRequest(_Sent):
    """`POST /workflows`: plain words for the planner (`text`), or the caller's own `action`, or both."""

    text: str | None = None
    action: ProposedAction | None = None
    summary: str | None = None
    context: str | dict[str, Any] | None = None
    type: str | None = None
    fields: dict[str, str | int | float | bool] | None = None
    callback_url: str | None = None


class ApproveRequest(_Sent):
    """`POST /workflows/{id}/approve`: a decision bound to the proposal version the reviewer saw."""

    decision: Literal["approved", "rejected"]
    notes: str | None = None
    proposal_version: int


class ResultReport(_Sent):
    """`POST /workflows/{id}/result`: what a caller-executed action did."""

    ok: bool
    output: dict[str, Any] | None = None
    error: str | None = None


# ---- read -----------------------------------------------------------------------------------------


class Finding(_Read):
    """What validation found wrong with an action (a refusal's `findings`, a view's validation)."""

    code: str
    message: str
    field: str | None = None


class Principal(_Read):
    id: str
    name: str
    roles: list[str] = Field(default_factory=list)
    tenant: str = "default"


class RequestEcho(_Read):
    """The request as the workflow holds it."""

    text: str | None = None
    action: ProposedAction | None = None
    summary: str | None = None
    context: str | dict[str, Any] | None = None
    type: str | None = None


class Proposal(_Read):
    """One version of the action: an approval binds to its `version`."""

    version: int
    tool: str
    args: dict[str, Any]
    summary: str
    confidence: float
    rationale: str
    planner: str = "rules"
    hash: str = ""
    edited_by: str | None = None


class ValidationReport(_Read):
    ok: bool
    findings: list[Finding] = Field(default_factory=list)
    needs_triage: bool = False
    normalized_args: dict[str, Any] | None = None


class DecisionRecord(_Read):
    reviewer_id: str
    reviewer_name: str
    role: str
    decision: str
    notes: str | None
    proposal_version: int
    at: str


class ApprovalStep(_Read):
    role: str
    quorum: int = 1
    any_of: list[str] = Field(default_factory=list)
    decisions: list[DecisionRecord] = Field(default_factory=list)
    status: str = "pending"
    sla_due_at: str | None = None


class ToolOutcome(_Read):
    """What a server-executed action returned."""

    tool: str
    idempotency_key: str
    result: dict[str, Any]
    executed_at: datetime
    replayed: bool = False


class WorkflowView(_Read):
    """`GET /workflows/{id}`: the workflow as the caller may read it (the fields the client uses)."""

    workflow_id: str
    state: str
    request: RequestEcho
    requester: Principal
    proposal: Proposal | None = None
    validation: ValidationReport | None = None
    chain: list[ApprovalStep] = Field(default_factory=list)
    current_step: int | None = None
    result: ToolOutcome | None = None
    error: str | None = None
    # A caller-executed tool, once approved: the caller runs `approved_args` and reports by `result_due_at`.
    execution: str | None = None
    approved_args: dict[str, Any] | None = None
    result_due_at: datetime | None = None

    def reached(self, until: Until) -> bool:
        return reached(self.state, until)

    @property
    def rejection_reason(self) -> str | None:
        """The notes of the decision that rejected it (the latest one, if several did)."""
        rejections = [d for step in self.chain for d in step.decisions if d.decision == "rejected"]
        return rejections[-1].notes if rejections else None


class SubmitResponse(_Read):
    """`POST /workflows`: `view` is there when the submit waited (`wait_seconds`) and it settled."""

    workflow_id: str
    state: str
    view: WorkflowView | None = None


class ToolSpec(_Read):
    """`GET /tools`: what a tool takes, does, and risks."""

    name: str
    description: str
    side_effect: str
    risk: str = "MEDIUM"
    args_schema: dict[str, Any]
    result_schema: dict[str, Any] = Field(default_factory=dict)
    # `caller`: a tool the tenant declared, run by the caller after approval (the decorator's kind).
    execution: str = "countersign"
    # A declared tool's version; None for one Countersign runs.
    version: int | None = None


class ToolList(_Read):
    items: list[ToolSpec]


class WorkflowSummary(_Read):
    """A row of `GET /approvals/inbox`."""

    workflow_id: str
    kind: str = "request"
    state: str | None
    request_type: str | None
    awaiting_role: str | None
    requester: str | None
    tenant: str | None
    amount: float | None
    started_at: datetime | None
    text: str | None = None
    sla_due_at: datetime | None = None


class WorkflowList(_Read):
    items: list[WorkflowSummary]


class CallbackEvent(_Read):
    """A signed callback (Standard Webhooks): `id` is its `webhook-id` header, the same on every retry and
    redelivery of the event; the body is `{type, timestamp, data}` (`data.workflow_id`, `data.state`…)."""

    id: str
    type: str
    timestamp: datetime
    data: dict[str, Any]

"""What readers see: the whole workflow (`GET /workflows/{id}`, the `view` query) and list rows."""

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from countersign.models.audit import AuditEvent
from countersign.models.channels import SummaryAuthor
from countersign.models.decisions import ApprovalStep
from countersign.models.enums import RequestType, Role, WorkflowState
from countersign.models.principals import Delegation, Principal, PrincipalChannels
from countersign.models.proposal import Proposal, ValidationReport
from countersign.models.requests import SubmitRequest
from countersign.models.tools import ToolOutcome


class Until(StrEnum):
    """What a long-polling reader waits for (`GET /workflows/{id}?wait_seconds=N&until=`)."""

    DECIDED = "decided"  # approved (by people or a policy rule), or ended
    FINAL = "final"  # ended


class WorkflowView(BaseModel):
    workflow_id: str
    state: WorkflowState
    request: SubmitRequest
    requester: Principal
    proposal: Proposal | None = None
    validation: ValidationReport | None = None
    chain: list[ApprovalStep] = Field(default_factory=list)
    current_step: int | None = None
    audit: list[AuditEvent] = Field(default_factory=list)
    result: ToolOutcome | None = None
    error: str | None = None
    # The version of the policy file the chain was built from (None before policy files).
    policy_version: str | None = None
    # Who executes the approved action: Countersign (its own tools), or the caller (a tool its tenant
    # declared), who finds the args to run with in `approved_args` (a reviewer may have edited them)
    # and reports the result by `result_due_at` (POST /workflows/{id}/result).
    execution: Literal["countersign", "caller"] = "countersign"
    approved_args: dict[str, Any] | None = None
    result_due_at: datetime | None = None
    # Whose words `proposal.summary` is: the AI's or the caller's (unverified), or Countersign's for an
    # edited version (built from its args; the summary of version 1 is then `proposal.ai_summary`).
    summary_by: SummaryAuthor | None = None


class SubmitResponse(BaseModel):
    """`POST /workflows` answer. `view` is there when the caller asked to wait (`wait_seconds`) and the
    workflow reached a settled state in that time: a proposal awaiting a reviewer, or an end."""

    workflow_id: str
    state: str
    view: WorkflowView | None = None


class WorkflowSummary(BaseModel):
    workflow_id: str
    # What the row is: a request (`/workflows/{id}`), or a graph run waiting at an approval node
    # (`/graph/state/{id}`, decided with `/graph/runs/{id}/approve` or a batch).
    kind: Literal["request", "graph_run"] = "request"
    state: WorkflowState | None
    request_type: RequestType | None
    awaiting_role: Role | None
    requester: str | None
    tenant: str | None
    amount: float | None
    started_at: datetime | None
    text: str | None = None
    # The inbox's rows: the current proposal version's summary, and whose words it is (see WorkflowView).
    summary: str | None = None
    summary_by: SummaryAuthor | None = None
    sla_due_at: datetime | None = None
    # A graph run's graph and version, from its memo (runs started before the gateway set it have none).
    graph_id: str | None = None
    graph_version: int | None = None


class InboxFilter(BaseModel):
    """`GET /approvals/inbox` query: narrow the inbox by type, amount, or escalated items only."""

    model_config = ConfigDict(extra="forbid")

    type: RequestType | None = None
    min_amount: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_amount: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    escalated_only: bool = False
    limit: int = Field(default=100, ge=1, le=500)


class WorkflowList(BaseModel):
    items: list[WorkflowSummary]


class PrincipalProfile(BaseModel):
    """`GET /principals/me`: the caller, the delegation they set, if any, and their channels."""

    principal: Principal
    delegation: Delegation | None = None
    channels: PrincipalChannels = Field(default_factory=PrincipalChannels)

"""What readers see: the whole workflow (`GET /workflows/{id}`, the `view` query) and list rows."""

from datetime import datetime

from pydantic import BaseModel, Field

from models.audit import AuditEvent
from models.decisions import ApprovalStep
from models.enums import RequestType, Role, WorkflowState
from models.principals import Principal
from models.proposal import Proposal, ValidationReport
from models.requests import SubmitRequest
from models.tools import ToolOutcome


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


class WorkflowSummary(BaseModel):
    workflow_id: str
    state: WorkflowState | None
    request_type: RequestType | None
    awaiting_role: Role | None
    requester: str | None
    tenant: str | None
    amount: float | None
    started_at: datetime | None
    text: str | None = None


class WorkflowList(BaseModel):
    items: list[WorkflowSummary]

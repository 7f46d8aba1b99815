"""A reviewer's decision: the HTTP body, and what the gateway hands to the workflow."""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from models.enums import Decision, Role
from models.principals import Principal


class ApproveRequest(BaseModel):
    """Seed 000's `POST /workflows/{id}/approve` body."""

    model_config = ConfigDict(extra="forbid")

    decision: Decision
    notes: str | None = Field(default=None, max_length=4000)
    proposal_version: int | None = Field(default=None, ge=1)


class DecideInput(BaseModel):
    """Update `decide` and Signal `decision`. The reviewer is set by the gateway from the API key."""

    reviewer: Principal
    decision: Decision
    notes: str | None = Field(default=None, max_length=4000)
    proposal_version: int | None = None
    # Set by callers that need to correlate a fire-and-forget signal with its audit entry.
    request_id: str | None = Field(default=None, max_length=128)


class DecisionRecord(BaseModel):
    reviewer_id: str
    reviewer_name: str
    role: Role
    decision: Decision
    notes: str | None
    proposal_version: int
    at: str


class StepStatus(StrEnum):
    PENDING = "pending"
    WAITING = "waiting"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class ApprovalStep(BaseModel):
    """One step of a chain: `quorum` distinct reviewers holding `role` must approve within the SLA."""

    role: Role
    quorum: int = Field(default=1, ge=1)
    sla_seconds: int = Field(ge=1)
    decisions: list[DecisionRecord] = Field(default_factory=list)
    status: StepStatus = StepStatus.PENDING


class Refusal(StrEnum):
    """Why a decision was refused before anything was written; the gateway maps each to an HTTP status."""

    NOT_WAITING = "NotWaiting"
    STALE_PROPOSAL = "StaleProposal"
    ROLE_MISSING = "RoleMissing"
    SELF_APPROVAL = "SelfApproval"
    WRONG_TENANT = "WrongTenant"
    ALREADY_DECIDED = "AlreadyDecided"
    REASON_REQUIRED = "ReasonRequired"
    INVALID_PROPOSAL = "InvalidProposal"

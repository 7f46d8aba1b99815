"""What the planner proposes and what validation thinks of it."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.enums import RequestType, SideEffect
from models.requests import SubmitRequest


class RequestFields(BaseModel):
    """Facts extracted from the request text; each is None when the text did not say."""

    model_config = ConfigDict(extra="forbid")

    amount: float | None = Field(default=None, ge=0)
    currency: str | None = Field(default=None, max_length=3)
    quantity: int | None = Field(default=None, ge=0)
    item: str | None = None
    days: float | None = Field(default=None, ge=0)
    start_date: str | None = None
    severity: int | None = Field(default=None, ge=1, le=5)
    counterparty: str | None = None
    email: str | None = None
    topic: str | None = None


class PlanInput(BaseModel):
    """One planning attempt. `feedback` carries validation findings from the previous attempt."""

    request: SubmitRequest
    requester_name: str
    attempt: int = 1
    feedback: list[str] = Field(default_factory=list)


class Plan(BaseModel):
    """A planner's answer: exactly one action, with how sure it is and why."""

    request_type: RequestType
    fields: RequestFields
    summary: str = Field(min_length=1, max_length=600)
    tool: str
    args: dict[str, Any]
    confidence: float = Field(ge=0, le=1)
    rationale: str = Field(min_length=1, max_length=2000)
    planner: str = "rules"


class Proposal(Plan):
    """A plan bound to a version number; approvals are given to one version only."""

    version: int = Field(ge=1)
    hash: str = ""


class Finding(BaseModel):
    code: str
    message: str
    field: str | None = None


class ValidateInput(BaseModel):
    plan: Plan
    confidence_threshold: float = Field(ge=0, le=1)


class ValidationReport(BaseModel):
    """`ok` means the action may be executed once approved; `needs_triage` asks humans to look closer."""

    ok: bool
    findings: list[Finding] = Field(default_factory=list)
    needs_triage: bool = False
    # The tool's declared side effect (None for an unknown tool); policy may add a step for it.
    side_effect: SideEffect | None = None
    # The args as parsed by the tool's model: what execution receives, defaults filled in.
    normalized_args: dict[str, Any] | None = None

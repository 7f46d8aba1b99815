"""What the planner proposes and what validation thinks of it."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from countersign.models.declared_tools import DeclaredTool
from countersign.models.directory import Lookup
from countersign.models.enums import RequestType, Risk, SideEffect
from countersign.models.facts import ActionFacts
from countersign.models.requests import SubmitRequest


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


class Finding(BaseModel):
    code: str
    message: str
    field: str | None = None


class PlanProvenance(BaseModel):
    """Who planned and at what cost: recorded on the proposal and in the audit trail."""

    provider: str
    model: str | None = None
    prompt_version: str | None = None
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    # Calls made after the first because the output did not parse or validate.
    repairs: int = Field(default=0, ge=0)
    latency_ms: int = Field(default=0, ge=0)
    # The validation errors fed back to the model, one entry per repair.
    repair_feedback: list[str] = Field(default_factory=list)
    # Set when a fallback provider planned because the primary kept failing.
    fallback_from: str | None = None
    # What the model's tokens cost, from the price table (llm/prices.py); None when no model was called
    # or its price is not known.
    cost: float | None = Field(default=None, ge=0)
    cost_currency: str | None = Field(default=None, max_length=3)


class PlanInput(BaseModel):
    """One planning attempt. `feedback` carries validation findings from the previous attempt."""

    request: SubmitRequest
    requester_name: str
    attempt: int = 1
    feedback: list[str] = Field(default_factory=list)
    # Whose directory the planner may look things up in; None in workflows started before the directory.
    tenant: str | None = None


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
    provenance: PlanProvenance | None = None
    # Set when the planner's output never validated: the plan is a best-effort reading for triage,
    # and validation refuses it whatever else it finds.
    planning_findings: list[Finding] = Field(default_factory=list)
    # Every directory lookup made while planning, with what it returned (the audit records them).
    lookups: list[Lookup] = Field(default_factory=list, max_length=50)


class Proposal(Plan):
    """A plan bound to a version number; approvals are given to one version only."""

    version: int = Field(ge=1)
    hash: str = ""
    # Set when a reviewer changed the args ("approve with changes"): who made this version.
    edited_by: str | None = None
    # Whoever made this version (maker) may not also approve it (checker).
    edited_by_id: str | None = None
    # An edited version's `summary` describes its own args (built by Countersign, not a model); the
    # planner's summary of version 1 is kept here, to be shown marked as the AI's.
    ai_summary: str | None = None


class ValidateInput(BaseModel):
    plan: Plan
    confidence_threshold: float = Field(ge=0, le=1)
    # A reviewer edited the args: facts the args state (an amount, a number of days) replace what the
    # planner extracted, so the business rules and the approval chain follow the edit.
    align_fields: bool = False
    # A call of a tool the tenant declared (executed by the caller): the declaration, frozen in the
    # workflow's input when it started, validated against instead of the registry.
    declared_tool: DeclaredTool | None = None
    # Whose directory the action is checked against (budgets, vendors, recipients, exchange rates);
    # None in workflows started before the directory.
    tenant: str | None = None
    # Who asked (the principal's name), as the directory may know them: the person record of that name
    # or address gives the cost center a purchase is checked against.
    requester: str | None = None


class ValidationReport(BaseModel):
    """`ok` means the action may be executed once approved; `needs_triage` asks humans to look closer."""

    ok: bool
    findings: list[Finding] = Field(default_factory=list)
    needs_triage: bool = False
    # The tool's declared side effect (None for an unknown tool); policy may add a step for it.
    side_effect: SideEffect | None = None
    risk: Risk | None = None
    # The args as parsed by the tool's model: what execution receives, defaults filled in.
    normalized_args: dict[str, Any] | None = None
    # With `align_fields`: the plan's fields after taking over what the edited args state.
    fields: RequestFields | None = None
    # With `align_fields` (an edit, a caller's action): a summary of the validated args, built by
    # Countersign from the tool and its args alone. None from workflows' older validations.
    summary: str | None = None
    # What the action states about itself (its tool's declaration over the validated args): the
    # approval chain is chosen from these. None when the tool is unknown or the args do not fit it.
    facts: ActionFacts | None = None

"""A reviewer's decision: the HTTP body, and what the gateway hands to the workflow."""

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from countersign.models.channels import DecisionChannel
from countersign.models.enums import Decision, Role
from countersign.models.policy import OnDeadline
from countersign.models.principals import Principal
from countersign.models.signatures import Signed
from countersign.models.wire import carried_json

# Every graph run's id starts so, and an approval workflow's never does: a batch tells its items apart by
# it (a graph run's approval node has one version, which its items need not name).
GRAPH_RUN_ID_PREFIX = "graph-"


class ApproveRequest(BaseModel):
    """Seed 000's `POST /workflows/{id}/approve` body, with the proposal version the reviewer saw:
    without it a decision would approve whatever version is current, an edit made a moment ago too."""

    model_config = ConfigDict(extra="forbid")

    decision: Decision
    notes: str | None = Field(default=None, max_length=4000)
    proposal_version: int = Field(ge=1)


class NodeDecisionRequest(BaseModel):
    """`POST /graph/runs/{run_id}/approve`: a graph approval node has one version, so none is named."""

    model_config = ConfigDict(extra="forbid")

    decision: Decision
    notes: str | None = Field(default=None, max_length=4000)


class DecideInput(Signed):
    """Update `decide` and Signal `decision`. The reviewer is set by the gateway from the API key, and
    the gateway signs the whole message (models/signatures.py): the workflow believes no identity,
    role or delegation that no trusted gateway signed."""

    reviewer: Principal
    decision: Decision
    notes: str | None = Field(default=None, max_length=4000)
    proposal_version: int | None = None
    # Set by callers that need to correlate a fire-and-forget signal with its audit entry.
    request_id: str | None = Field(default=None, max_length=128)
    # Principals who currently delegate to the reviewer (out of office), looked up by the gateway;
    # the workflow decides on their behalf when the reviewer's own roles do not fit the step.
    acting_for: list[Principal] = Field(default_factory=list, max_length=50)
    # Where the reviewer decided (set by the gateway); None in messages from before channels were kept.
    channel: DecisionChannel | None = None


class BatchItem(BaseModel):
    """A request, named with the proposal version the reviewer saw."""

    model_config = ConfigDict(extra="forbid")

    workflow_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    proposal_version: int = Field(ge=1)


class GraphBatchItem(BaseModel):
    """A graph run waiting at an approval node. The node has one version, so the item may leave it out
    (or name 1). A model of its own, so the schema a client reads says when a version may be left out."""

    model_config = ConfigDict(extra="forbid")

    workflow_id: str = Field(
        min_length=1, max_length=200, pattern=rf"^{GRAPH_RUN_ID_PREFIX}[A-Za-z0-9_.:-]+$"
    )
    proposal_version: int | None = Field(default=None, ge=1)


class BatchRequest(BaseModel):
    """`POST /approvals/batch`: one decision for up to 100 proposals (each request named with its
    version) and graph runs waiting at an approval node."""

    model_config = ConfigDict(extra="forbid")

    items: list[BatchItem | GraphBatchItem] = Field(min_length=1, max_length=100)
    decision: Decision
    notes: str | None = Field(default=None, max_length=4000)


class BatchItemResult(BaseModel):
    workflow_id: str
    ok: bool
    state: str | None = None
    # When refused: the stable code (as the single-item route's `code`), the HTTP status and why.
    code: str | None = None
    status: int | None = None
    detail: str | None = None


class BatchResponse(BaseModel):
    results: list[BatchItemResult]
    approved: int = 0
    rejected: int = 0
    refused: int = 0


class EditRequest(BaseModel):
    """`POST /workflows/{id}/edit`: approve with changes. The args replace the proposal's args."""

    model_config = ConfigDict(extra="forbid")

    proposal_version: int = Field(ge=1)
    args: dict[str, Any] = Field(max_length=50)
    notes: str | None = Field(default=None, max_length=4000)

    @field_validator("args")
    @classmethod
    def _carried(cls, args: dict[str, Any]) -> dict[str, Any]:
        # What the workflow could not decode (NaN, a lone surrogate, a value nested past 32 levels).
        return dict(carried_json(args, "args"))


class EditInput(Signed):
    """Update `edit`: the reviewer (set by the gateway) and the changed args for a named version."""

    reviewer: Principal
    proposal_version: int
    args: dict[str, Any]
    notes: str | None = None
    acting_for: list[Principal] = Field(default_factory=list, max_length=50)


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


class CancelInput(Signed):
    """Update `withdraw`: the requester (or an ADMIN) takes the request back before execution."""

    principal: Principal
    reason: str


class ReassignRequest(BaseModel):
    """`POST /workflows/{id}/reassign`: an ADMIN hands the waiting step to a role or a named person."""

    model_config = ConfigDict(extra="forbid")

    to_role: Role | None = None
    to_principal_id: str | None = Field(default=None, min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _one_target(self) -> "ReassignRequest":
        if (self.to_role is None) == (self.to_principal_id is None):
            raise ValueError("name exactly one of to_role or to_principal_id")
        return self


class ReassignInput(Signed):
    admin: Principal
    to_role: Role | None = None
    # Resolved from the principal store by the gateway.
    to_principal: Principal | None = None
    reason: str


class DecisionRecord(BaseModel):
    reviewer_id: str
    reviewer_name: str
    role: Role
    decision: Decision
    notes: str | None
    proposal_version: int
    at: str
    # Set when the reviewer decided as a delegate: the principal whose authority they used.
    on_behalf_of_id: str | None = None
    on_behalf_of_name: str | None = None
    # Where it was made (api, inbox, email_link, email_reply, slack, teams); None before channels were kept.
    channel: DecisionChannel | None = None


class StepStatus(StrEnum):
    PENDING = "pending"
    WAITING = "waiting"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class ApprovalStep(BaseModel):
    """One step of a chain: `quorum` distinct reviewers holding `role` must approve; or, when `any_of`
    is set, `quorum` distinct reviewers each holding any one of those roles.

    `any_of` is empty for a one-role step (so every step recorded before it existed reads the same).
    When set, `role` is its first role: places that hold one role (the AWAITING_ROLE search attribute,
    timer summaries) show that one, while everything that asks who may decide, whom to tell, or whom
    the inbox lists uses `roles` / `deciding_roles`, which hold all of them.

    Times count from the step's start: a reminder at `reminder_seconds`, escalation at `sla_seconds`
    (`escalate_to` may then decide too), and `on_deadline` at `deadline_seconds`. Steps of workflows
    started before policy files have no reminder and no deadline: they expire at the SLA.
    """

    role: Role
    quorum: int = Field(default=1, ge=1)
    sla_seconds: int = Field(ge=1)
    any_of: list[Role] = Field(default_factory=list)
    decisions: list[DecisionRecord] = Field(default_factory=list)
    status: StepStatus = StepStatus.PENDING
    rule: str | None = None
    reminder_seconds: int | None = None
    deadline_seconds: int | None = None
    on_deadline: OnDeadline = OnDeadline.EXPIRE
    escalate_to: Role | None = None
    started_at: str | None = None
    sla_due_at: str | None = None
    deadline_at: str | None = None
    reminded: bool = False
    escalated: bool = False
    # The deadline passed with `on_deadline: escalate`: only `escalate_to` may decide now.
    handed_over: bool = False
    # Set by an ADMIN's reassignment: the role the step was waiting on before, and a named assignee.
    reassigned_from: Role | None = None
    assignee_id: str | None = None
    assignee_name: str | None = None
    # Who reassigned the step last: they may not approve it themselves.
    reassigned_by_id: str | None = None
    # From the policy: links in messages go through the inbox's sign-in (None: only at HIGH risk), and
    # whether a reply to the notification email may decide.
    require_sign_in: bool | None = None
    email_reply: bool = False

    @model_validator(mode="after")
    def _role_leads_any_of(self) -> "ApprovalStep":
        if self.any_of and self.any_of[0] != self.role:
            raise ValueError("an any_of step's role is its first role")
        return self

    @property
    def roles(self) -> list[Role]:
        """The roles the step awaits: every role of `any_of`, else `role` alone."""
        return list(self.any_of) if self.any_of else [self.role]

    @property
    def label(self) -> str:
        """The awaited roles for people: `FINANCE`, or `FINANCE | DIRECTOR | ADMIN`."""
        return " | ".join(self.roles)

    @property
    def deciding_roles(self) -> list[Role]:
        """The roles whose holders may decide now (empty when a named assignee holds the step)."""
        if self.assignee_id is not None:
            return []
        if self.handed_over and self.escalate_to is not None:
            return [self.escalate_to]
        roles = self.roles
        if self.escalated and self.escalate_to is not None and self.escalate_to not in roles:
            roles.append(self.escalate_to)
        return roles

    def approvals(self) -> int:
        return sum(d.decision == Decision.APPROVED for d in self.decisions)


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
    EDIT_IN_PROGRESS = "EditInProgress"
    INVALID_EDIT = "InvalidEdit"
    NOT_ALLOWED = "NotAllowed"
    TOO_LATE = "TooLate"
    BAD_REQUEST = "BadRequest"
    # Not signed by a gateway key the workflow trusts, signed for another message, expired, or sent twice.
    UNAUTHENTICATED = "Unauthenticated"


class RefusalInput(Signed):
    """Signal `refused`: a message the workflow's validator refused before anything was written, sent
    back by the gateway so that the refusal is kept in the workflow's own trail (and reaches the SQL
    audit log with the rest of it, whenever that database can take it)."""

    principal: Principal
    # What was refused: decision, edit, withdrawal, reassignment, retry.
    what: str = Field(min_length=1, max_length=32, pattern=r"^[a-z_]+$")
    code: str = Field(min_length=1, max_length=64)
    message: str = Field(max_length=1000)


class ResultRequest(BaseModel):
    """`POST /workflows/{id}/result`: the caller reports how the approved action it executed went (a
    tool its tenant declared, `execution: caller`). `output` is any JSON the action returned."""

    model_config = ConfigDict(extra="forbid")

    ok: bool
    output: Any = None
    error: str | None = Field(default=None, min_length=1, max_length=2000)

    @field_validator("output")
    @classmethod
    def _carried(cls, output: Any) -> Any:
        return carried_json(output, "output")

    @model_validator(mode="after")
    def _one_outcome(self) -> "ResultRequest":
        if self.ok and self.error is not None:
            raise ValueError("a successful result carries `output`, not `error`")
        if not self.ok and self.error is None:
            raise ValueError("a failed result says why in `error`")
        return self


class ResultInput(Signed):
    """Update `report_result`, from the gateway: who reports, and what."""

    principal: Principal
    ok: bool
    output: Any = None
    error: str | None = None


class RetryRequest(BaseModel):
    """`POST /workflows/{id}/retry`: an ADMIN retries a dead letter, saying why."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


class RetryInput(Signed):
    admin: Principal
    reason: str

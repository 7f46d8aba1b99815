"""What a requester submits, as the gateway receives it and as the workflow starts with it."""

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    field_validator,
    model_validator,
)

from countersign.models.declared_tools import DeclaredTool
from countersign.models.enums import RequestType
from countersign.models.policy import ApprovalPolicy, LegacyPolicy
from countersign.models.principals import Principal
from countersign.models.signatures import GatewayTrust, Signed
from countersign.models.wire import carried_json

# Finite numbers only: JSON has no NaN or Infinity, and a workflow could never decode an input with one.
FieldHint = str | int | Annotated[float, Field(allow_inf_nan=False)] | bool

RequestText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=8000)]


# A registry name: what the registry (built-in, plugin or declared) then checks it against.
ToolName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]{0,99}$")]


CallerSummary = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=600)]


class ProposedAction(BaseModel):
    """The one action a caller (an agent, a service) already chose: no planner runs for it."""

    model_config = ConfigDict(extra="forbid")

    tool: ToolName
    args: dict[str, Any] = Field(max_length=100)

    @field_validator("args")
    @classmethod
    def _carried(cls, args: dict[str, Any]) -> dict[str, Any]:
        # What the workflow could not decode (NaN, a lone surrogate, a value nested past 32 levels).
        return dict(carried_json(args, "args"))


class SubmitRequest(BaseModel):
    """`POST /workflows` body: plain words for the planner (`text`), or the caller's own `action`, or
    both (the text then only tells reviewers what it is about: no planner runs when an action is given).
    `type` and `fields` are hints the planner must respect when given. `summary` and `context` are the
    caller's words for the reviewers, shown quoted as the caller's, never as a subject or a title."""

    # The schema says what `_text_or_action` checks, so clients and generators know a body needs one;
    # its examples are one of each kind (docs, and the API fuzz's explicit cases).
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [{"required": ["text"]}, {"required": ["action"]}],
            "examples": [
                {"text": "Order 3 laptops for the new hires, about 1,200 EUR each"},
                {
                    "action": {"tool": "create_task", "args": {"title": "Rotate the staging keys"}},
                    "summary": "The keys are 90 days old",
                },
            ],
        },
    )

    # The fields a caller's action brought are left out of the dump when unset, as `callback_url` is:
    # a planner's request keeps the exact bytes (workflow input, idempotency digest) it had before.
    text: RequestText | None = None
    action: ProposedAction | None = Field(default=None, exclude_if=lambda value: value is None)
    summary: CallerSummary | None = Field(default=None, exclude_if=lambda value: value is None)
    # Free text, or JSON the reviewer sees as it was sent (an order, a ticket, the agent's trace).
    context: Annotated[str, StringConstraints(max_length=8000)] | dict[str, Any] | None = Field(
        default=None, exclude_if=lambda value: value is None
    )
    type: RequestType | None = None
    fields: dict[Annotated[str, StringConstraints(max_length=64)], FieldHint] | None = Field(
        default=None, max_length=32
    )
    # Where the outcome is delivered by signed callbacks (docs/callbacks.md); the gateway refuses one
    # outside COUNTERSIGN_CALLBACK_ALLOWED_URLS. Left out of the dump when unset, so a request without
    # one keeps the exact bytes (workflow input, idempotency digest) it had before callbacks existed.
    callback_url: HttpUrl | None = Field(default=None, exclude_if=lambda url: url is None)

    @field_validator("context")
    @classmethod
    def _carried(cls, context: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        return None if context is None else carried_json(context, "context")

    @model_validator(mode="after")
    def _text_or_action(self) -> "SubmitRequest":
        if self.text is None and self.action is None:
            raise ValueError("send `text` (a request for the planner) or `action` ({tool, args}), or both")
        if self.action is None and (self.summary is not None or self.context is not None):
            raise ValueError("`summary` and `context` describe a caller's `action`; send them with one")
        return self

    def described(self) -> str:
        """What the request is, in words for the trail and for reviewers: its text, or else the tool
        the caller proposes (a deterministic fallback: nothing the caller wrote)."""
        if self.text is not None:
            return self.text
        assert self.action is not None
        return f"proposed action: {self.action.tool}"


class ApprovalInput(Signed):
    """The workflow's one input. The policy is frozen into history so an audit shows the rules applied.

    Signed by the gateway that started the workflow ("start"); a worker runs only workflows whose start
    a gateway key it trusts signed, and `trust` names the keys whose signatures the workflow accepts on
    every later message. Workflows started before signatures carry no trust and no proofs.

    Workflows started before policy files carry a `LegacyPolicy`; the shapes cannot be confused
    because both refuse unknown keys.
    """

    request: SubmitRequest
    requester: Principal
    policy: ApprovalPolicy | LegacyPolicy
    max_plan_attempts: int = Field(default=2, ge=1, le=5)
    trust: GatewayTrust | None = None
    # How long the approved action and each notification retry transient failures (an outage) before
    # they give up: the action as a dead letter, a notification as a `notify_failed` audit entry.
    outage_window_seconds: int = Field(default=86_400, ge=1, le=30 * 86_400)
    # The tenant's declared tool the action names, frozen at the start as the policy is: Countersign
    # validates and routes it, and after approval waits for the caller to execute it and report.
    declared_tool: DeclaredTool | None = None

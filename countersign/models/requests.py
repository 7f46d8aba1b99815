"""What a requester submits, as the gateway receives it and as the workflow starts with it."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StringConstraints

from countersign.models.enums import RequestType
from countersign.models.policy import ApprovalPolicy, LegacyPolicy
from countersign.models.principals import Principal
from countersign.models.signatures import GatewayTrust, Signed

# Finite numbers only: JSON has no NaN or Infinity, and a workflow could never decode an input with one.
FieldHint = str | int | Annotated[float, Field(allow_inf_nan=False)] | bool

RequestText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=8000)]


class SubmitRequest(BaseModel):
    """`POST /workflows` body. `type` and `fields` are hints the planner must respect when given."""

    model_config = ConfigDict(extra="forbid")

    text: RequestText
    type: RequestType | None = None
    fields: dict[Annotated[str, StringConstraints(max_length=64)], FieldHint] | None = Field(
        default=None, max_length=32
    )
    # Where the outcome is delivered by signed callbacks (docs/callbacks.md); the gateway refuses one
    # outside COUNTERSIGN_CALLBACK_ALLOWED_URLS. Left out of the dump when unset, so a request without
    # one keeps the exact bytes (workflow input, idempotency digest) it had before callbacks existed.
    callback_url: HttpUrl | None = Field(default=None, exclude_if=lambda url: url is None)


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

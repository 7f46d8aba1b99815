"""What the workflow asks the `notify` activity to tell people, and what it did."""

from enum import StrEnum

from pydantic import BaseModel, Field

from countersign.models.channels import DecisionPrompt
from countersign.models.enums import Role


class NotificationKind(StrEnum):
    PENDING = "pending"  # a step now waits on these reviewers
    REMINDER = "reminder"  # the step's reminder time passed without a decision
    ESCALATION = "escalation"  # the SLA passed: the escalation role may decide too
    REASSIGNED = "reassigned"  # an ADMIN handed the step to someone else
    OUTCOME = "outcome"  # the workflow ended (executed, rejected, expired, cancelled, failed)
    DEAD_LETTER = "dead_letter"  # the action or the planning failed for good: an ADMIN may retry


class Notification(BaseModel):
    """One message for everyone holding `roles` (or named in `principal_ids`) in `tenant`."""

    # Unique per message: delivering the same key twice (an activity retry) sends once.
    key: str = Field(min_length=1, max_length=300)
    workflow_id: str
    tenant: str
    kind: NotificationKind
    subject: str = Field(max_length=200)
    body: str = Field(max_length=20_000)
    roles: list[Role] = Field(default_factory=list)
    principal_ids: list[str] = Field(default_factory=list)
    # Never told, whatever their roles: the requester is not asked to approve their own request.
    exclude_ids: list[str] = Field(default_factory=list)
    # For messages that ask for a decision (pending, reminder, escalation, reassigned): the step and
    # proposal version they are about, which links and buttons are bound to. None for the others, and
    # in notifications from before channels could decide.
    prompt: DecisionPrompt | None = None


class NotifyResult(BaseModel):
    recipients: list[str] = Field(default_factory=list)
    # Per channel, how many messages were delivered (an outbox counts one record per notification).
    delivered: dict[str, int] = Field(default_factory=dict)

"""Signed callbacks (Standard Webhooks): the events a workflow tells its requester's `callback_url`,
what the workflow hands the delivery activity, and the delivery log's rows as the API shows them.

The workflow passes only the tenant, the url and the event: the tenant's signing secret is looked up
by the activity at delivery time, so no secret is ever in Temporal history, the audit or a log."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class CallbackEventType(StrEnum):
    """The `type` of an event. Values are what receivers switch on: never rename one."""

    WAITING = "approval.waiting"  # a proposal (a step of its chain) awaits a decision
    ESCALATED = "approval.escalated"  # the step's SLA or deadline passed: more roles may decide
    DECIDED = "approval.decided"  # one reviewer's decision (approved or rejected) was applied
    APPROVED = "approval.approved"  # every step approved: the action is about to run
    EXECUTED = "action.executed"  # the approved action ran
    REJECTED = "approval.rejected"  # a reviewer (or the policy, at a deadline) rejected it
    EXPIRED = "approval.expired"  # nobody decided before the deadline
    FAILED = "workflow.failed"  # planning or the action failed for good (a dead letter)
    CANCELLED = "workflow.cancelled"  # withdrawn by the requester, or cancelled through Temporal


class CallbackEvent(BaseModel):
    """One event. `id` is the `webhook-id` header: the same for every attempt and every redelivery of
    the event, so a receiver can drop a repeat. The body sent is `{type, timestamp, data}`."""

    id: str = Field(min_length=1, max_length=300)
    type: CallbackEventType
    timestamp: datetime
    data: dict[str, Any]

    def body(self) -> bytes:
        """The exact bytes sent and signed."""
        return self.model_dump_json(include={"type", "timestamp", "data"}).encode()


class CallbackDelivery(BaseModel):
    """The `deliver_callback` activity's input: where to, for whom, what. Never a secret."""

    tenant: str
    workflow_id: str
    # Who may read the delivery log besides the tenant's ADMINs.
    requester_id: str
    url: str = Field(min_length=1, max_length=2083)
    event: CallbackEvent


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"  # the receiver answered 2xx
    RETRYING = "retrying"  # this attempt failed; another follows with backoff
    FAILED = "failed"  # this attempt failed and was the last: the retry window has passed


class DeliveryAttempt(BaseModel):
    """One attempt, one row of the delivery log (`GET /workflows/{id}/deliveries`)."""

    id: str
    workflow_id: str
    event_id: str
    event_type: CallbackEventType
    url: str
    attempt: int
    status: DeliveryStatus
    http_status: int | None = None
    error: str | None = None
    at: datetime
    # Set on the attempts an ADMIN asked for (`POST .../redeliver`): their principal id.
    redelivered_by: str | None = None


class WebhookSecret(BaseModel):
    """The tenant's current signing secret (`whsec_…`), for receivers to verify with."""

    secret: str
    # After a rotation, until when the previous secret signs too (every message carries both).
    previous_valid_until: datetime | None = None

"""Where reviewers are told and where they decide: the channel names the audit keeps, what a
"decision needed" message carries, and a reviewer's delivery preferences.

Everything in a `DecisionPrompt` is taken from the workflow's validated state. The model's words (the
plan's summary) travel in `quoted_summary` only and are shown quoted, never in a subject or a title.
"""

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from countersign.models.enums import Role


class DecisionChannel(StrEnum):
    """Where a decision was made; kept in its audit entry and its record in the view."""

    API = "api"  # a client calling the API with a key or token
    INBOX = "inbox"  # the keyboard inbox (/ui)
    EMAIL_LINK = "email_link"  # the confirmation page behind an email's Approve/Reject link
    EMAIL_REPLY = "email_reply"  # a reply to a notification email, received by the gateway
    SLACK = "slack"  # a Slack button or modal
    # A Teams card's button: it opens the inbox at the request (a shared channel's card cannot carry a
    # link bound to one person), where the reviewer signs in and confirms; the inbox says it came from Teams.
    TEAMS = "teams"


# What a client may say of itself with `X-Countersign-Channel` (the inbox says `teams` when a Teams card
# opened it): a claim of where, never of who, since the caller is authenticated as always. The other
# channels are set only by the gateway's own handlers (email links and replies, Slack), never claimed.
CLAIMABLE_CHANNELS = frozenset({DecisionChannel.API, DecisionChannel.INBOX, DecisionChannel.TEAMS})

DeliveryMode = Literal["immediate", "hourly", "daily"]

# Whose words a proposal's summary is: the planner's (a model's), the caller's (an action it proposed),
# or Countersign's (an edited version, described from its args; the AI's words of version 1 kept apart).
SummaryAuthor = Literal["ai", "caller", "countersign"]


class PromptFinding(BaseModel):
    """A validation finding as a message shows it (models/proposal.py's Finding, which imports this
    module's neighbours, is copied field by field)."""

    code: str
    message: str
    field: str | None = None


class DecisionPrompt(BaseModel):
    """What a "decision needed" message shows and what its links are bound to: one step of one
    proposal version. Built by the workflow from deterministic fields; `quoted_summary` is the only
    text a model (or a caller) wrote, and every channel shows it quoted as theirs, unless
    `summary_author` says Countersign built it from the args of an edited version."""

    model_config = ConfigDict(frozen=True)

    workflow_id: str
    tenant: str
    requester_name: str
    step_index: int = Field(ge=0)  # 0-based; messages show step_index + 1
    total_steps: int = Field(ge=1)
    awaiting: list[Role]
    quorum: int = 1
    approvals: int = 0
    proposal_version: int = Field(ge=1)
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    confidence: float
    risk: str | None = None
    findings: list[PromptFinding] = Field(default_factory=list)
    quoted_summary: str = ""
    summary_author: SummaryAuthor = "ai"
    sla_due_at: str | None = None
    # When the step stops taking decisions: its deadline (links expire with it).
    expires_at: str | None = None
    # The policy's `require_sign_in` for the step (HIGH risk when unset): links go through the inbox.
    require_sign_in: bool = False
    # The policy's `email_reply` for the step: a reply to the email may decide.
    email_reply: bool = False


class ChannelPreferences(BaseModel):
    """A reviewer's delivery preferences: immediate or a digest, and quiet hours (local time)."""

    model_config = ConfigDict(extra="forbid")

    delivery: DeliveryMode = "immediate"
    # "22:00-07:00" in `timezone`; None: no quiet hours.
    quiet_hours: str | None = Field(
        default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"
    )
    timezone: str = Field(default="UTC", min_length=1, max_length=64)

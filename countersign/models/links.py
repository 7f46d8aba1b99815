"""Decision links: what one is bound to, and why one may be refused (store/decision_links.py)."""

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from countersign.models.channels import DecisionChannel

LinkAction = Literal["approve", "reject", "reply"]
# A link token: 16 base32 characters naming it, a dash, 16 of its signature (an email local part fits).
TOKEN_PATTERN = r"^[a-z2-7]{16}-[a-z2-7]{16}$"  # noqa: S105 (a format, not a secret)


class LinkGrant(BaseModel):
    """What a link lets its one holder do: decide one step of one proposal version of one workflow,
    as one principal, until the step's deadline. `action` is the button it came from (`reply`: the
    reply-to address, whose first line says which)."""

    model_config = ConfigDict(frozen=True)

    principal_id: str = Field(min_length=1, max_length=64)
    tenant: str = Field(min_length=1, max_length=64)
    workflow_id: str = Field(min_length=1, max_length=200)
    step_index: int = Field(ge=0)
    proposal_version: int = Field(ge=1)
    action: LinkAction
    expires_at: AwareDatetime
    # Where the link was sent: email_link (an email's button), teams (a card's button), email_reply.
    channel: DecisionChannel = DecisionChannel.EMAIL_LINK


class LinkProblem(StrEnum):
    """Why a link decides nothing; each is shown to its holder in plain words."""

    UNKNOWN = "unknown"  # no such link, or its signature does not hold
    EXPIRED = "expired"  # the step's deadline passed
    USED = "used"  # this link, or its sibling (the other button of the same message), was used


class CheckedLink(BaseModel):
    """A link found and verified: its grant, and when it was used (None: still usable)."""

    id: str
    grant: LinkGrant
    used_at: datetime | None = None
    used_for: str | None = None

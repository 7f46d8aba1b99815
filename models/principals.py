"""Who is acting: the authenticated caller, as the gateway hands it to the workflow."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from models.enums import Role

# No quotes, backslashes or spaces: ids are matched in visibility queries (and JWT subjects like
# `auth0|123` or an email address still fit).
PrincipalId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@:|+=-]+$")]
Tenant = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]

# How far ahead an out-of-office delegation may reach.
MAX_DELEGATION_DAYS = 180


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: PrincipalId
    name: str = Field(min_length=1, max_length=128)
    roles: list[Role] = Field(default_factory=list)
    tenant: Tenant = "default"


class NewPrincipal(BaseModel):
    """A principal just created, with its API key shown this once and never stored in clear."""

    principal: Principal
    api_key: str


class Recipient(BaseModel):
    """A principal as notifications see it: with an email address, when one is on file."""

    model_config = ConfigDict(frozen=True)

    id: PrincipalId
    name: str
    email: str | None = None
    roles: list[Role] = Field(default_factory=list)
    tenant: Tenant = "default"


class DelegateRequest(BaseModel):
    """Out of office: let `delegate_id` act with my roles from `starts_at` (default now) until `until`.

    `until` must also be in the future and at most MAX_DELEGATION_DAYS away; the store checks that
    against its clock (PrincipalStore.set_delegate), since "now" is not the model's to read.
    """

    model_config = ConfigDict(extra="forbid")

    delegate_id: PrincipalId
    until: AwareDatetime
    starts_at: AwareDatetime | None = None
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]

    @model_validator(mode="after")
    def _starts_before_it_ends(self) -> "DelegateRequest":
        if self.starts_at is not None and self.starts_at >= self.until:
            raise ValueError("starts_at must be before until")
        return self


class Delegation(BaseModel):
    """One principal's delegation, as stored: at most one per delegator. Times are UTC."""

    model_config = ConfigDict(frozen=True)

    delegator_id: PrincipalId
    delegate_id: PrincipalId
    tenant: Tenant
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: str
    created_at: AwareDatetime

    def active_at(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at


class DelegationEvent(BaseModel):
    """One line of the delegation log: a delegation set (with its period and reason) or ended."""

    at: AwareDatetime
    action: Literal["set", "cleared"]
    delegator_id: PrincipalId
    delegate_id: PrincipalId | None = None
    tenant: Tenant
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    reason: str | None = None

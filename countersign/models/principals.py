"""Who is acting: the authenticated caller, as the gateway hands it to the workflow."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from countersign.models.channels import ChannelPreferences
from countersign.models.enums import Role

# Tenant names Countersign keeps for itself, compared without regard to case. Names starting with `_` or
# `.` are all reserved too: `_builtin` owns the graphs shipped with Countersign (store/graph_store.py)
# and is visible to every tenant, so a tenant of that name would rewrite them for everyone. The words
# below are kept back for the same kind of use (and `none`/`null`, which an identity provider's mapping
# bug could turn a missing claim into).
RESERVED_TENANTS = frozenset(
    {"builtin", "system", "internal", "global", "all", "any", "none", "null", "countersign"}
)


def _not_reserved(tenant: str) -> str:
    if tenant[:1] in ("_", "."):
        raise ValueError(f"tenant {tenant!r} is reserved: tenant names may not start with '_' or '.'")
    if tenant.lower() in RESERVED_TENANTS:
        raise ValueError(f"tenant {tenant!r} is reserved for Countersign's own use")
    return tenant


def is_reserved_tenant(tenant: str) -> bool:
    try:
        _not_reserved(tenant)
    except ValueError:
        return True
    return False


# No quotes, backslashes or spaces: ids are matched in visibility queries (and JWT subjects like
# `auth0|123` or an email address still fit).
PrincipalId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@:|+=-]+$")]
# Every Principal, Recipient and Delegation is built through this type, so no path (the CLI, a JWT, a
# stored row) can give a principal a reserved tenant.
Tenant = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$"), AfterValidator(_not_reserved)
]

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


KeyState = Literal["active", "grace", "expired", "revoked"]


class ApiKeyRecord(BaseModel):
    """One API key as an administrator sees it: never the key, only its first characters.

    `state`: `active`; `grace` (replaced by a rotation, works until `expires_at`); `expired`; `revoked`.
    `prefix` is None for a key made before prefixes were kept, until it is next used.
    """

    prefix: str | None
    created_at: AwareDatetime
    expires_at: AwareDatetime | None = None
    revoked_at: AwareDatetime | None = None
    state: KeyState


class PrincipalRecord(BaseModel):
    """A stored principal with everything `countersign principal list/show` reports.

    `tenant` is a plain string here: a database from before tenant names were reserved may hold one,
    and the administrator must be able to see (and disable) such a principal. It cannot sign in.
    """

    id: str
    name: str
    tenant: str
    roles: list[Role]
    email: str | None = None
    # `api-key`: made by `countersign principal add`; `jwt`: recorded on its first request with a token.
    source: Literal["api-key", "jwt"]
    created_at: AwareDatetime
    disabled_at: AwareDatetime | None = None
    keys: list[ApiKeyRecord] = Field(default_factory=list)
    slack_user_id: str | None = None
    preferences: ChannelPreferences = Field(default_factory=ChannelPreferences)

    @property
    def status(self) -> str:
        if is_reserved_tenant(self.tenant):
            return "unusable (reserved tenant)"
        return "disabled" if self.disabled_at is not None else "active"


class RotatedKey(BaseModel):
    """The new key from a rotation, shown this once, and until when the keys it replaced still work."""

    principal: Principal
    api_key: str
    prefix: str
    replaced: int  # keys that were working and now are revoked or on their grace period
    old_keys_until: AwareDatetime | None  # None: the replaced keys stopped at once


# A Slack member id (`U…`, or `W…` on Enterprise Grid).
SlackUserId = Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,30}$")]


class Recipient(BaseModel):
    """A principal as notifications see it: its addresses on each channel, and how it likes to be told."""

    model_config = ConfigDict(frozen=True)

    id: PrincipalId
    name: str
    email: str | None = None
    roles: list[Role] = Field(default_factory=list)
    tenant: Tenant = "default"
    slack_user_id: str | None = None
    preferences: ChannelPreferences = Field(default_factory=ChannelPreferences)


class PrincipalChannels(BaseModel):
    """`GET /principals/me`'s `channels`: where the reviewer is told and may decide."""

    email: str | None = None
    slack_user_id: str | None = None
    preferences: ChannelPreferences = Field(default_factory=ChannelPreferences)
    # The channels a decision of theirs may come from, given what is on file and configured.
    decides_from: list[str] = Field(default_factory=list)


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

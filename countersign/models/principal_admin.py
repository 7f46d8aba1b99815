"""A tenant's ADMIN managing its principals through the API (`POST /principals`, `GET /principals`),
for deployments where the CLI's host is not the gateways' (several gateways, one database)."""

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field

from countersign.models.enums import Role

# An API-key principal's id, as the store makes them: a form no token's subject may take (api/tokens.py),
# so that a principal an ADMIN names never stands in the way of someone signing in with a token.
API_KEY_PRINCIPAL_ID = r"^p-[0-9a-f]{10}$"


class AddPrincipalRequest(BaseModel):
    """A principal of the caller's tenant that signs in with an API key (shown once, in the answer).

    `id`: when given, a retry of the same request is refused (409) rather than adding a second
    principal; when not, the store makes one."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(pattern=API_KEY_PRINCIPAL_ID, examples=["p-0123456789"])] | None = None
    name: str = Field(min_length=1, max_length=128)
    roles: list[Role] = Field(default_factory=list)
    email: EmailStr | None = None


class PrincipalSummary(BaseModel):
    """A principal as its tenant's ADMIN sees it: no key, nor any part of one."""

    id: str
    name: str
    tenant: str
    roles: list[Role]
    email: str | None = None
    slack_user_id: str | None = None
    # `api-key`: added by the CLI or `POST /principals`; `jwt`: recorded on its first request with a token.
    source: str
    # `active`, `disabled`, or `unusable (reserved tenant)`.
    status: str
    created_at: AwareDatetime
    disabled_at: datetime | None = None
    # How many of its API keys work now (a rotation's grace period may leave two).
    working_keys: int = 0


class PrincipalList(BaseModel):
    """`GET /principals`: the caller's tenant's principals, by name."""

    items: list[PrincipalSummary]

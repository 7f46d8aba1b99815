"""Who is acting: the authenticated caller, as the gateway hands it to the workflow."""

from pydantic import BaseModel, ConfigDict, Field

from models.enums import Role


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=128)
    roles: list[Role] = Field(default_factory=list)
    tenant: str = Field(default="default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class NewPrincipal(BaseModel):
    """A principal just created, with its API key shown this once and never stored in clear."""

    principal: Principal
    api_key: str

"""Tools a tenant declares: Countersign validates and routes a call of one, the caller executes it.

A declaration is a name, a description, a JSON Schema for the args, a side effect and a risk. Each
declaration of a name in a tenant is the next version; the latest is the one used, older ones stay
readable. A workflow carries the version it was started with, frozen in its input (as it carries its
policy), so replaying it never reads the database.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from countersign.models.enums import Risk, SideEffect
from countersign.models.principals import Tenant
from countersign.models.wire import carried_json

# The names agents' tool-calling conventions accept (OpenAI functions, MCP tools), starting with a
# letter: a declared name can be handed to a model or an MCP client as it is.
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
# Versions count per name; the bound keeps a made-up `?version=` inside what the SQL store compares.
MAX_VERSION = 2**31 - 1


class DeclareToolRequest(BaseModel):
    """`POST /tools` (ADMIN): the same field names `GET /tools` answers with."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(min_length=1, max_length=2000)
    # A JSON Schema (draft 2020-12) of `type: object`; tools/declared.py says what else it must be.
    args_schema: dict[str, Any]
    side_effect: SideEffect
    risk: Risk = Risk.MEDIUM

    @field_validator("args_schema")
    @classmethod
    def _carried(cls, schema: dict[str, Any]) -> dict[str, Any]:
        # Every workflow calling the tool carries the schema in its input: what the data converter
        # could not decode there (NaN, a lone surrogate, past 32 levels) would make it unstartable.
        return dict(carried_json(schema, "args_schema"))


class DeclaredTool(BaseModel):
    """One version of a tenant's declared tool: what validation checks a call of it against."""

    model_config = ConfigDict(frozen=True)

    tenant: Tenant
    name: str = Field(pattern=NAME_PATTERN)
    version: int = Field(ge=1, le=MAX_VERSION)
    description: str
    args_schema: dict[str, Any]
    side_effect: SideEffect
    risk: Risk = Risk.MEDIUM

"""Crossing into a tool: the one approved call, and what it did."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from models.enums import Risk, SideEffect


class ToolSpec(BaseModel):
    """What the planner and the reviewers are told about a tool."""

    name: str
    description: str
    side_effect: SideEffect
    risk: Risk = Risk.MEDIUM
    # Running it twice with the same idempotency key acts once.
    idempotent: bool = True
    args_schema: dict[str, Any]
    result_schema: dict[str, Any]


class ToolList(BaseModel):
    """`GET /tools`: every tool the planner may propose, with its contracts."""

    items: list[ToolSpec]


class ToolCall(BaseModel):
    tool: str
    args: dict[str, Any]
    # Derived from the workflow id and proposal version, so a retried call is recognised, not repeated.
    idempotency_key: str = Field(min_length=8, max_length=200)


class ToolOutcome(BaseModel):
    tool: str
    idempotency_key: str
    result: dict[str, Any]
    executed_at: datetime
    # True when this key had already run and the stored result was returned instead of acting again.
    replayed: bool = False

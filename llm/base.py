"""The one planning Protocol every provider implements. Vendor SDK types never leave `llm/`."""

from typing import Protocol

from models.proposal import Plan, PlanInput
from models.tools import ToolSpec


class Planner(Protocol):
    """Turns a request into exactly one proposed action drawn from `tools`."""

    name: str

    async def plan(self, request: PlanInput, tools: list[ToolSpec]) -> Plan: ...

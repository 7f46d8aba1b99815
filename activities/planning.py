"""Planning activity: ask the configured planner for exactly one action drawn from the registry."""

from temporalio import activity

from llm.base import Planner
from models.proposal import Plan, PlanInput
from tools.registry import ToolRegistry


class PlanningActivities:
    def __init__(self, planner: Planner, registry: ToolRegistry) -> None:
        self._planner = planner
        self._registry = registry

    @activity.defn(name="plan")
    async def plan(self, request: PlanInput) -> Plan:
        activity.logger.info("planning with %s, attempt %d", self._planner.name, request.attempt)
        return await self._planner.plan(request, self._registry.specs())

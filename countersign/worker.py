"""The worker: builds the planner and the tool registry, and runs the approval workflow's activities."""

import asyncio
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from activities.execution import ExecutionActivities
from activities.planning import PlanningActivities
from activities.validation import ValidationActivities
from countersign.settings import Settings
from countersign.temporal import connect, ensure_search_attributes
from llm.base import Planner
from llm.rules import RulesPlanner
from tools.builtin import build_registry
from workflows.approval import ApprovalWorkflow


def build_planner(name: str) -> Planner:
    if name == "rules":
        return RulesPlanner()
    raise ValueError(f"unknown planner {name!r}; available: rules")


def build_worker(client: Client, *, task_queue: str, data_dir: Path, planner: Planner) -> Worker:
    registry = build_registry()
    planning = PlanningActivities(planner, registry)
    validation = ValidationActivities(registry)
    execution = ExecutionActivities(registry, data_dir)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[ApprovalWorkflow],
        activities=[planning.plan, validation.validate, execution.execute],
    )


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    client = await connect(settings.resolved_temporal_address, settings.namespace)
    await ensure_search_attributes(client, settings.namespace)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker = build_worker(
        client,
        task_queue=settings.task_queue,
        data_dir=settings.data_dir,
        planner=build_planner(settings.planner),
    )
    async with worker:
        await (stop or asyncio.Event()).wait()

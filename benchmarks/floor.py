"""The floor: a bare Temporal workflow of the same shape as a Countersign lifecycle (the same number of
activities before and after one update), driven directly by a Temporal client. Whatever Countersign
costs on top of Temporal is the distance between this and `benchmarks.lifecycle`.

The activities do nothing; the shape is measured from a real lifecycle's history in the same run
(`shape_of`), so the floor follows the product when the product changes."""

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

FLOOR_QUEUE_SUFFIX = "-floor"
# The same floor on a worker without the SDK's workflow sandbox, as `countersign worker` runs by default.
PLAIN_FLOOR_QUEUE_SUFFIX = "-floor-plain"


class FloorShape(BaseModel):
    before: int  # activities before the approval update
    after: int  # activities after it


@activity.defn(name="floor_step")
async def floor_step(step: int) -> int:
    return step


@workflow.defn(name="FloorWorkflow")
class FloorWorkflow:
    def __init__(self) -> None:
        self._waiting = False
        self._approved = False
        self._done = False

    @workflow.run
    async def run(self, shape: FloorShape) -> int:
        for step in range(shape.before):
            await workflow.execute_activity(floor_step, step, start_to_close_timeout=timedelta(seconds=30))
        self._waiting = True
        await workflow.wait_condition(lambda: self._approved)
        for step in range(shape.after):
            await workflow.execute_activity(floor_step, step, start_to_close_timeout=timedelta(seconds=30))
        self._done = True
        return shape.before + shape.after

    @workflow.query
    def waiting(self) -> bool:
        return self._waiting

    @workflow.update
    async def approve(self) -> bool:
        # Like Countersign's `decide`: accepted once the workflow waits, answered once it has acted.
        await workflow.wait_condition(lambda: self._waiting)
        self._approved = True
        await workflow.wait_condition(lambda: self._done)
        return True


async def shape_of(handle: WorkflowHandle[Any, Any], decision: str = "decide") -> FloorShape:
    """Activities scheduled before and after the approval (the first accepted update named
    `decision`; a submit that waits sends another update, `proposed`, with the start)."""
    before = after = 0
    updated = False
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            accepted = event.workflow_execution_update_accepted_event_attributes.accepted_request
            updated = updated or accepted.input.name == decision
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if updated:
                after += 1
            else:
                before += 1
    return FloorShape(before=before, after=after)


async def floor_lifecycle(
    client: Client, task_queue: str, shape: FloorShape, suffix: str = FLOOR_QUEUE_SUFFIX
) -> float:
    """Start, approve once it waits, await the result: seconds from start to result."""
    started = time.perf_counter()
    handle = await client.start_workflow(
        FloorWorkflow.run, shape, id=f"floor-{uuid.uuid4().hex}", task_queue=task_queue + suffix
    )
    await handle.execute_update(FloorWorkflow.approve)
    await handle.result()
    return time.perf_counter() - started


async def raw_update_round_trip(client: Client, task_queue: str, shape: FloorShape) -> float:
    """One floor workflow brought to its wait, then the update alone timed (decision_latency's floor)."""
    handle = await client.start_workflow(
        FloorWorkflow.run,
        shape,
        id=f"floor-update-{uuid.uuid4().hex}",
        task_queue=task_queue + FLOOR_QUEUE_SUFFIX,
    )
    for _ in range(60_000):  # at most ten minutes
        if await handle.query(FloorWorkflow.waiting):
            break
        await asyncio.sleep(0.01)
    started = time.perf_counter()
    await handle.execute_update(FloorWorkflow.approve)
    elapsed = time.perf_counter() - started
    await handle.result()
    return elapsed

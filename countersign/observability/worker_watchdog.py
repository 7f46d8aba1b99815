"""A worker that has stopped taking workflow tasks must exit, so its supervisor starts a fresh one.

Seen under a burst of 10,000 workflows with a small workflow cache: the worker process stayed up,
its Python side idle and nothing logged, while the workflow task queue's backlog grew and nothing
was dispatched from it (the SDK's core stopped handing out activations). The Python SDK only ends
`Worker.run` on an exception, so nothing inside the process notices. Temporal does: the task queue's
statistics say whether tasks are waiting and whether any are being dispatched.
"""

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from countersign.models.errors import CountersignError

log = logging.getLogger(__name__)

# Well below any real workload: a backlog drained at this rate is not being drained.
IDLE_DISPATCH_RATE = 0.01


class WorkerStalled(CountersignError, RuntimeError):
    """Workflow tasks are waiting and none has been dispatched for the whole stall timeout."""


@dataclass(frozen=True)
class QueueStats:
    backlog: int
    backlog_age: timedelta
    dispatch_rate: float

    @property
    def stalled(self) -> bool:
        return self.backlog > 0 and self.dispatch_rate < IDLE_DISPATCH_RATE


async def workflow_queue_stats(client: Client, namespace: str, task_queue: str) -> QueueStats:
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            report_stats=True,
        )
    )
    stats = response.stats
    return QueueStats(
        backlog=stats.approximate_backlog_count,
        backlog_age=stats.approximate_backlog_age.ToTimedelta(),
        dispatch_rate=stats.tasks_dispatch_rate,
    )


async def watch_workflow_queue(
    client: Client, namespace: str, task_queue: str, *, stall_timeout: timedelta, checks: int = 4
) -> None:
    """Returns only by raising `WorkerStalled`: after `checks` looks in a row, spread over
    `stall_timeout`, that each found tasks waiting longer than the interval and none dispatched.
    A server that cannot be asked is not the worker's fault and resets the count."""
    interval = stall_timeout / checks
    strikes = 0
    while True:
        await asyncio.sleep(interval.total_seconds())
        try:
            stats = await workflow_queue_stats(client, namespace, task_queue)
        except RPCError as error:
            log.warning("cannot read task queue %s's statistics: %s", task_queue, error.message)
            strikes = 0
            continue
        if not (stats.stalled and stats.backlog_age >= interval):
            strikes = 0
            continue
        strikes += 1
        log.warning(
            "task queue %s: %d workflow tasks waiting (oldest %s), none dispatched (%d of %d checks)",
            task_queue,
            stats.backlog,
            stats.backlog_age,
            strikes,
            checks,
        )
        if strikes >= checks:
            raise WorkerStalled(
                f"task queue {task_queue} has had {stats.backlog} workflow tasks waiting, the oldest for "
                f"{stats.backlog_age}, and has dispatched none for {stall_timeout}: this worker is not "
                "taking workflow tasks; exiting so that it is restarted"
            )

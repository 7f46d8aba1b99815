"""Health check of a `countersign worker` container (docker-compose.yml runs it every 30 seconds).

Healthy when the worker of *this* container polls its workflow task queue: Temporal lists a task
queue's pollers with their identity, `<pid>@<hostname>` by the SDK's default, and the time each last
polled. A connected worker starts a new long poll at least every 70 seconds or so, so a poll from this
host within POLL_WINDOW means the worker process runs, reaches the server and takes work; a worker that
hangs or lost its connection stops showing up. Exit 0 when healthy, 1 otherwise (one line on stderr).
"""

import asyncio
import os
import socket
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

POLL_WINDOW = timedelta(seconds=150)
TIMEOUT_SECONDS = 8.0


def polls_from(pollers: Iterable[PollerInfo], hostname: str, now: datetime) -> bool:
    """Whether a poller of `hostname` (identity `<anything>@<hostname>`) polled within POLL_WINDOW."""
    for poller in pollers:
        if not poller.identity.endswith(f"@{hostname}") or not poller.HasField("last_access_time"):
            continue
        if now - poller.last_access_time.ToDatetime(tzinfo=UTC) <= POLL_WINDOW:
            return True
    return False


async def check() -> str | None:
    """None when healthy, else what is wrong."""
    from countersign.config.settings import Settings
    from countersign.config.temporal import connect

    settings = Settings()
    client = await connect(
        settings.resolved_temporal_address, settings.namespace, tls=settings.temporal_tls()
    )
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=settings.namespace,
            task_queue=TaskQueue(name=settings.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    hostname = socket.gethostname()
    if polls_from(response.pollers, hostname, datetime.now(UTC)):
        return None
    return f"no worker on {hostname} polled task queue {settings.task_queue!r} in the last {POLL_WINDOW}"


def main() -> int:
    try:
        problem = asyncio.run(asyncio.wait_for(check(), TIMEOUT_SECONDS))
    except Exception as error:  # any failure to ask Temporal is "unhealthy", whatever its kind
        problem = f"cannot ask Temporal: {type(error).__name__}: {error}"
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    # Not sys.exit: finalising the interpreter while the SDK's runtime threads still run can abort it
    # (exit 134 instead of 1).
    os._exit(code)

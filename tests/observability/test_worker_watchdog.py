"""The worker's watchdog reads Temporal's task queue statistics, on the real dev server; and
`countersign worker` stops cleanly on SIGTERM, as supervisors stop it."""

import asyncio
import signal
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from countersign.models.enums import WorkflowState
from countersign.observability.worker_watchdog import (
    WorkerStalled,
    watch_workflow_queue,
    workflow_queue_stats,
)
from countersign.worker import WorkerGroup
from tests.chaos.support import WorkerProcess, free_port, worker_env
from tests.helpers import REQUESTER, eventually, start, wait_for_state

STALL = timedelta(seconds=3)


async def test_a_queue_nobody_takes_tasks_from_is_a_stall(client: Client) -> None:
    """The stall as the worker sees it: tasks waiting, none dispatched (here: no worker at all)."""
    queue = f"stalled-{uuid.uuid4().hex[:8]}"
    handle = await start(client, queue, "Follow up with ABC Logistics (sales@abclogistics.com) about pricing")
    try:
        with pytest.raises(WorkerStalled, match=f"task queue {queue} has had 1 workflow tasks waiting"):
            await asyncio.wait_for(
                watch_workflow_queue(client, "default", queue, stall_timeout=STALL, checks=3), timeout=30
            )
    finally:
        await handle.terminate("test over")


async def test_a_worker_taking_tasks_is_not_a_stall(
    client: Client, task_queue: str, worker: WorkerGroup
) -> None:
    watch = asyncio.ensure_future(
        watch_workflow_queue(client, "default", task_queue, stall_timeout=STALL, checks=3)
    )
    # Work flows through the queue while the watchdog looks, for longer than its stall timeout.
    handles = [await start(client, task_queue, f"Email bob@example.com reminder {n}") for n in range(3)]
    for handle in handles:
        await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    await asyncio.sleep(STALL.total_seconds() * 1.5)
    assert not watch.done(), watch
    watch.cancel()
    stats = await workflow_queue_stats(client, "default", task_queue)
    assert (stats.backlog, stats.stalled) == (0, False)


async def test_the_worker_stops_cleanly_on_sigterm(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """SIGTERM (what Docker, Kubernetes and `countersign up` send) shuts the Temporal workers down
    and exits 0; before, it killed the process outright."""
    address = dev_env.client.service_client.config.target_host
    queue = f"sigterm-{uuid.uuid4().hex[:8]}"
    env = worker_env(address, queue, tmp_path, free_port())
    process = WorkerProcess(["-m", "countersign", "worker"], env, tmp_path / "worker.log")
    try:
        handle = await start(dev_env.client, queue, "Email bob@example.com a reminder", requester=REQUESTER)
        await eventually(
            lambda: handle.query("view"), lambda view: view["state"] == "WAITING_FOR_APPROVAL", timeout=60
        )
        process.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.process.wait, 30)
        log = (tmp_path / "worker.log").read_text()
        assert code == 0, log
        assert "stopping: running activities get" in log
        await handle.terminate("test over")
    finally:
        process.stop()

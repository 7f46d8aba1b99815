"""SLA deadlines on the time-skipping test server: days pass in milliseconds."""

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from countersign.worker import build_worker
from llm.rules import RulesPlanner
from models.enums import WorkflowState
from models.policy import DAY, ApprovalPolicy
from tests.helpers import start
from tools.builtin import list_outbox


@pytest.fixture
async def skipping_worker(
    time_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> AsyncIterator[Worker]:
    worker = build_worker(time_env.client, task_queue=task_queue, data_dir=tmp_path, planner=RulesPlanner())
    async with worker:
        yield worker


@pytest.mark.usefixtures("skipping_worker")
async def test_no_decision_within_sla_expires(
    time_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    policy = ApprovalPolicy(step_sla_seconds=2 * DAY)
    handle = await start(
        time_env.client,
        task_queue,
        "Follow up with ABC Logistics (sales@abclogistics.com) about pricing",
        policy=policy,
    )
    before = await time_env.get_current_time()
    view = await handle.result()  # the server skips ahead to the SLA timer
    elapsed = await time_env.get_current_time() - before
    assert view.state == WorkflowState.EXPIRED
    assert elapsed >= timedelta(days=2)
    assert view.audit[-1].event == "expired"
    assert view.chain[0].status == "expired"
    assert list_outbox(tmp_path) == []

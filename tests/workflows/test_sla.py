"""SLA deadlines on the time-skipping test server: days pass in milliseconds."""

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from countersign.worker import WorkerGroup, build_worker
from llm.rules import RulesPlanner
from models.decisions import DecideInput
from models.enums import Decision, WorkflowState
from models.policy import DAY, ApprovalPolicy
from models.views import WorkflowView
from tests.helpers import MANAGER, start
from tools.builtin import list_outbox
from workflows.approval import ApprovalWorkflow


@pytest.fixture
async def skipping_worker(
    time_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> AsyncIterator[WorkerGroup]:
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


async def test_a_tool_that_keeps_failing_ends_failed_with_an_audit_entry(
    time_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    # The data dir is a plain file, so every attempt to write the outbox fails; the retry backoff
    # (minutes in all) is skipped by the test server.
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    worker = build_worker(time_env.client, task_queue=task_queue, data_dir=blocked, planner=RulesPlanner())
    async with worker:
        handle = await start(
            time_env.client, task_queue, "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"
        )
        await _wait_waiting(handle)
        await handle.signal(
            ApprovalWorkflow.decision, DecideInput(reviewer=MANAGER, decision=Decision.APPROVED)
        )
        view = await handle.result()
    assert view.state == WorkflowState.FAILED
    assert view.result is None
    assert view.error is not None and view.error.startswith("send_email failed")
    assert [e.event for e in view.audit][-3:] == ["decision_approved", "approved", "failed"]


async def _wait_waiting(handle: WorkflowHandle[ApprovalWorkflow, WorkflowView]) -> None:
    # Queries do not advance time-skipping; poll the real clock briefly.
    for _ in range(200):
        if (await handle.query(ApprovalWorkflow.view)).state == WorkflowState.WAITING_FOR_APPROVAL:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("workflow never reached WAITING_FOR_APPROVAL")

"""Exactly once across a worker killed mid-execution: the worker is a real process (`countersign
worker`'s code, configured from the environment), paused right after the tool acted and SIGKILLed
there; a fresh `countersign worker` takes over. The SMTP server receives the email exactly once.

Temporal notices the dead worker when its heartbeats stop (the execution activity's heartbeat timeout,
20 s), so the test takes about that long; both crash points run at once."""

import asyncio
import dataclasses
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from countersign.models.decisions import DecideInput
from countersign.models.enums import Decision, WorkflowState
from countersign.models.tools import LedgerEntry, LedgerStatus
from countersign.models.views import WorkflowView
from countersign.stack.mail_sink import MailSink, deliveries
from countersign.store.execution_ledger import ExecutionLedger
from countersign.store.sql import default_url
from countersign.workflows.approval import ApprovalWorkflow
from tests.chaos.support import WorkerProcess, worker_env
from tests.fake_llm import FakeLLM, follow_up_plan, openai_answer
from tests.helpers import MANAGER, eventually, start, wait_for_state

FOLLOW_UP = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"


@dataclass
class Crashed:
    view: WorkflowView
    delivered: list[list[str]]
    entry: LedgerEntry | None


async def kill_after(checkpoint: str, client: Client, work: Path) -> Crashed:
    """Approve an email, SIGKILL the worker paused at `checkpoint`, start a fresh one; what came of it."""
    task_queue, data_dir, marker = f"crash-{uuid.uuid4().hex[:8]}", work / "data", work / "paused"
    work.mkdir()
    with MailSink(work / "sink") as sink:
        env = worker_env(client.service_client.config.target_host, task_queue, data_dir, sink.port)
        doomed = WorkerProcess(
            ["-m", "tests.crash_worker", checkpoint, str(marker)], env, work / "doomed.log"
        )
        try:
            handle = await start(client, task_queue, FOLLOW_UP)
            await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
            await handle.signal(
                ApprovalWorkflow.decision,
                DecideInput(reviewer=MANAGER, decision=Decision.APPROVED, proposal_version=1),
            )
            # Paused at the checkpoint: the email is sent, and Temporal has not heard of it.
            await eventually(lambda: asyncio.to_thread(marker.exists), bool, timeout=60)
            assert len(deliveries(work / "sink")) == 1
        finally:
            doomed.kill()
        assert doomed.process.returncode == -signal.SIGKILL

        # A fresh `countersign worker`. Temporal retries the action once the dead worker's heartbeats stop.
        survivor = WorkerProcess(["-m", "countersign", "worker"], env, work / "survivor.log")
        try:
            view = await asyncio.wait_for(handle.result(), timeout=120)
        finally:
            survivor.stop()
    assert view.result is not None
    async with await ExecutionLedger.open(default_url(data_dir)) as ledger:
        entry = await ledger.get(view.result.idempotency_key)
    return Crashed(view, [d["to"] for d in deliveries(work / "sink")], entry)


async def test_a_worker_killed_after_sending_an_email_never_sends_it_twice(
    client: Client, tmp_path: Path
) -> None:
    # Both crash points at once: each waits out the same heartbeat timeout.
    after_effect, after_record = await asyncio.gather(
        kill_after("effect_done", client, tmp_path / "effect_done"),
        kill_after("result_recorded", client, tmp_path / "result_recorded"),
    )
    for crashed in (after_effect, after_record):
        assert crashed.view.state == WorkflowState.ACTION_EXECUTED
        assert crashed.delivered == [["sales@abclogistics.com"]]
        assert crashed.view.result is not None and crashed.view.result.replayed is True
        assert crashed.entry is not None and crashed.entry.status == LedgerStatus.SUCCEEDED
        assert crashed.entry.result == crashed.view.result.result
    # Killed after the effect, before its result was recorded: the second attempt ran the tool, whose
    # outbox mark said "sent". Killed after the result was recorded: the ledger answered, the tool never ran.
    assert after_effect.entry is not None and after_effect.entry.attempts == 2
    assert after_record.entry is not None and after_record.entry.attempts == 1


async def test_a_worker_killed_while_planning_is_replaced_within_the_heartbeat_timeout(
    client: Client, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    """The model is slow; the worker asking it dies. The planning activity's heartbeats stop, so
    Temporal retries it on a fresh worker after PLANNING_HEARTBEAT_TIMEOUT (30 s), not after the whole
    PLANNING_TIMEOUT (5 minutes, beyond this test's wait)."""
    fake_llm.script(
        dataclasses.replace(openai_answer(follow_up_plan()), delay=45),  # what the dead worker asked
        openai_answer(follow_up_plan()),
    )
    task_queue = f"crash-plan-{uuid.uuid4().hex[:8]}"
    with MailSink(tmp_path / "sink") as sink:
        env = worker_env(client.service_client.config.target_host, task_queue, tmp_path / "data", sink.port)
        env.update(
            {
                "COUNTERSIGN_LLM": "openai:gpt-4.1-mini",
                "COUNTERSIGN_LLM_MAX_REPAIRS": "0",
                **fake_llm.vendor_env("sk-test-crash-while-planning", "sk-test-unused"),
            }
        )
        doomed = WorkerProcess(["-m", "countersign", "worker"], env, tmp_path / "doomed.log")
        try:
            handle = await start(client, task_queue, FOLLOW_UP)
            await eventually(lambda: asyncio.sleep(0, len(fake_llm.requests)), lambda n: n == 1, timeout=60)
        finally:
            doomed.kill()
        survivor = WorkerProcess(["-m", "countersign", "worker"], env, tmp_path / "survivor.log")
        try:
            view = await eventually(
                lambda: handle.query(ApprovalWorkflow.view),
                lambda v: v.state == WorkflowState.WAITING_FOR_APPROVAL,
                timeout=150,
            )
        finally:
            survivor.stop()
    assert view.proposal is not None and view.proposal.tool == "send_email"
    assert len(fake_llm.requests) == 2
    # Temporal retries an activity without writing the failed attempt to history: the plan's
    # started event says which attempt finished it.
    events = (await handle.fetch_history()).events
    plan = next(
        e.event_id
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "plan"
    )
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in events
        if e.HasField("activity_task_started_event_attributes")
        and e.activity_task_started_event_attributes.scheduled_event_id == plan
    ]
    assert attempts == [2]
    await handle.terminate("test over")

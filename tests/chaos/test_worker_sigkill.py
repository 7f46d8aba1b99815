"""Chaos: 200 email follow-ups approved while the worker is SIGKILLed again and again.

The worker is a real `countersign worker` process (configured from the environment), emailing over SMTP
into a MailSink. Once all 200 wait for their MANAGER, the approvals go out paced over a few seconds
while a seeded RNG picks when each worker dies: every worker is killed at a random moment of its working
life and a fresh one started at once, a few times over; then the last one is left to finish. Whatever
was in flight on a killed worker (workflow tasks, the execute activity mid-send, notifications, audit
writes) is retried after its timeout (the execute activity's heartbeat timeout is 20 s, the others'
start-to-close 30 s), so the test takes about a minute.

Afterwards: every lifecycle is ACTION_EXECUTED with exactly one approval and one execution in its audit,
the sink received each approved email once (one SMTP delivery per Message-ID, and the Message-ID is
the one the workflow's result names), and the execution ledger holds exactly one SUCCEEDED row per
workflow. The one exception SMTP forces: a worker killed between the server's 250 and the outbox's
sent mark resends that message, same Message-ID; a second copy is accepted only for an execution the
ledger shows was cut off, never a third copy, never a lost message.
"""

import asyncio
import random
import signal
import uuid
from collections import Counter
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHandle

from countersign.models.enums import WorkflowState
from countersign.models.tools import LedgerStatus
from countersign.models.views import WorkflowView
from countersign.stack.mail_sink import MailSink, deliveries
from countersign.workflows.approval import ApprovalWorkflow
from tests.chaos.support import (
    FOLLOW_UP,
    RECIPIENT,
    WorkerProcess,
    approve_durably,
    exactly_once,
    ledger_entries,
    worker_env,
)
from tests.helpers import MANAGER, eventually, start

SEED = 8
LIFECYCLES = 200
KILLS = 3
# The approvals go out one every APPROVAL_PACE seconds, so they span the kills.
APPROVAL_PACE = 0.12
# Each worker is killed KILL_WINDOW seconds (drawn) after it was seen sending an email, or after
# PROGRESS_TIMEOUT if it never was. A fresh worker takes over the dead one's workflows once their
# sticky workflow tasks time out (10 s), so a worker's life is about that long.
KILL_WINDOW = (0.0, 1.5)
PROGRESS_TIMEOUT = 15


Handle = WorkflowHandle[ApprovalWorkflow, WorkflowView]


async def _sending(sink_dir: Path, timeout: float) -> None:
    """Until the sink receives another email, or `timeout` passes."""
    loop = asyncio.get_running_loop()
    deadline, before = loop.time() + timeout, len(deliveries(sink_dir))
    while len(await asyncio.to_thread(deliveries, sink_dir)) == before and loop.time() < deadline:
        await asyncio.sleep(0.1)


async def _waiting(client: Client, task_queue: str) -> int:
    query = f'TaskQueue="{task_queue}" AND CountersignState="{WorkflowState.WAITING_FOR_APPROVAL}"'
    return (await client.count_workflows(query)).count


@pytest.mark.slow
async def test_sigkilled_workers_lose_nothing_and_send_every_email_once(
    client: Client, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    task_queue = f"chaos-kill-{uuid.uuid4().hex[:8]}"
    data_dir, logs = tmp_path / "data", tmp_path / "logs"
    logs.mkdir()
    address = client.service_client.config.target_host
    with MailSink(tmp_path / "sink") as sink:
        env = worker_env(address, task_queue, data_dir, sink.port)
        lives = 0

        def fresh_worker() -> WorkerProcess:
            nonlocal lives
            lives += 1
            return WorkerProcess(["-m", "countersign", "worker"], env, logs / f"worker-{lives}.log")

        worker = fresh_worker()
        approvals: list[asyncio.Task[None]] = []
        try:
            limit = asyncio.Semaphore(50)

            async def submit() -> Handle:
                async with limit:
                    return await start(client, task_queue, FOLLOW_UP)

            handles = await asyncio.gather(*(submit() for _ in range(LIFECYCLES)))
            await eventually(lambda: _waiting(client, task_queue), lambda n: n == LIFECYCLES, timeout=120)

            async def approve_later(handle: Handle, delay: float) -> None:
                await asyncio.sleep(delay)
                await approve_durably(handle, MANAGER)

            order = rng.sample(list(handles), len(handles))
            approvals += [
                asyncio.create_task(approve_later(h, i * APPROVAL_PACE)) for i, h in enumerate(order)
            ]
            exit_codes = []
            for _ in range(KILLS):
                # Killed at a random moment once it is sending emails (or, failing that, after a while).
                await _sending(tmp_path / "sink", PROGRESS_TIMEOUT)
                await asyncio.sleep(rng.uniform(*KILL_WINDOW))
                exit_codes.append(worker.kill())
                worker = fresh_worker()
            delivered_during_kills = len(deliveries(tmp_path / "sink"))
            # The last worker runs undisturbed: everything killed mid-flight is retried after its timeout.
            await asyncio.wait_for(asyncio.gather(*approvals), timeout=120)
            views = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=150)
        finally:
            worker.stop()
            for task in approvals:
                task.cancel()
        sent = deliveries(tmp_path / "sink")

    assert exit_codes == [-signal.SIGKILL] * KILLS
    # The kills hit a working system, not an idle one: some emails went out before the last worker.
    assert delivered_during_kills > 0

    by_id = {v.workflow_id: v for v in views}
    assert len(by_id) == LIFECYCLES
    not_executed = {wid: v.state for wid, v in by_id.items() if v.state != WorkflowState.ACTION_EXECUTED}
    assert not not_executed
    expected = {}
    for wid, view in by_id.items():
        assert view.result is not None and view.result.tool == "send_email"
        assert view.result.idempotency_key == f"{wid}:v1"
        events = Counter(e.event for e in view.audit)
        assert (events["decision_approved"], events["action_executed"]) == (1, 1), (wid, events)
        expected[wid] = view.result.result["message_id"]
    assert len(set(expected.values())) == LIFECYCLES

    # The ledger agrees: one SUCCEEDED row per workflow, under the workflow's key.
    entries = await ledger_entries(data_dir)
    attempts = {e.workflow_id: e.attempts for e in entries}

    # Once at the SMTP server, to its recipient, nothing lost, nothing stray. SMTP has no idempotency:
    # a worker killed after the server's 250 and before the outbox's sent mark (one small UPDATE, see
    # store/outbox.py) sends that message again, under the same Message-ID. So a second copy
    # is allowed only for an execution a kill cut off (retried in the ledger), never a third.
    copies = Counter(d["message_id"] for d in sent)
    resent = {wid for wid, mid in expected.items() if copies[mid] == 2 and attempts.get(wid, 0) > 1}
    allowed = sorted(f"{wid}: {expected[wid]} delivered 2 times" for wid in resent)
    assert sorted(exactly_once(sent, expected)) == allowed
    assert len(sent) == LIFECYCLES + len(resent) and all(d["to"] == [RECIPIENT] for d in sent)
    if resent:
        print(f"sent twice after a kill between the SMTP server's 250 and the sent mark: {sorted(resent)}")
    assert sorted(e.workflow_id for e in entries) == sorted(by_id)
    assert all(e.status == LedgerStatus.SUCCEEDED and e.tool == "send_email" for e in entries)
    assert {e.idempotency_key for e in entries} == {f"{wid}:v1" for wid in by_id}
    # The kills reached the action itself: some executions were cut off and ran again under their key.
    retried = sorted(e.attempts for e in entries if e.attempts > 1)
    assert retried
    print(
        f"{KILLS} kills, {delivered_during_kills} emails sent before the last worker, "
        f"executions retried after a kill: {len(retried)} {retried}"
    )


def test_the_exactly_once_check_catches_a_duplicate_a_loss_and_a_stray() -> None:
    expected = {"wf-1": "<a@x>", "wf-2": "<b@x>"}
    one = {"message_id": "<a@x>", "to": [RECIPIENT]}
    two = {"message_id": "<b@x>", "to": [RECIPIENT]}
    assert exactly_once([one, two], expected) == []
    assert exactly_once([one, two, two], expected) == ["wf-2: <b@x> delivered 2 times"]
    assert exactly_once([one], expected) == ["wf-2: <b@x> delivered 0 times"]
    stray = {"message_id": "<c@x>", "to": [RECIPIENT]}
    assert exactly_once([one, two, stray], expected) == ["unexpected message <c@x> delivered 1 times"]
    assert exactly_once([one, {**two, "to": ["x@y.z"]}], expected) == ["<b@x> went to ['x@y.z']"]

"""Chaos: the Temporal dev server stopped and started again on the same SQLite file, with 100 workflows
waiting for approval.

The server is started the way `countersign up` starts it
(`countersign.stack.dev_server.dev_server_args`: its own
`--db-filename`, our search attributes registered), on fixed free ports; the worker is a real
`countersign worker` process. With all 100 waiting, the server gets SIGTERM under the live worker and
must exit; the worker is stopped too. On the same file, a new server and then a new worker: before the
worker is back, the server alone still knows all 100 as running and waiting (describe, visibility); with
it, each answers its query as waiting, takes its approval and sends its email exactly once. Nothing is
duplicated: 100 executions in visibility, each the run that was started, one ledger row each.
"""

import asyncio
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from countersign.config.settings import Settings
from countersign.config.temporal import connect, ensure_search_attributes
from countersign.models import search_attributes as sa
from countersign.models.decisions import DecideInput
from countersign.models.enums import Decision, WorkflowState
from countersign.models.tools import LedgerStatus
from countersign.models.views import WorkflowView
from countersign.security.gateway_signing import GatewaySigning
from countersign.stack.dev_server import dev_server_args
from countersign.stack.mail_sink import MailSink, deliveries
from countersign.workflows.approval import ApprovalWorkflow
from tests.chaos.support import FOLLOW_UP, WorkerProcess, exactly_once, free_port, ledger_entries, worker_env
from tests.helpers import MANAGER, SIGNER, eventually, start

WORKFLOWS = 100
READY_TIMEOUT = 60


class DevServer:
    """`temporal server start-dev` as `countersign up` runs it, on a data dir's temporal.db."""

    def __init__(self, data_dir: Path, port: int, ui_port: int) -> None:
        self.settings = Settings(data_dir=data_dir, temporal_port=port, ui_port=ui_port)
        self.args = dev_server_args(self.settings)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return self.settings.resolved_temporal_address

    async def start(self) -> Client:
        self.starts += 1
        with (self.settings.data_dir / f"temporal-{self.starts}.log").open("wb") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
        while True:
            assert self.process.poll() is None, f"the dev server exited with {self.process.returncode}"
            try:
                # Standing in for the gateway: it signs what it sends.
                client = await connect(self.address, interceptors=[GatewaySigning(SIGNER)])
                await ensure_search_attributes(client, "default")
                return client
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.3)

    def terminate(self) -> int:
        """SIGTERM, and wait until it has exited."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DevServer]:
    data_dir = tmp_path / "temporal"
    data_dir.mkdir()
    running = DevServer(data_dir, free_port(), free_port())
    yield running
    running.kill()


async def _count(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count


@pytest.mark.slow
async def test_waiting_workflows_survive_a_server_restart_and_run_once(
    server: DevServer, tmp_path: Path
) -> None:
    assert "--db-filename" in server.args and str(server.settings.data_dir / "temporal.db") in server.args
    task_queue = f"chaos-restart-{uuid.uuid4().hex[:8]}"
    data_dir = tmp_path / "data"
    in_queue = f'TaskQueue="{task_queue}"'
    waiting = f'{in_queue} AND {sa.STATE.name}="{WorkflowState.WAITING_FOR_APPROVAL}"'
    with MailSink(tmp_path / "sink") as sink:
        env = worker_env(server.address, task_queue, data_dir, sink.port)
        client = await server.start()
        worker = WorkerProcess(["-m", "countersign", "worker"], env, tmp_path / "worker-1.log")
        try:
            limit = asyncio.Semaphore(25)

            async def submit() -> WorkflowHandle[ApprovalWorkflow, WorkflowView]:
                async with limit:
                    return await start(client, task_queue, FOLLOW_UP)

            handles = await asyncio.gather(*(submit() for _ in range(WORKFLOWS)))
            runs = {h.id: h.first_execution_run_id for h in handles}
            assert len(runs) == WORKFLOWS and all(runs.values())
            await eventually(lambda: _count(client, waiting), lambda n: n == WORKFLOWS, timeout=120)

            # The server goes down under a live worker, and must exit on SIGTERM; then the worker goes.
            server.terminate()
            worker.stop()
        finally:
            worker.stop()
        assert server.process is not None and server.process.poll() is not None

        client = await server.start()
        # The server alone (no worker yet) still holds every one of them, running and waiting.
        assert await _count(client, in_queue) == WORKFLOWS
        await eventually(lambda: _count(client, waiting), lambda n: n == WORKFLOWS, timeout=30)
        handles = [client.get_workflow_handle_for(ApprovalWorkflow.run, wid) for wid in runs]
        for handle in handles:
            description = await handle.describe()
            assert description.status == WorkflowExecutionStatus.RUNNING
            assert description.run_id == runs[handle.id]
            assert description.typed_search_attributes.get(sa.STATE) == WorkflowState.WAITING_FOR_APPROVAL

        worker = WorkerProcess(["-m", "countersign", "worker"], env, tmp_path / "worker-2.log")
        try:
            for handle in handles:
                view = await handle.query(ApprovalWorkflow.view)
                assert view.state == WorkflowState.WAITING_FOR_APPROVAL and view.current_step == 0

            approve = DecideInput(reviewer=MANAGER, decision=Decision.APPROVED, proposal_version=1)
            decided = await asyncio.gather(
                *(h.execute_update(ApprovalWorkflow.decide, approve) for h in handles)
            )
            results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=120)
        finally:
            worker.stop()
        sent = deliveries(tmp_path / "sink")

    assert all(v.state == WorkflowState.APPROVED for v in decided)  # answered once applied
    assert all(v.state == WorkflowState.ACTION_EXECUTED and v.result is not None for v in results)
    expected = {v.workflow_id: v.result.result["message_id"] for v in results if v.result is not None}
    assert len(expected) == WORKFLOWS
    assert exactly_once(sent, expected) == []

    entries = await ledger_entries(data_dir)
    assert sorted(e.workflow_id for e in entries) == sorted(runs)
    assert all(e.status == LedgerStatus.SUCCEEDED and e.attempts == 1 for e in entries)

    # None duplicated: exactly the 100 executions that were started, each one run, now completed.
    async def listed() -> list[tuple[str, str, WorkflowExecutionStatus | None]]:
        return sorted([(w.id, w.run_id, w.status) async for w in client.list_workflows(in_queue)])

    completed = sorted((wid, run, WorkflowExecutionStatus.COMPLETED) for wid, run in runs.items())
    await eventually(listed, lambda found: found == completed, timeout=30)
    assert await _count(client, in_queue) == WORKFLOWS

"""What the chaos tests share: real worker processes, an approval that survives a dead worker, and the
checks that an approved action happened exactly once (in the SMTP sink, the execution ledger, the audit)."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle, WorkflowUpdateRPCTimeoutOrCancelledError, WorkflowUpdateStage
from temporalio.service import RPCError

from countersign.models.decisions import DecideInput
from countersign.models.enums import Decision
from countersign.models.principals import Principal
from countersign.models.tools import LedgerEntry
from countersign.models.views import WorkflowView
from countersign.store.execution_ledger import ExecutionLedger
from countersign.store.sql import default_url
from countersign.workflows.approval import ApprovalWorkflow
from tests.helpers import KEY_ENVIRONMENT

FOLLOW_UP = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"
RECIPIENT = "sales@abclogistics.com"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class WorkerProcess:
    """`python -m <args>` as a child process, its output in `log`."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, *args], env=dict(env), stdout=self._out, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> int:
        """SIGKILL (no shutdown, no goodbye to the server); returns the exit code."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        code = self.process.wait(timeout=10)
        self._out.close()
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._out.close()


def worker_env(address: str, task_queue: str, data_dir: Path, smtp_port: int) -> dict[str, str]:
    """`countersign worker` configured from the environment alone, emailing through the sink."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTERSIGN_")}
    env.update(KEY_ENVIRONMENT)  # the session's gateway and audit keys (tests/helpers.py)
    env.update(
        COUNTERSIGN_TEMPORAL_ADDRESS=address,
        COUNTERSIGN_TASK_QUEUE=task_queue,
        COUNTERSIGN_DATA_DIR=str(data_dir),
        COUNTERSIGN_LLM="rules",
        COUNTERSIGN_SMTP_HOST="127.0.0.1",
        COUNTERSIGN_SMTP_PORT=str(smtp_port),
    )
    return env


async def approve_durably(
    handle: WorkflowHandle[ApprovalWorkflow, WorkflowView], reviewer: Principal, *, within: float = 90
) -> None:
    """The `decide` update, retried under one update id until the server holds it (accepted), whatever
    happens to the worker meanwhile; a refusal raises WorkflowUpdateFailedError from `result()` later."""
    loop = asyncio.get_running_loop()
    deadline, last = loop.time() + within, None
    while loop.time() < deadline:
        try:
            await handle.start_update(
                ApprovalWorkflow.decide,
                DecideInput(reviewer=reviewer, decision=Decision.APPROVED, notes="chaos", proposal_version=1),
                id=f"approve-{handle.id}",
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                rpc_timeout=timedelta(seconds=10),
            )
            return
        except (WorkflowUpdateRPCTimeoutOrCancelledError, RPCError) as error:
            last = error
            await asyncio.sleep(0.5)
    detail = f"{type(last).__name__}: {last} ({getattr(last, 'status', None)!r})"
    raise AssertionError(f"{handle.id}: the approval was not accepted within {within}s; last: {detail}")


def exactly_once(deliveries: Iterable[Mapping[str, Any]], expected: Mapping[str, str]) -> list[str]:
    """What is wrong with the sink's `deliveries` (one per SMTP transaction) against `expected`,
    workflow id -> Message-ID: every expected message delivered once, to the recipient, nothing else."""
    deliveries = list(deliveries)
    delivered = Counter(d["message_id"] for d in deliveries)
    wanted = set(expected.values())
    problems = [
        f"{wid}: {mid} delivered {delivered[mid]} times"
        for wid, mid in expected.items()
        if delivered[mid] != 1
    ]
    problems += [
        f"unexpected message {mid} delivered {n} times" for mid, n in delivered.items() if mid not in wanted
    ]
    problems += [f"{d['message_id']} went to {d['to']}" for d in deliveries if d["to"] != [RECIPIENT]]
    return problems


async def ledger_entries(data_dir: Path) -> list[LedgerEntry]:
    async with await ExecutionLedger.open(default_url(data_dir)) as ledger:
        return await ledger.entries(limit=100_000)

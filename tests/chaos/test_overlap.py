"""Chaos: an attempt frozen mid-action wakes beside the retry that replaced it, and the action still
happens once.

A real worker process (`tests.crash_worker`) pauses where exactly once is most fragile: the tool has
looked ("not sent yet", "not posted yet") and is about to act (the "before_effect" checkpoint, run
just before the attempt's last look at its lease). The test freezes it there with SIGSTOP, waits past
the execute activity's heartbeat timeout, and starts a fresh `countersign worker`: Temporal retries the
action there, and the retry takes the key once the frozen attempt's lease has expired, acts, and
records the result. Only after the workflow ended ACTION_EXECUTED is the frozen worker thawed (SIGCONT)
and let go on: it finds its fence stale and neither acts nor records. The SMTP sink receives the email
once, the webhook receiver one call, and the ledger holds one result under the retry's fence.

Two actions at once, each with its own workers, so the test waits out one heartbeat timeout, not two:
an email (planned by the rules planner) and a webhook post (planned through a fake model endpoint).
It takes about a minute and a half: the heartbeat timeout, a worker's start, and workflow tasks that
the frozen worker's open polls took and held until they timed out (10 s each).
"""

import asyncio
import os
import re
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from temporalio.client import Client

from countersign.models.decisions import DecideInput
from countersign.models.enums import Decision, WorkflowState
from countersign.models.tools import LedgerEntry, LedgerStatus
from countersign.models.views import WorkflowView
from countersign.stack.mail_sink import MailSink, deliveries
from countersign.workflows.approval import EXECUTE_HEARTBEAT_TIMEOUT, ApprovalWorkflow
from tests.chaos.support import FOLLOW_UP, RECIPIENT, WorkerProcess, ledger_entries, worker_env
from tests.fake_llm import FakeLLM, follow_up_plan, openai_answer
from tests.helpers import MANAGER, eventually, start

# Past the heartbeat timeout, so Temporal has given up on the frozen attempt when the retry's worker
# starts: the retry can only go there (the frozen worker holds no activity poll, see crash_worker).
FROZEN_BEFORE_RETRY = EXECUTE_HEARTBEAT_TIMEOUT + timedelta(seconds=3)
# After SIGCONT, before the paused checkpoint may go on: time for the woken worker to heartbeat and
# renew (Temporal's cancellation and the lost lease both arrive), so that what it does next does not
# depend on which arrives first.
THAWED_BEFORE_RESUME = timedelta(seconds=3)
# How long a worker process may take to start and do its part, on a machine busy with other work.
STARTUP = timedelta(seconds=120)
# How long the woken attempt gets to act, if it were going to (its effect takes milliseconds).
GRACE = timedelta(seconds=3)
HOOK_PATH = "/hooks/ops"
ANNOUNCE = "Tell the ops channel that the VPN maintenance is over"
# Logged by the woken attempt when its last look (or, were that look gone, its recording) refused it.
FENCED_OUT = re.compile(r"lease on .* under fence 1 is lost: .*; leaving the key to that attempt")


class Receiver:
    """A webhook receiver on a free local port that counts the posts it gets."""

    def __init__(self) -> None:
        self.posts: list[dict[str, str]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(length)
                received.append({"path": self.path, "key": self.headers.get("Idempotency-Key", "")})
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@dataclass
class Overlap:
    view: WorkflowView
    entry: LedgerEntry
    effects_before_thaw: int
    frozen_log: str
    retry_log: str
    seconds: dict[str, float]


async def overlap(
    client: Client,
    work: Path,
    env: dict[str, str],
    text: str,
    effects: Callable[[], int],
) -> Overlap:
    """Approve `text`'s action, freeze its worker before the effect, let a fresh worker retry it, and
    thaw the frozen one once the workflow ended; what came of it."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    seconds: dict[str, float] = {}
    marker, resume = work / "paused", work / "resume"
    frozen = WorkerProcess(
        ["-m", "tests.crash_worker", "before_effect", str(marker), str(resume)], env, work / "frozen.log"
    )
    retry: WorkerProcess | None = None
    try:
        handle = await start(client, env["COUNTERSIGN_TASK_QUEUE"], text)
        # Generous: a worker process takes seconds to start on a busy machine, and this one plans too.
        await eventually(
            lambda: handle.query(ApprovalWorkflow.view),
            lambda v: v.state == WorkflowState.WAITING_FOR_APPROVAL,
            timeout=STARTUP.total_seconds(),
        )
        await handle.signal(
            ApprovalWorkflow.decision,
            DecideInput(reviewer=MANAGER, decision=Decision.APPROVED, proposal_version=1),
        )
        # Paused after the tool's own look ("not done yet"), before the lease's last look and the effect.
        await eventually(lambda: asyncio.to_thread(marker.exists), bool, timeout=STARTUP.total_seconds())
        assert effects() == 0
        seconds["paused"] = loop.time() - began
        os.kill(frozen.pid, signal.SIGSTOP)
        await asyncio.sleep(FROZEN_BEFORE_RETRY.total_seconds())

        retry = WorkerProcess(["-m", "countersign", "worker"], env, work / "retry.log")
        view = await asyncio.wait_for(
            handle.result(), timeout=(STARTUP + FROZEN_BEFORE_RETRY).total_seconds()
        )
        seconds["executed"] = loop.time() - began
        effects_before_thaw = effects()

        os.kill(frozen.pid, signal.SIGCONT)
        await asyncio.sleep(THAWED_BEFORE_RESUME.total_seconds())
        resume.touch()
        await eventually(lambda: asyncio.to_thread(marker.read_text), lambda t: "resumed" in t, timeout=30)
        # The woken attempt goes on to its last look, finds its fence stale, and says so.
        await eventually(
            lambda: asyncio.to_thread((work / "frozen.log").read_text),
            lambda t: FENCED_OUT.search(t) is not None,
            timeout=30,
        )
        await asyncio.sleep(GRACE.total_seconds())
        seconds["thawed and done"] = loop.time() - began
    finally:
        if retry is not None:
            retry.stop()
        if frozen.process.poll() is None:
            os.kill(frozen.pid, signal.SIGCONT)  # a stopped process does not act on SIGTERM
        frozen.stop()
    entries = await ledger_entries(Path(env["COUNTERSIGN_DATA_DIR"]))
    assert view.result is not None
    [entry] = [e for e in entries if e.idempotency_key == view.result.idempotency_key]
    return Overlap(
        view,
        entry,
        effects_before_thaw,
        (work / "frozen.log").read_text(),
        (work / "retry.log").read_text(),
        seconds,
    )


def webhook_plan(url: str) -> dict[str, object]:
    return follow_up_plan(
        fields={**follow_up_plan()["fields"], "counterparty": None, "email": None, "topic": "VPN"},
        summary="Riley wants the ops channel told that the VPN maintenance is over.",
        rationale="The text asks for a message to the ops channel, whose webhook is allowed.",
        action={
            "tool": "post_webhook",
            "args": {"url": url, "text": "The VPN maintenance is over.", "blocks": None},
        },
    )


@pytest.mark.slow
async def test_an_attempt_frozen_before_its_effect_wakes_beside_its_retry_and_acts_not(
    client: Client, fake_llm: FakeLLM, receiver: Receiver, tmp_path: Path
) -> None:
    address = client.service_client.config.target_host
    with MailSink(tmp_path / "sink") as sink:
        email_env = worker_env(address, f"overlap-mail-{uuid.uuid4().hex[:8]}", tmp_path / "mail", sink.port)
        hook_env = worker_env(address, f"overlap-hook-{uuid.uuid4().hex[:8]}", tmp_path / "hook", sink.port)
        hook_url = f"{receiver.url}{HOOK_PATH}"
        fake_llm.script(openai_answer(webhook_plan(hook_url)))
        hook_env.update(
            {
                "COUNTERSIGN_LLM": "openai:gpt-4.1-mini",
                "COUNTERSIGN_LLM_MAX_REPAIRS": "0",
                "COUNTERSIGN_WEBHOOK_ALLOWED_URLS": f"{receiver.url}/hooks/",
                **fake_llm.vendor_env("sk-test-overlap", "sk-test-unused"),
            }
        )
        for work in (tmp_path / "mail-work", tmp_path / "hook-work"):
            work.mkdir()

        def emails() -> int:
            return len(deliveries(tmp_path / "sink"))

        def posts() -> int:
            return len(receiver.posts)

        mail, hook = await asyncio.gather(
            overlap(client, tmp_path / "mail-work", email_env, FOLLOW_UP, emails),
            overlap(client, tmp_path / "hook-work", hook_env, ANNOUNCE, posts),
        )
        delivered = deliveries(tmp_path / "sink")

    print("timings (s):", {"email": mail.seconds, "webhook": hook.seconds})
    # Once each, though two attempts each got past the tool's own "already done?" with nothing done.
    assert (len(delivered), len(receiver.posts)) == (1, 1)
    assert (mail.effects_before_thaw, hook.effects_before_thaw) == (1, 1)
    for done in (mail, hook):
        assert done.view.state == WorkflowState.ACTION_EXECUTED
        assert done.view.result is not None and done.view.result.replayed is False
        # One result, recorded by the retry, which took the key over from the frozen attempt.
        assert done.entry.status == LedgerStatus.SUCCEEDED and done.entry.result == done.view.result.result
        assert (done.entry.attempts, done.entry.fence) == (2, 2)
        assert done.entry.lease_owner is None and done.entry.error is None
        # The woken attempt went on past its pause (Temporal's cancellation ignored) and was fenced out.
        assert FENCED_OUT.search(done.frozen_log) is not None
        assert "attempt 2 (fence 2)" in done.retry_log
    assert mail.view.result is not None and hook.view.result is not None
    assert [d["to"] for d in delivered] == [[RECIPIENT]]
    assert delivered[0]["message_id"] == mail.view.result.result["message_id"]
    assert receiver.posts == [{"path": HOOK_PATH, "key": hook.view.result.idempotency_key}]

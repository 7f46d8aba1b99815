"""`countersign worker` with a fault injected: it pauses at an execution checkpoint, after writing a
marker file, so a test can SIGKILL it there, or freeze it (SIGSTOP) and let it go on later. Configured
like the real worker, from COUNTERSIGN_* variables.

    python -m tests.crash_worker CHECKPOINT MARKER_FILE [RESUME_FILE]

Without RESUME_FILE the pause lasts for ever (until the test kills the process). With it, the pause
ends once RESUME_FILE exists, and the worker then goes on as if it had never stopped:

- Temporal's cancellation is ignored while paused. A frozen attempt that wakes after Temporal gave up
  on it usually hears so within milliseconds (the server answers its next heartbeat "not found"), but
  not always before it acts: heartbeats are throttled, and the link to Temporal may be what failed.
  Ignoring it makes the test judge the execution ledger's fencing alone, not the luck of that race.
- The worker takes one activity at a time. A frozen process's long polls stay open on the server, and
  a task the server hands to one is stuck there until it times out: with its only activity slot held
  by the paused attempt, this worker has no activity poll open, so Temporal's retry of that attempt
  goes to another worker.
"""

import asyncio
import functools
import sys
from pathlib import Path

from countersign import worker
from countersign.config.settings import Settings
from countersign.models.tools import ToolCall
from countersign.worker import run_worker

RESUME_POLL_SECONDS = 0.1


def main() -> None:
    where, marker = sys.argv[1], Path(sys.argv[2])
    resume = Path(sys.argv[3]) if len(sys.argv) > 3 else None

    async def pause(checkpoint: str, call: ToolCall) -> None:
        if checkpoint != where:
            return
        marker.write_text(f"{checkpoint} {call.idempotency_key}\n")
        if resume is None:
            await asyncio.Event().wait()  # until the test kills the process
            return
        ignored = 0
        while not resume.exists():
            try:
                await asyncio.sleep(RESUME_POLL_SECONDS)
            except asyncio.CancelledError:
                ignored += 1
        task = asyncio.current_task()
        assert task is not None
        for _ in range(ignored):
            task.uncancel()
        with marker.open("a") as out:
            out.write(f"resumed, {ignored} cancellation(s) ignored\n")

    if resume is not None:
        worker.Worker = functools.partial(  # type: ignore[misc]
            worker.Worker, max_concurrent_activities=1
        )
    asyncio.run(run_worker(Settings(), execution_checkpoint=pause))


if __name__ == "__main__":
    main()

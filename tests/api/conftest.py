import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.worker import Worker

from countersign.api.main import attach, create_app, detach
from countersign.config.settings import Settings
from countersign.models.enums import Role
from tests.helpers import eventually


@dataclass
class Api:
    http: httpx.AsyncClient
    keys: dict[str, str]
    app: FastAPI

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}


@pytest.fixture
async def api(client: Client, task_queue: str, tmp_path: Path, worker: Worker) -> AsyncIterator[Api]:
    """The real app over ASGI, against the real dev server and a real worker on this test's queue."""
    # The authorization matrix alone sends dozens of bad credentials a minute, all from one address: the
    # limiter on failed authentications (tests/api/test_auth_limits.py) would answer them 429.
    settings = Settings(data_dir=tmp_path, task_queue=task_queue, auth_failures_per_minute=10_000)
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    store = app.state.principals
    people = {
        "requester": ([], "default"),
        "manager": ([Role.MANAGER], "default"),
        "manager2": ([Role.MANAGER], "default"),
        "finance": ([Role.FINANCE], "default"),
        "director": ([Role.DIRECTOR], "default"),
        "globex_manager": ([Role.MANAGER], "globex"),
        "admin": ([Role.ADMIN], "default"),
        "auditor": ([Role.AUDITOR], "default"),
    }
    keys = {name: (await store.add(name, roles, tenant)).api_key for name, (roles, tenant) in people.items()}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://countersign.test") as http:
        yield Api(http=http, keys=keys, app=app)
    await detach(app)


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """`app` on a real socket (uvicorn), for WebSockets and browsers: `127.0.0.1:<port>`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: asyncio.sleep(0, server.started), bool)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture
async def served(api: Api) -> AsyncIterator[str]:
    """The same app on a real socket, for WebSockets and browsers."""
    async with serving(api.app) as address:
        yield address


ANY_OF_POLICY = """\
version: any-of-1
rules:
  - name: two of three
    when: "true"
    steps: [{any_of: [FINANCE, DIRECTOR, ADMIN], quorum: 2}]
"""


@pytest.fixture
async def several(client: Client, task_queue: str, tmp_path: Path, worker: object) -> AsyncIterator[Api]:
    """The gateway with ANY_OF_POLICY, and people of a tenant of their own (an inbox lists the whole
    tenant's requests, and the dev server is shared by the suite)."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(ANY_OF_POLICY, encoding="utf-8")
    settings = Settings(data_dir=tmp_path, task_queue=task_queue, policy_file=policy)
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    tenant = f"anyof-{uuid.uuid4().hex[:8]}"
    people = {
        "requester": [],
        "finance": [Role.FINANCE],
        "director": [Role.DIRECTOR],
        "admin": [Role.ADMIN],
        "manager": [Role.MANAGER],
    }
    keys = {
        name: (await app.state.principals.add(name, roles, tenant)).api_key for name, roles in people.items()
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        yield Api(http=http, keys=keys, app=app)
    await detach(app)

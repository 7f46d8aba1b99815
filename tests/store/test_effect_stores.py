"""The outbox, the tool records, the notification log and the delivery marks on SQLite and PostgreSQL,
as workers on two hosts use them: each its own connections to the one database. One row per key,
whoever writes it at once; a mark or a record made by one worker is what another finds."""

import asyncio
import re
from collections.abc import AsyncIterator
from email.message import EmailMessage

import pytest

from countersign.models.notifications import Notification, NotificationKind
from countersign.models.principals import Recipient
from countersign.store.delivery_marks import DeliveryMarks
from countersign.store.notification_log import NotificationLog
from countersign.store.outbox import OutboxStore
from countersign.store.tool_records import ToolRecordStore
from countersign.tools.effects import ARGS_DIGEST_HEADER, IDEMPOTENCY_HEADER
from tests.conftest import Location

KEY = "req-default-abc:v1"


@pytest.fixture
async def two_outboxes(location: Location) -> AsyncIterator[tuple[OutboxStore, OutboxStore]]:
    first = await OutboxStore.open(location.url, schema=location.schema)
    second = await OutboxStore.open(location.url, schema=location.schema)
    yield first, second
    await first.close()
    await second.close()


def message(body: str = "Hello.\n", digest: str | None = "d1", key: str = KEY) -> EmailMessage:
    made = EmailMessage()
    made["To"] = "pat@example.com"
    made["Subject"] = "Hi"
    made["Message-ID"] = "<m1@countersign.localhost>"
    made[IDEMPOTENCY_HEADER] = key
    if digest is not None:
        made[ARGS_DIGEST_HEADER] = digest
    made.set_content(body)
    return made


async def test_one_message_stands_per_key_whoever_keeps_it_at_once(
    two_outboxes: tuple[OutboxStore, OutboxStore],
) -> None:
    first, second = two_outboxes
    # Different bodies, the same args digest: the retry of a message whose Date (or links) changed.
    kept = await asyncio.gather(
        *(store.keep(KEY, message(f"attempt {n}\n")) for n in range(6) for store in (first, second))
    )
    assert sum(not k.replayed for k in kept) == 1
    [stored] = await second.messages()
    winner = [n for n in range(6) if f"attempt {n}" in stored.text]
    assert len(winner) == 1
    # Every attempt reads back the one that stands: it is what each of them would send.
    for store in (first, second):
        found = await store.message(KEY)
        assert found is not None and found.get_content().strip() == f"attempt {winner[0]}"


async def test_a_key_kept_with_other_args_is_refused(two_outboxes: tuple[OutboxStore, OutboxStore]) -> None:
    first, second = two_outboxes
    await first.keep(KEY, message())
    with pytest.raises(ValueError, match=re.escape(KEY)):
        await second.keep(KEY, message(digest="d2"))
    with pytest.raises(ValueError, match=re.escape(KEY)):
        await second.keep(KEY, message(digest=None))
    assert len(await first.messages()) == 1


async def test_a_mark_made_by_one_worker_is_found_by_the_other(
    two_outboxes: tuple[OutboxStore, OutboxStore],
) -> None:
    first, second = two_outboxes
    assert await first.message(KEY) is None and not await first.was_sent(KEY)
    await first.keep(KEY, message(digest=None))
    assert not await second.was_sent(KEY)
    await first.mark_sent(KEY)
    assert await second.was_sent(KEY)
    [stored] = await second.messages()
    sent_at = stored.sent_at
    assert sent_at is not None
    await second.mark_sent(KEY)  # marking again keeps the first moment
    assert (await second.messages())[0].sent_at == sent_at
    assert not await second.was_sent("another:v1")


async def test_the_stored_bytes_are_the_message_as_kept(location: Location) -> None:
    long_key = "req-default-" + "ab/c:" * 37
    async with await OutboxStore.open(location.url, schema=location.schema) as store:
        original = message(key=long_key, body="Grüße — 你好\n")
        await store.keep(long_key, original)
        [stored] = await store.messages()
        assert stored.raw == original.as_bytes() and stored.key == long_key
        read = await store.message(long_key)
        assert read is not None and read[IDEMPOTENCY_HEADER] == long_key
        assert read.get_content() == "Grüße — 你好\n"


async def test_one_record_stands_per_key_across_workers(location: Location) -> None:
    first = await ToolRecordStore.open(location.url, schema=location.schema)
    second = await ToolRecordStore.open(location.url, schema=location.schema)
    try:
        args = '{"title":"x"}'
        stored = await asyncio.gather(
            *(
                store.insert(tool="create_task", key=KEY, record_id="TASK-1", args_json=args)
                for _ in range(5)
                for store in (first, second)
            )
        )
        assert sum(not s.replayed for s in stored) == 1
        assert await second.find(tool="create_task", key=KEY, args_json=args) == "TASK-1"
        assert await second.find(tool="create_task", key="other", args_json=args) is None
        with pytest.raises(ValueError, match="different args"):
            await second.find(tool="create_task", key=KEY, args_json='{"title":"y"}')
        with pytest.raises(ValueError, match="different tool"):
            await first.insert(tool="record_leave", key=KEY, record_id="LEAVE-1", args_json=args)
        [listed] = await first.records()
        assert (listed["tool"], listed["record_id"], listed["args"]) == (
            "create_task",
            "TASK-1",
            {"title": "x"},
        )
    finally:
        await first.close()
        await second.close()


def note(n: int, workflow_id: str = "req-1") -> Notification:
    return Notification(
        key=f"{workflow_id}:n{n}",
        workflow_id=workflow_id,
        tenant="default",
        kind=NotificationKind.PENDING,
        subject=f"Approval needed [{workflow_id}]",
        body="Step 1 of 1 waits for MANAGER.",
    )


ANN = Recipient(id="p-ann", name="Ann", email="ann@corp.example", tenant="default")
BOB = Recipient(id="p-bob", name="Bob", email=None, tenant="default")


async def test_the_notification_log_keeps_the_first_record_of_a_key(location: Location) -> None:
    first = await NotificationLog.open(location.url, schema=location.schema)
    second = await NotificationLog.open(location.url, schema=location.schema)
    try:
        kept = await asyncio.gather(*(log.record(note(1), [ANN, BOB]) for log in (first, second) * 3))
        assert sum(kept) == 1
        # A retry that finds more recipients adds nothing: the first record stands.
        assert not await second.record(note(1), [ANN])
        assert await first.record(note(2), [ANN])
        assert await first.record(note(1, "req-2"), [BOB])
        records = await second.records()
        assert [r["key"] for r in records] == ["req-1:n1", "req-1:n2", "req-2:n1"]
        assert records[0]["recipients"] == [
            {"id": "p-ann", "name": "Ann", "email": "ann@corp.example"},
            {"id": "p-bob", "name": "Bob", "email": None},
        ]
        assert records[0]["subject"] == "Approval needed [req-1]" and records[0]["kind"] == "pending"
        assert [r["key"] for r in await second.records("req-2")] == ["req-2:n1"]
    finally:
        await first.close()
        await second.close()


async def test_a_delivery_is_marked_once_and_seen_by_every_worker(location: Location) -> None:
    first = await DeliveryMarks.open(location.url, schema=location.schema)
    second = await DeliveryMarks.open(location.url, schema=location.schema)
    try:
        assert not await second.marked("teams", "abc")
        marked = await asyncio.gather(*(marks.mark("teams", "abc") for marks in (first, second) * 3))
        assert sum(marked) == 1
        assert await second.marked("teams", "abc") and await first.marked("teams", "abc")
        assert not await first.marked("chat", "abc")  # a mark is its channel's
    finally:
        await first.close()
        await second.close()

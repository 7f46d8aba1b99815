"""The record of Slack messages sent for requests (store/slack_messages.py), on SQLite and PostgreSQL."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from countersign.store.slack_messages import SlackMessage, SlackMessages
from tests.conftest import Location


@pytest.fixture
async def store(location: Location) -> AsyncIterator[SlackMessages]:
    async with await SlackMessages.open(location.url, schema=location.schema) as opened:
        yield opened


def message(note_key: str, target: str, step: int = 0, ts: str = "1.000001") -> SlackMessage:
    return SlackMessage(
        note_key=note_key,
        target=target,
        team_id="T0TEST",
        channel_id="D0MANAGER" if target.startswith("user:") else target.removeprefix("channel:"),
        ts=ts,
        workflow_id="req-default-1",
        tenant="default",
        step_index=step,
        proposal_version=1,
        kind="pending",
        blocks=[{"type": "header", "text": {"type": "plain_text", "text": "Approval needed: send_email"}}],
        sent_at=datetime.now(UTC),
    )


async def test_messages_are_kept_once_per_notification_and_target(store: SlackMessages) -> None:
    assert not await store.sent("req-default-1:n1", "user:U0MANAGER")
    first = await store.record(message("req-default-1:n1", "user:U0MANAGER"))
    # The same notification to the same target again (a racing retry): the first row stands.
    await store.record(message("req-default-1:n1", "user:U0MANAGER", ts="9.999999"))
    await store.record(message("req-default-1:n1", "channel:C0MANAGERS", ts="1.000002"))
    await store.record(message("req-default-1:n2", "user:U0HR", step=1, ts="1.000003"))
    assert await store.sent("req-default-1:n1", "user:U0MANAGER")
    kept = await store.of_workflow("req-default-1")
    assert [(m.target, m.ts, m.step_index) for m in kept] == [
        ("user:U0MANAGER", "1.000001", 0),
        ("channel:C0MANAGERS", "1.000002", 0),
        ("user:U0HR", "1.000003", 1),
    ]
    assert kept[0].blocks == first.blocks and kept[0].closed is None
    assert await store.of_workflow("req-default-2") == []

    await store.mark_closed(kept[0].id, "Step 1 was decided")
    assert [m.closed for m in await store.of_workflow("req-default-1")] == ["Step 1 was decided", None, None]


async def test_a_request_that_ended_is_marked_once(store: SlackMessages) -> None:
    assert await store.ended("req-default-1") is None
    await store.end("req-default-1", "default", "ACTION_EXECUTED: send_email for requester")
    await store.end("req-default-1", "default", "told twice")
    assert await store.ended("req-default-1") == "ACTION_EXECUTED: send_email for requester"

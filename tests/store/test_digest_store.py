"""The digest store on SQLite and PostgreSQL: queueing is idempotent per (notification, recipient); due
entries are claimed once, whoever else claims at the same time; a released claim is claimed again."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from countersign.models.notifications import Notification, NotificationKind
from countersign.store.digests import CLAIM_LEASE, DigestStore
from tests.conftest import Location

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DUE = NOW + timedelta(hours=1)
LATER = DUE + timedelta(minutes=1)


@pytest.fixture
async def store(location: Location) -> AsyncIterator[DigestStore]:
    async with await DigestStore.open(location.url, schema=location.schema) as opened:
        yield opened


def note(n: int, workflow_id: str = "req-1") -> Notification:
    return Notification(
        key=f"{workflow_id}:n{n}",
        workflow_id=workflow_id,
        tenant="default",
        kind=NotificationKind.PENDING,
        subject=f"task create_task for Pat [{workflow_id}]",
        body="",
    )


async def test_queueing_a_notification_again_adds_nothing(store: DigestStore) -> None:
    """An activity retry queues the same (notification, recipient) again: one row stays."""
    assert await store.queue(note(1), [("ann", DUE), ("bob", DUE)], NOW) == 2
    assert await store.queue(note(1), [("ann", DUE), ("bob", DUE)], NOW) == 0
    assert await store.queue(note(2), [("ann", DUE)], NOW) == 1
    assert [e.note.key for e in await store.unsent("ann")] == ["req-1:n1", "req-1:n2"]
    claim = await store.claim("ann", LATER)
    assert claim is not None and [e.note.key for e in claim.entries] == ["req-1:n1", "req-1:n2"]


async def test_nothing_is_claimed_before_it_is_due(store: DigestStore) -> None:
    await store.queue(note(1), [("ann", DUE)], NOW)
    assert await store.due_recipients(DUE - timedelta(seconds=1)) == []
    assert await store.claim("ann", DUE - timedelta(seconds=1)) is None
    assert await store.due_recipients(DUE) == ["ann"]


async def test_a_claim_is_taken_once_and_sent_entries_never_again(store: DigestStore) -> None:
    await store.queue(note(1), [("ann", DUE)], NOW)
    first = await store.claim("ann", LATER)
    assert first is not None and len(first.entries) == 1
    # Another worker, the same moment: the entries are held.
    assert await store.claim("ann", LATER) is None
    assert await store.due_recipients(LATER) == []
    await store.mark_sent(first, LATER)
    assert await store.unsent("ann") == []
    # Sent is sent: not even a lapsed lease brings them back.
    assert await store.claim("ann", LATER + CLAIM_LEASE * 2) is None


async def test_a_released_or_abandoned_claim_is_claimed_again(store: DigestStore) -> None:
    await store.queue(note(1), [("ann", DUE)], NOW)
    failed = await store.claim("ann", LATER)
    assert failed is not None
    await store.release(failed)  # the SMTP server was down
    retried = await store.claim("ann", LATER)
    assert retried is not None and [e.note.key for e in retried.entries] == ["req-1:n1"]
    # A worker that stopped mid-send: its claim lapses after the lease.
    assert await store.claim("ann", LATER + CLAIM_LEASE - timedelta(seconds=1)) is None
    taken_over = await store.claim("ann", LATER + CLAIM_LEASE + timedelta(seconds=1))
    assert taken_over is not None and len(taken_over.entries) == 1


async def test_concurrent_claimers_never_share_an_entry(location: Location, store: DigestStore) -> None:
    """Six claimers, each with its own connection pool (as six workers), claim the same principals at
    once: every entry is claimed by exactly one of them."""
    people = [f"p{i}" for i in range(5)]
    for n in range(4):
        await store.queue(note(n, f"req-{n}"), [(p, DUE) for p in people], NOW)
    claimers = [await DigestStore.open(location.url, schema=location.schema) for _ in range(6)]
    try:

        async def claim_all(claimer: DigestStore) -> list[tuple[str, str]]:
            got = await asyncio.gather(*(claimer.claim(p, LATER) for p in people))
            return [(c.recipient_id, e.note.key) for c in got if c is not None for e in c.entries]

        claimed = [pair for pairs in await asyncio.gather(*map(claim_all, claimers)) for pair in pairs]
    finally:
        for claimer in claimers:
            await claimer.close()
    assert len(claimed) == len(set(claimed)) == len(people) * 4


async def test_pruning_forgets_only_entries_sent_long_ago(store: DigestStore) -> None:
    await store.queue(note(1), [("ann", DUE), ("bob", DUE)], NOW)
    claim = await store.claim("ann", LATER)
    assert claim is not None
    await store.mark_sent(claim, LATER)
    assert await store.prune(LATER) == 0
    assert await store.prune(LATER + timedelta(seconds=1)) == 1
    assert [e.recipient_id for e in await store.unsent("bob")] == ["bob"]

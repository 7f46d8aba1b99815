"""The inbox's projection and the reconciler's lease on SQLite and PostgreSQL: rows in due order with the
reader's filters, a batch's row never replaced by an earlier event's, a repair only of the row it read,
and one lease holder at a time."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from countersign.models.enums import RequestType, Role, WorkflowState
from countersign.models.pending import PendingEntry
from countersign.store.leases import Leases
from countersign.store.pending_decisions import InboxQuery, PendingDecisions
from tests.conftest import Location

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
WAITING = [WorkflowState.WAITING_FOR_APPROVAL, WorkflowState.ESCALATED]


@pytest.fixture
async def pending(location: Location) -> AsyncIterator[PendingDecisions]:
    async with await PendingDecisions.open(location.url, schema=location.schema) as store:
        yield store


def entry(
    due_minutes: int | None = 10,
    *,
    deciders: tuple[str, ...] = ("MANAGER",),
    requester: str = "p-req",
    tenant: str = "acme",
    state: WorkflowState = WorkflowState.WAITING_FOR_APPROVAL,
    kind: RequestType | None = RequestType.PROCUREMENT,
    amount: float | None = 100.0,
) -> PendingEntry:
    return PendingEntry(
        tenant=tenant,
        state=state,
        requester=requester,
        deciders=list(deciders),
        request_type=kind,
        awaiting_role=Role.MANAGER,
        amount=amount,
        sla_due_at=None if due_minutes is None else NOW + timedelta(minutes=due_minutes),
        started_at=NOW,
        text="Buy 2 monitors",
    )


def escalated(due_minutes: int) -> PendingEntry:
    return entry(due_minutes, state=WorkflowState.ESCALATED, deciders=("MANAGER", "ADMIN"))


def reader(**changes: object) -> InboxQuery:
    mine: dict[str, object] = {"tenant": "acme", "deciders": ["MANAGER", "principal:p-mgr"]}
    return InboxQuery(**{**mine, "reader_id": "p-mgr", "states": WAITING, **changes})  # type: ignore[arg-type]


async def ids(pending: PendingDecisions, query: InboxQuery) -> list[str]:
    return [row.workflow_id for row in await pending.inbox(query)]


async def test_the_inbox_lists_what_the_reader_may_decide_most_urgent_first(
    pending: PendingDecisions,
) -> None:
    await pending.apply("w-late", 3, entry(30))
    await pending.apply("w-none", 3, entry(None))  # no SLA: last
    await pending.apply("w-soon", 3, entry(5))
    await pending.apply("w-tie-b", 3, entry(20))
    await pending.apply("w-tie-a", 3, entry(20))  # same due: by workflow id
    await pending.apply("w-named", 3, entry(1, deciders=("principal:p-mgr",)))
    await pending.apply("w-finance", 3, entry(2, deciders=("FINANCE",)))
    await pending.apply("w-own", 3, entry(2, requester="p-mgr"))  # a reader never decides their own
    await pending.apply("w-other-tenant", 3, entry(2, tenant="globex"))
    await pending.apply("w-cheap", 3, entry(40, amount=5.0, kind=RequestType.GENERAL))
    await pending.apply(
        "w-escalated", 3, entry(50, state=WorkflowState.ESCALATED, deciders=("MANAGER", "ADMIN"))
    )

    every = ["w-named", "w-soon", "w-tie-a", "w-tie-b", "w-late", "w-cheap", "w-escalated", "w-none"]
    assert await ids(pending, reader()) == every
    assert await ids(pending, reader(limit=3)) == every[:3]
    assert await ids(pending, reader(states=[WorkflowState.ESCALATED])) == ["w-escalated"]
    assert await ids(pending, reader(request_type=RequestType.GENERAL)) == ["w-cheap"]
    assert await ids(pending, reader(min_amount=50.0)) == [w for w in every if w != "w-cheap"]
    assert await ids(pending, reader(max_amount=50.0)) == ["w-cheap"]
    finance = reader(deciders=["FINANCE"], reader_id="p-fin")
    assert await ids(pending, finance) == ["w-finance"]

    [row] = await pending.inbox(reader(limit=1))
    assert row.entry == entry(1, deciders=("principal:p-mgr",))


async def test_a_row_is_replaced_only_by_a_later_events_row(pending: PendingDecisions) -> None:
    assert await pending.apply("w1", 4, entry(10))
    assert await pending.apply("w1", 6, escalated(10))
    # A retried earlier batch (its events stored, its row written late) changes nothing.
    assert not await pending.apply("w1", 4, entry(10))
    stored = await pending.get("w1")
    assert stored is not None and stored.seq == 6 and stored.entry.state == WorkflowState.ESCALATED
    admin = reader(deciders=["ADMIN"], reader_id="p-admin")
    assert await ids(pending, admin) == ["w1"]
    # The same batch again (a retry after a lost acknowledgement) writes the same row.
    assert await pending.apply("w1", 6, escalated(10))
    # Decided: the row goes, and so do its deciders; an earlier event cannot bring it back.
    assert await pending.apply("w1", 9, None)
    assert await pending.get("w1") is None
    assert await ids(pending, admin) == []
    assert await pending.fingerprints() == {}


async def test_a_repair_writes_only_the_row_it_read(pending: PendingDecisions) -> None:
    await pending.apply("w1", 4, entry(10))
    # An audit batch moved the row on after the reconciler read it at seq 4... and before: it did not.
    assert not await pending.repair("w1", None, expected_seq=3)
    assert await pending.get("w1") is not None
    assert await pending.repair("w1", None, expected_seq=4)
    assert await pending.get("w1") is None
    # Absent when read: written; then a second repair expecting absence finds a row and leaves it.
    assert await pending.repair("w2", entry(5), expected_seq=None)
    assert not await pending.repair("w2", entry(7), expected_seq=None)
    stored = await pending.get("w2")
    assert stored is not None and stored.seq == -1 and stored.entry == entry(5)
    # A batch after a repair applies whatever its seq.
    assert await pending.apply("w2", 0, None)
    assert await pending.get("w2") is None


async def test_one_process_holds_a_lease_until_it_lapses(location: Location) -> None:
    async with (
        await Leases.open(location.url, schema=location.schema) as first,
        await Leases.open(location.url, schema=location.schema) as second,
    ):
        assert await first.take("job", "a", 60, now=1000)
        assert not await second.take("job", "b", 60, now=1010)
        assert await first.take("job", "a", 60, now=1050)  # renewed: good until 1110
        assert not await second.take("job", "b", 60, now=1100)
        assert await second.take("job", "b", 60, now=1111)  # lapsed: taken over
        assert not await first.take("job", "a", 60, now=1112)
        await second.give_up("job", "b")
        assert await first.take("job", "a", 60, now=1113)

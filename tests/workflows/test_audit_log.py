"""Every audit event reaches the SQL audit log (SQLite in the data dir here), chained and verifiable."""

import asyncio
import itertools
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError

from countersign.activities.notify import OutboxChannel
from countersign.models.decisions import DecideInput
from countersign.models.enums import Decision, WorkflowState
from countersign.models.notifications import Notification, NotificationKind
from countersign.store.audit_store import AuditStore
from countersign.workflows.approval import ApprovalWorkflow
from tests.helpers import MANAGER, TEST_TRUST, start, wait_for_state

pytestmark = pytest.mark.usefixtures("worker")

FOLLOW_UP = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"


async def stored(tmp_path: Path, workflow_id: str) -> list[str]:
    async with await AuditStore.open(f"sqlite:///{tmp_path / 'audit.db'}", keyring=TEST_TRUST.audit) as store:
        assert (await store.verify(workflow_id)).ok
        return [e.event for e in await store.for_workflow(workflow_id)]


async def test_the_whole_trail_is_in_the_sql_log(client: Client, task_queue: str, tmp_path: Path) -> None:
    handle = await start(client, task_queue, FOLLOW_UP)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    view = await handle.execute_update(
        ApprovalWorkflow.decide, DecideInput(reviewer=MANAGER, decision=Decision.APPROVED, proposal_version=1)
    )
    final = await handle.result()
    assert final.state == WorkflowState.ACTION_EXECUTED
    # The workflow returns only once its log is written: the same events, in order, chained.
    assert await stored(tmp_path, handle.id) == [e.event for e in final.audit]
    async with await AuditStore.open(f"sqlite:///{tmp_path / 'audit.db'}", keyring=TEST_TRUST.audit) as store:
        rows = await store.for_workflow(handle.id)
    decision = next(r for r in rows if r.event == "decision_approved")
    assert (decision.actor, decision.role, decision.tenant) == (MANAGER.name, "MANAGER", "default")
    assert decision.data == {"principal_id": MANAGER.id}
    assert decision.proposal_hash == view.proposal.hash  # type: ignore[union-attr]
    assert [r.seq for r in rows] == list(range(len(rows)))
    assert all(r.prev_hash == p.hash for p, r in itertools.pairwise(rows))


async def test_a_cancelled_workflow_still_writes_its_last_event(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    handle = await start(client, task_queue, FOLLOW_UP)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    events = await stored(tmp_path, handle.id)
    assert events[-1] == "cancelled" and "awaiting_approval" in events


async def test_a_cancellation_during_a_notification_ends_the_workflow(
    client: Client, task_queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK hands a workflow cancelled mid-activity an ActivityError, not the cancellation: it must
    not pass for a failed notification, or the cancelled workflow goes on waiting for a reviewer."""
    notifying = asyncio.Event()
    deliver = OutboxChannel.deliver

    async def slow_deliver(self: OutboxChannel, note: Notification, recipients: list) -> int:  # type: ignore[type-arg]
        if note.kind == NotificationKind.PENDING:
            notifying.set()
            await asyncio.sleep(2)
        return await deliver(self, note, recipients)

    monkeypatch.setattr(OutboxChannel, "deliver", slow_deliver)
    handle = await start(client, task_queue, FOLLOW_UP)
    await asyncio.wait_for(notifying.wait(), timeout=30)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), timeout=30)
    events = await stored(tmp_path, handle.id)
    assert events[-1] == "cancelled" and "notify_failed" not in events

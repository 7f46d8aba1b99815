"""The inbox follows who may decide now: escalation widens it, reassignment to a person narrows it.
The service layer against the real dev server and a real principal store."""

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from temporalio.client import Client

from countersign.api.services.approvals import ApprovalService
from countersign.config.policy_file import load_policy
from countersign.inbox_reconciler import InboxReconciler
from countersign.models.decisions import ReassignRequest
from countersign.models.enums import Role, WorkflowState
from countersign.models.policy import ApprovalPolicy
from countersign.models.principals import Principal
from countersign.models.requests import SubmitRequest
from countersign.models.views import InboxFilter, WorkflowSummary
from countersign.store.leases import Leases
from countersign.store.pending_decisions import PendingDecisions
from countersign.store.principals import PrincipalStore
from countersign.store.sql import default_url
from tests.helpers import eventually

pytestmark = pytest.mark.usefixtures("worker")

FOLLOW_UP = SubmitRequest(text="Follow up with ABC Logistics (sales@abclogistics.com) about pricing")
ANY = InboxFilter()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[PrincipalStore]:
    async with await PrincipalStore.open(default_url(tmp_path)) as store:
        yield store


@pytest.fixture
async def pending(tmp_path: Path) -> AsyncIterator[PendingDecisions]:
    """The inbox's projection, in the database the `worker` fixture's audit activity writes."""
    async with await PendingDecisions.open(default_url(tmp_path)) as pending:
        yield pending


async def people(store: PrincipalStore) -> dict[str, Principal]:
    wanted = {"requester": [], "manager": [Role.MANAGER], "admin": [Role.ADMIN], "colleague": []}
    return {name: (await store.add(name, roles)).principal for name, roles in wanted.items()}


@pytest.fixture
def service(
    client: Client, task_queue: str, store: PrincipalStore, pending: PendingDecisions
) -> Callable[[ApprovalPolicy], ApprovalService]:
    def made(policy: ApprovalPolicy) -> ApprovalService:
        return ApprovalService(
            client, task_queue=task_queue, policy=policy, principals=store, pending=pending
        )

    return made


async def inbox_ids(svc: ApprovalService, who: Principal, workflow_id: str) -> list[str]:
    return [row.workflow_id for row in await svc.inbox(who, ANY) if row.workflow_id == workflow_id]


async def until_listed(svc: ApprovalService, who: Principal, workflow_id: str, listed: bool) -> None:
    await eventually(lambda: inbox_ids(svc, who, workflow_id), lambda ids: bool(ids) == listed)


async def test_escalation_brings_the_item_to_the_escalation_role(
    store: PrincipalStore, service: Callable[[ApprovalPolicy], ApprovalService]
) -> None:
    policy = ApprovalPolicy.model_validate(
        {"rules": [{"when": "true", "steps": [{"role": "MANAGER", "sla": "2s", "escalate_to": "ADMIN"}]}]}
    )
    svc = service(policy)
    who = await people(store)
    submitted = await svc.submit(who["requester"], FOLLOW_UP, None)
    await until_listed(svc, who["manager"], submitted.workflow_id, True)
    assert await inbox_ids(svc, who["admin"], submitted.workflow_id) == []
    # After the 2 s SLA: escalated, and in the ADMIN's inbox, including the escalated-only view.
    await until_listed(svc, who["admin"], submitted.workflow_id, True)
    rows: list[WorkflowSummary] = await svc.inbox(who["admin"], InboxFilter(escalated_only=True))
    assert [r.state for r in rows if r.workflow_id == submitted.workflow_id] == [WorkflowState.ESCALATED]
    assert await inbox_ids(svc, who["requester"], submitted.workflow_id) == []


async def test_a_step_assigned_to_a_person_leaves_the_role_inbox(
    store: PrincipalStore, service: Callable[[ApprovalPolicy], ApprovalService]
) -> None:
    svc = service(load_policy())
    who = await people(store)
    submitted = await svc.submit(who["requester"], FOLLOW_UP, None)
    workflow_id = submitted.workflow_id
    await until_listed(svc, who["manager"], workflow_id, True)
    assert await inbox_ids(svc, who["colleague"], workflow_id) == []

    body = ReassignRequest(to_principal_id=who["colleague"].id, reason="knows the vendor")
    view = await svc.reassign(who["admin"], workflow_id, body)
    assert view.chain[0].assignee_id == who["colleague"].id
    await until_listed(svc, who["colleague"], workflow_id, True)
    await until_listed(svc, who["manager"], workflow_id, False)


async def test_drift_from_temporal_is_repaired_by_the_reconciler(
    client: Client,
    store: PrincipalStore,
    pending: PendingDecisions,
    tmp_path: Path,
    service: Callable[[ApprovalPolicy], ApprovalService],
) -> None:
    """The projection's row of a workflow terminated from outside (its last batch said "waiting"), a
    row lost, a row gone stale: one pass of the reconciler puts each right, and leaves right rows be."""
    svc = service(load_policy())
    who = await people(store)
    kept, lost, stale, ended = [
        (await svc.submit(who["requester"], FOLLOW_UP, None)).workflow_id for _ in range(4)
    ]
    for workflow_id in (kept, lost, stale, ended):
        await until_listed(svc, who["manager"], workflow_id, True)
    right = await pending.get(kept)
    # An operator terminates one in the Web UI: no audit batch says it ended.
    await client.get_workflow_handle(ended).terminate("stopped by an operator")
    # A lost write, and a row that missed an update (says ADMIN decides it, not MANAGER).
    before = await pending.get(stale)
    assert before is not None
    await pending.repair(lost, None, expected_seq=(await pending.get(lost)).seq)  # type: ignore[union-attr]
    wrong = before.entry.model_copy(update={"deciders": ["ADMIN"]})
    await pending.repair(stale, wrong, expected_seq=before.seq)
    assert await inbox_ids(svc, who["manager"], lost) == []
    assert await inbox_ids(svc, who["manager"], stale) == []
    assert await inbox_ids(svc, who["manager"], ended) == [ended]  # still listed, wrongly

    async with await Leases.open(default_url(tmp_path)) as leases:
        reconciler = InboxReconciler(client, pending, leases, interval=1)
        # Visibility shows the termination within moments; until it does, the row looks right.
        for _ in range(50):
            await reconciler.reconcile()
            if await pending.get(ended) is None:
                break
            await asyncio.sleep(0.2)
        # Nothing left to repair: a further pass rewrites nothing.
        again = await reconciler.reconcile()
    assert again.repaired == 0 and again.stored >= 3, again
    for workflow_id in (kept, lost, stale):
        assert await inbox_ids(svc, who["manager"], workflow_id) == [workflow_id]
    assert await inbox_ids(svc, who["manager"], ended) == []
    assert await pending.get(kept) == right  # a right row is not rewritten
    fixed = await pending.get(stale)
    assert fixed is not None and fixed.entry.model_dump() == before.entry.model_dump()
    for workflow_id in (kept, lost, stale):
        await client.get_workflow_handle(workflow_id).terminate("test over")


async def test_the_most_urgent_come_first(
    store: PrincipalStore, task_queue: str, service: Callable[[ApprovalPolicy], ApprovalService]
) -> None:
    """The inbox lists in SLA order from the projection's index, a page at a time."""
    tenant = f"t{task_queue[-8:]}"
    requester = (await store.add("requester", [], tenant)).principal
    manager = (await store.add("manager", [Role.MANAGER], tenant)).principal
    svc = service(load_policy(None))
    ids = []
    for _ in range(12):
        ids.append((await svc.submit(requester, FOLLOW_UP, None)).workflow_id)
        await asyncio.sleep(0.2)  # distinct due times, whatever the clock's resolution
    waiting = InboxFilter(limit=20)
    await eventually(lambda: svc.inbox(manager, waiting), lambda rows: len(rows) == 12)
    every = await svc.inbox(manager, waiting)
    assert [r.workflow_id for r in every] == ids  # same SLA: due in the order they were submitted
    assert [r.workflow_id for r in await svc.inbox(manager, InboxFilter(limit=3))] == ids[:3]
    first = every[0]
    assert first.text == FOLLOW_UP.text and first.requester == requester.id and first.tenant == tenant
    assert first.state == WorkflowState.WAITING_FOR_APPROVAL and first.awaiting_role == Role.MANAGER
    assert first.sla_due_at is not None and first.started_at is not None

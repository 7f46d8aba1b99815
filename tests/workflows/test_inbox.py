"""The inbox follows who may decide now: escalation widens it, reassignment to a person narrows it.
The service layer against the real dev server and a real principal store."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from temporalio.client import Client

from countersign.api.services.approvals import ApprovalService
from countersign.config.policy_file import load_policy
from countersign.models.decisions import ReassignRequest
from countersign.models.enums import Role, WorkflowState
from countersign.models.policy import ApprovalPolicy
from countersign.models.principals import Principal
from countersign.models.requests import SubmitRequest
from countersign.models.views import InboxFilter, WorkflowSummary
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


async def people(store: PrincipalStore) -> dict[str, Principal]:
    wanted = {"requester": [], "manager": [Role.MANAGER], "admin": [Role.ADMIN], "colleague": []}
    return {name: (await store.add(name, roles)).principal for name, roles in wanted.items()}


def service(
    client: Client, task_queue: str, store: PrincipalStore, policy: ApprovalPolicy
) -> ApprovalService:
    return ApprovalService(client, task_queue=task_queue, policy=policy, principals=store)


async def inbox_ids(svc: ApprovalService, who: Principal, workflow_id: str) -> list[str]:
    return [row.workflow_id for row in await svc.inbox(who, ANY) if row.workflow_id == workflow_id]


async def until_listed(svc: ApprovalService, who: Principal, workflow_id: str, listed: bool) -> None:
    await eventually(lambda: inbox_ids(svc, who, workflow_id), lambda ids: bool(ids) == listed)


async def test_escalation_brings_the_item_to_the_escalation_role(
    client: Client, task_queue: str, store: PrincipalStore
) -> None:
    policy = ApprovalPolicy.model_validate(
        {"rules": [{"when": "true", "steps": [{"role": "MANAGER", "sla": "2s", "escalate_to": "ADMIN"}]}]}
    )
    svc = service(client, task_queue, store, policy)
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
    client: Client, task_queue: str, store: PrincipalStore
) -> None:
    svc = service(client, task_queue, store, load_policy())
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


async def test_a_workflow_terminated_from_outside_leaves_the_inbox(
    client: Client, task_queue: str, store: PrincipalStore
) -> None:
    svc = service(client, task_queue, store, load_policy())
    who = await people(store)
    submitted = await svc.submit(who["requester"], FOLLOW_UP, None)
    await until_listed(svc, who["manager"], submitted.workflow_id, True)
    # An operator terminates it in the Web UI: its search attributes still say WAITING_FOR_APPROVAL.
    await client.get_workflow_handle(submitted.workflow_id).terminate("stopped by an operator")
    await until_listed(svc, who["manager"], submitted.workflow_id, False)


async def test_the_most_urgent_come_first_when_more_wait_than_the_inbox_lists(
    client: Client, task_queue: str, store: PrincipalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Visibility lists in an order of its own and cannot sort by SLA: with more waiting than the inbox
    lists at once, it must still find the earliest due, not sort whichever rows came back."""
    tenant = f"t{task_queue[-8:]}"
    requester = (await store.add("requester", [], tenant)).principal
    manager = (await store.add("manager", [Role.MANAGER], tenant)).principal
    svc = service(client, task_queue, store, load_policy(None))
    ids = []
    for _ in range(12):
        ids.append((await svc.submit(requester, FOLLOW_UP, None)).workflow_id)
        await asyncio.sleep(0.2)  # distinct due times, whatever the clock's resolution
    waiting = InboxFilter(limit=20)
    await eventually(lambda: svc.inbox(manager, waiting), lambda rows: len(rows) == 12)
    every = await svc.inbox(manager, waiting)
    assert [r.workflow_id for r in every] == ids  # same SLA: due in the order they were submitted

    monkeypatch.setattr("countersign.api.services.inbox.INBOX_SCAN", 5)
    first = await svc.inbox(manager, InboxFilter(limit=3))
    assert [r.workflow_id for r in first] == ids[:3]

    # A page lists a few pages' worth, not everything waiting: with 12 waiting and pages of 2, the
    # band is cut to at most 8 rows (4 pages), and the earliest due are still first.
    monkeypatch.setattr("countersign.api.services.inbox.INBOX_SCAN", 2000)
    monkeypatch.setattr("countersign.api.services.inbox._BAND_MIN_ROWS", 1)
    listed: list[int] = []
    lists = svc._lists  # the inbox's queries (api/services/inbox.py)
    query = lists._query

    async def counting(clauses: list[str], limit: int, *types: Sequence[str]) -> list[WorkflowSummary]:
        rows = await query(clauses, limit, *types)
        listed.append(len(rows))
        return rows

    monkeypatch.setattr(lists, "_query", counting)
    page = await svc.inbox(manager, InboxFilter(limit=2))
    assert [r.workflow_id for r in page] == ids[:2]
    assert len(listed) == 1 and 2 <= listed[0] <= 8, listed

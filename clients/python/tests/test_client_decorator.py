"""`@approval_required` against the real gateway, worker and dev server.

What it does before an action is the caller's to run (pending, rejected, a wait that runs out, a tool
the server executes), and with a caller-executed tool (a tenant's declared tool, `POST /tools`): runs
the approved args once and reports the result (`POST /workflows/{id}/result`)."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import as_

from countersign_client import (
    ApprovalFailed,
    ApprovalPending,
    ApprovalRejected,
    AsyncClient,
    Client,
    Conflict,
    approval_required,
)
from tests.api.conftest import Api

EMAIL = {"to": "sales@abclogistics.com", "subject": "Pricing", "body": "Could we talk about pricing?"}
REFUND_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
    "required": ["order_id", "amount"],
    "additionalProperties": False,
}


@pytest.fixture
def since() -> datetime:
    """When the test started: the inbox lists the whole tenant's requests, those of earlier tests too
    (the dev server is shared), whose workers are gone."""
    return datetime.now(UTC) - timedelta(seconds=1)


async def inbox_item(cs: AsyncClient, tool: str, since: datetime) -> str:
    """The workflow proposing `tool`, started since `since`, that `cs` may decide, once it is there."""
    for _ in range(200):
        for row in await cs.inbox():
            if row.started_at is None or row.started_at < since:
                continue
            view = await cs.get(row.workflow_id)
            if (
                view.proposal is not None
                and view.proposal.tool == tool
                and view.state == "WAITING_FOR_APPROVAL"
            ):
                return row.workflow_id
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {tool} awaits a decision")


async def test_timeout_zero_proposes_by_name_and_raises_pending_then_resume_sees_the_rejection(
    since: datetime, requester: AsyncClient, manager: AsyncClient
) -> None:
    ran: list[dict[str, Any]] = []

    @approval_required(
        requester, tool="send_email", summary=lambda to, subject, body: f"Email {to}: {subject}", timeout=0
    )
    async def send_email(to: str, subject: str, body: str = "(empty)") -> dict[str, Any]:
        ran.append({"to": to})
        return {"sent": True}

    with pytest.raises(ApprovalPending) as pending:
        await send_email(EMAIL["to"], subject="Pricing")
    workflow_id = pending.value.workflow_id
    assert workflow_id == await inbox_item(manager, "send_email", since)
    view = await requester.get(workflow_id)
    assert view.proposal is not None
    # Bound by name, defaults filled in; the summary made from the same arguments.
    assert view.proposal.args == {"to": EMAIL["to"], "subject": "Pricing", "body": "(empty)"}
    assert view.request.summary == f"Email {EMAIL['to']}: Pricing"

    with pytest.raises(ApprovalPending):  # still nobody decided
        await send_email.resume(workflow_id, timeout=0.5)
    await manager.reject(workflow_id, notes="use the sales alias", proposal_version=1)
    with pytest.raises(ApprovalRejected) as rejected:
        await send_email.resume(workflow_id)
    assert rejected.value.reason == "use the sales alias" and rejected.value.workflow_id == workflow_id
    assert ran == []


async def test_a_sync_function_waits_for_the_decision_and_never_runs_when_rejected(
    since: datetime, api: Api, base_url: str, manager: AsyncClient
) -> None:
    ran: list[str] = []
    cs = Client(base_url, api.keys["requester"])

    @approval_required(cs, tool="send_email", timeout=60)
    def send_email(to: str, subject: str, body: str) -> None:
        ran.append(to)

    calling = asyncio.create_task(asyncio.to_thread(send_email, **EMAIL))
    workflow_id = await inbox_item(manager, "send_email", since)
    assert not calling.done()  # waiting for the decision
    await manager.reject(workflow_id, notes="not this quarter", proposal_version=1)
    with pytest.raises(ApprovalRejected, match="not this quarter"):
        await calling
    assert ran == []
    cs.close()


async def test_a_wait_that_runs_out_is_pending_and_a_tool_the_server_runs_is_never_run_here(
    requester: AsyncClient, manager: AsyncClient
) -> None:
    ran: list[str] = []

    @approval_required(requester, tool="send_email", timeout=0.5)
    async def send_email(to: str, subject: str, body: str) -> None:
        ran.append(to)

    with pytest.raises(ApprovalPending) as pending:
        await send_email(**EMAIL)
    assert pending.value.view is not None and pending.value.view.state == "WAITING_FOR_APPROVAL"
    await manager.approve(pending.value.workflow_id, proposal_version=1)
    # `send_email` is executed by Countersign itself: approving it must not make the caller run it too.
    with pytest.raises(ApprovalFailed, match="not one the caller executes"):
        await send_email.resume(pending.value.workflow_id, timeout=30)
    assert ran == []


def test_the_decorator_refuses_what_it_cannot_propose() -> None:
    sync, aio = Client("http://x"), AsyncClient("http://x")
    with pytest.raises(TypeError, match="AsyncClient"):

        @approval_required(sync, tool="t")
        async def a() -> None: ...

    with pytest.raises(TypeError, match="with a Client"):

        @approval_required(aio, tool="t")
        def b() -> None: ...

    with pytest.raises(TypeError, match=r"\*args"):

        @approval_required(sync, tool="t")
        def c(*amounts: float) -> None: ...

    sync.close()


# ---- caller-executed tools (issue 19: POST /tools, POST /workflows/{id}/result) -----------------------


@pytest.fixture
async def refund_tool(api: Api) -> AsyncIterator[str]:
    """A declared tool, `refund_payment`, the caller executes after approval."""
    declared = await api.http.post(
        "/tools",
        json={
            "name": "refund_payment",
            "description": "Refund part or all of an order",
            "args_schema": REFUND_SCHEMA,
            "side_effect": "EXTERNAL",
            "risk": "MEDIUM",
        },
        headers=api.as_("admin"),
    )
    assert declared.status_code == 201, declared.text
    yield "refund_payment"


async def test_approved_runs_once_with_the_approved_args_and_reports_the_result(
    since: datetime, api: Api, base_url: str, refund_tool: str, manager: AsyncClient
) -> None:
    ran: list[tuple[str, float]] = []
    cs = Client(base_url, api.keys["requester"])

    @approval_required(
        cs, tool=refund_tool, summary=lambda order_id, amount: f"Refund {amount} for {order_id}", timeout=60
    )
    def refund_payment(order_id: str, amount: float) -> dict[str, Any]:
        ran.append((order_id, amount))
        return {"refund_id": f"rf-{order_id}", "amount": amount}

    calling = asyncio.create_task(asyncio.to_thread(refund_payment, "A-1001", 120.0))
    workflow_id = await inbox_item(manager, refund_tool, since)
    view = await manager.get(workflow_id)
    assert view.proposal is not None and view.proposal.args == {"order_id": "A-1001", "amount": 120.0}
    assert view.request.summary == "Refund 120.0 for A-1001"
    await manager.approve(workflow_id, proposal_version=1)
    assert await calling == {"refund_id": "rf-A-1001", "amount": 120.0}
    assert ran == [("A-1001", 120.0)]
    final = await manager.get(workflow_id)
    assert final.state == "ACTION_EXECUTED", final
    assert {t.name: t.execution for t in await manager.list_tools()}[refund_tool] == "caller"
    # Reported once, by the decorator: a second report is refused.
    with pytest.raises(Conflict):
        await asyncio.to_thread(cs.report_result, workflow_id, True, {"again": True})
    cs.close()


async def test_a_reviewers_edit_is_what_runs(
    since: datetime, api: Api, refund_tool: str, requester: AsyncClient, manager: AsyncClient
) -> None:
    ran: list[tuple[str, float]] = []

    @approval_required(requester, tool=refund_tool, timeout=60)
    async def refund_payment(order_id: str, amount: float) -> dict[str, Any]:
        ran.append((order_id, amount))
        return {"ok": True}

    calling = asyncio.create_task(refund_payment("A-1002", 900.0))
    workflow_id = await inbox_item(manager, refund_tool, since)
    edited = await api.http.post(
        f"/workflows/{workflow_id}/edit",
        json={"proposal_version": 1, "args": {"order_id": "A-1002", "amount": 90.0}, "notes": "a tenth"},
        headers=api.as_("manager"),
    )
    assert edited.status_code == 200, edited.text
    assert not calling.done()  # an edit is a new version, awaiting its own approval
    # Who edited may not approve their own version: another manager does.
    async with as_(api, "manager2") as m2:
        await m2.approve(workflow_id, proposal_version=2)
    assert await calling == {"ok": True}
    assert ran == [("A-1002", 90.0)]
    view = await requester.get(workflow_id)
    assert view.state == "ACTION_EXECUTED" and view.approved_args == {"order_id": "A-1002", "amount": 90.0}


async def test_a_function_that_raises_reports_the_failure_and_reraises(
    since: datetime, refund_tool: str, requester: AsyncClient, manager: AsyncClient
) -> None:
    @approval_required(requester, tool=refund_tool, timeout=0)
    async def refund_payment(order_id: str, amount: float) -> None:
        raise RuntimeError(f"order {order_id} is already refunded")

    with pytest.raises(ApprovalPending) as pending:
        await refund_payment("A-1003", 10.0)
    workflow_id = pending.value.workflow_id
    assert workflow_id == await inbox_item(manager, refund_tool, since)
    await manager.approve(workflow_id, proposal_version=1)
    # An agent that comes back later: the approved call runs now, and its failure is reported.
    with pytest.raises(RuntimeError, match="already refunded"):
        await refund_payment.resume(workflow_id, timeout=30)
    view = await requester.get(workflow_id)
    assert view.state == "FAILED" and view.error is not None and "RuntimeError: order A-1003" in view.error

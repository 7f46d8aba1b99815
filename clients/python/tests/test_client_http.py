"""The clients against the real gateway, worker and Temporal dev server: submit, long-poll, decide,
the tools and the inbox, and every refusal as its exception. `send_email` is a built-in tool the server
executes; one MANAGER approves it."""

import asyncio
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client as TemporalClient

from countersign.api.services.approvals import ApprovalService
from countersign.config.policy_file import load_policy
from countersign.config.settings import Settings
from countersign.llm.rules import RulesPlanner
from countersign.models.principals import Principal
from countersign.models.requests import ApprovalInput, SubmitRequest
from countersign.worker import build_worker
from countersign.workflows.approval import ApprovalWorkflow
from countersign_client import (
    AsyncClient,
    Client,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from tests.api.conftest import Api
from tests.helpers import TEST_TRUST

BASE = "http://countersign.test"
EMAIL = {"to": "sales@abclogistics.com", "subject": "Pricing", "body": "Could we talk about pricing?"}


async def test_propose_wait_approve_and_read_the_outcome(
    requester: AsyncClient, manager: AsyncClient
) -> None:
    submitted = await requester.submit_action(
        "send_email", EMAIL, summary="Ask ABC about pricing", context={"crm": 7}, wait_seconds=30
    )
    assert submitted.view is not None and submitted.state == "WAITING_FOR_APPROVAL"
    proposal = submitted.view.proposal
    assert proposal is not None and (proposal.tool, proposal.args["to"], proposal.version) == (
        "send_email",
        EMAIL["to"],
        1,
    )
    assert submitted.view.request.context == {"crm": 7}
    # The view keeps what the client does not model (a newer server's fields, or those it does not use).
    assert "audit" in (submitted.view.model_extra or {})
    # The inbox reads a projection that follows the workflow by one audit write: a moment.
    for _ in range(100):
        inbox = await manager.inbox()
        if submitted.workflow_id in [row.workflow_id for row in inbox]:
            break
        await asyncio.sleep(0.05)
    assert submitted.workflow_id in [row.workflow_id for row in inbox]
    decided = await manager.approve(submitted.workflow_id, proposal_version=1, notes="go ahead")
    assert decided.state in ("APPROVED", "ACTION_EXECUTED")
    final = await requester.wait(submitted.workflow_id, until="final", timeout=60)
    assert final.state == "ACTION_EXECUTED" and final.result is not None
    assert final.result.tool == "send_email"


async def test_a_plain_words_request_is_planned(requester: AsyncClient) -> None:
    text = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"
    submitted = await requester.submit_text(text, wait_seconds=30)
    assert submitted.view is not None and submitted.view.proposal is not None
    assert submitted.view.proposal.tool == "send_email" and submitted.view.request.text == text


async def test_the_same_idempotency_key_is_the_same_workflow(requester: AsyncClient) -> None:
    key = f"client-{uuid.uuid4().hex[:8]}"
    first = await requester.submit_action("send_email", EMAIL, idempotency_key=key)
    again = await requester.submit_action("send_email", EMAIL, idempotency_key=key)
    assert first.workflow_id == again.workflow_id


async def test_wait_long_polls_until_decided_and_times_out_with_the_last_view(
    requester: AsyncClient, manager: AsyncClient
) -> None:
    submitted = await requester.submit_action("send_email", EMAIL, wait_seconds=30)
    with pytest.raises(WaitTimeout) as timed_out:
        await requester.wait(submitted.workflow_id, until="decided", timeout=0.5)
    assert timed_out.value.view.state == "WAITING_FOR_APPROVAL"
    with pytest.raises(WaitTimeout):
        await requester.wait(submitted.workflow_id, until="decided", timeout=0)
    waiting = asyncio.create_task(requester.wait(submitted.workflow_id, until="decided", timeout=60))
    await asyncio.sleep(1.0)
    assert not waiting.done()  # one long-poll held open by the gateway: nobody has decided
    await manager.approve(submitted.workflow_id, proposal_version=1)
    assert (await waiting).state in ("APPROVED", "ACTION_EXECUTED")


async def test_a_rejection_carries_its_reason(requester: AsyncClient, manager: AsyncClient) -> None:
    submitted = await requester.submit_action("send_email", EMAIL, wait_seconds=30)
    await manager.reject(submitted.workflow_id, notes="not before the board meets", proposal_version=1)
    view = await requester.wait(submitted.workflow_id, timeout=30)
    assert view.state == "REJECTED" and view.rejection_reason == "not before the board meets"


async def test_tools_are_listed_with_their_contracts(requester: AsyncClient) -> None:
    tools = {tool.name: tool for tool in await requester.list_tools()}
    email = tools["send_email"]
    assert email.side_effect == "EXTERNAL" and {"to", "subject", "body"} <= set(
        email.args_schema["properties"]
    )


async def test_refusals_are_exceptions_of_one_tree(
    api: Api, requester: AsyncClient, manager: AsyncClient
) -> None:
    async with AsyncClient(BASE, "cs_not-a-key", transport=httpx.ASGITransport(app=api.app)) as stranger:
        with pytest.raises(Unauthorized) as unauthorized:
            await stranger.list_tools()
    assert unauthorized.value.status == 401
    with pytest.raises(NotFound):
        await requester.get("req-default-nothing-here")
    with pytest.raises(Invalid) as invalid:
        await requester.submit_action("wire_money", {"to": "me"})
    assert invalid.value.code == "InvalidAction"
    assert [(f.code, f.field) for f in invalid.value.findings] == [("unknown_tool", "tool")]
    with pytest.raises(Invalid) as missing:
        await requester.submit_action("send_email", {"to": EMAIL["to"], "body": "y"})
    assert any(f.code == "invalid_args" and f.field == "subject" for f in missing.value.findings)

    submitted = await requester.submit_action("send_email", EMAIL, wait_seconds=30)
    workflow_id = submitted.workflow_id
    with pytest.raises(Forbidden):  # their own request
        await requester.approve(workflow_id, proposal_version=1)
    with pytest.raises(Conflict):  # a version nobody saw
        await manager.approve(workflow_id, proposal_version=2)
    with pytest.raises(Invalid) as malformed:  # field errors: a version must be at least 1
        await manager.approve(workflow_id, proposal_version=0)
    assert malformed.value.errors and malformed.value.findings == []
    await manager.approve(workflow_id, proposal_version=1)
    with pytest.raises(Conflict):  # decided already
        await manager.approve(workflow_id, proposal_version=1)
    with pytest.raises(ValueError, match="wait_seconds"):
        await requester.get(workflow_id, wait_seconds=61)


async def test_the_sync_client_over_a_socket(api: Api, base_url: str) -> None:
    def propose() -> tuple[str, str]:
        with Client(base_url, api.keys["requester"]) as cs:
            submitted = cs.submit_action("send_email", EMAIL, summary="Ask ABC", wait_seconds=30)
            with pytest.raises(WaitTimeout):
                cs.wait(submitted.workflow_id, until="decided", timeout=0.3)
            return submitted.workflow_id, submitted.state

    workflow_id, state = await asyncio.to_thread(propose)
    assert state == "WAITING_FOR_APPROVAL"

    def wait_final() -> str:
        with Client(base_url, api.keys["requester"]) as cs:
            return cs.wait(workflow_id, until="final", timeout=60).state

    waiting = asyncio.create_task(asyncio.to_thread(wait_final))

    def decide() -> str:
        with Client(base_url, api.keys["manager"]) as cs:
            for _ in range(100):  # the inbox's projection follows the workflow by a moment
                if workflow_id in [row.workflow_id for row in cs.inbox()]:
                    break
                time.sleep(0.05)
            assert workflow_id in [row.workflow_id for row in cs.inbox()]
            with pytest.raises(Forbidden):
                Client(base_url, api.keys["requester"]).approve(workflow_id, proposal_version=1)
            return cs.approve(workflow_id, proposal_version=1, wait_seconds=30).state

    assert await asyncio.to_thread(decide) == "ACTION_EXECUTED"
    assert await waiting == "ACTION_EXECUTED"


class Counting(httpx.AsyncBaseTransport):
    """The real app over ASGI, with every answer's status noted (an observer, not a stand-in)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.statuses: list[int] = []
        self.refused = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.statuses.append(response.status_code)
        if response.status_code == 503:
            self.refused.set()
        return response


async def test_a_503_is_retried_after_its_retry_after(
    api: Api, client: TemporalClient, tmp_path: Path
) -> None:
    """A view needs a worker to answer its query: with none, the gateway says 503, Retry-After: 1. The
    client sleeps that long and asks again; once a worker is there, the answer comes."""
    settings: Settings = api.app.state.settings
    api.app.state.service = ApprovalService(
        client,
        task_queue=settings.task_queue,
        policy=load_policy(None),
        principals=api.app.state.principals,
        pending=api.app.state.pending,
        query_timeout=timedelta(seconds=1),
    )
    me = (await api.http.get("/principals/me", headers=api.as_("requester"))).json()["principal"]
    nobody = f"idle-{uuid.uuid4().hex[:8]}"  # a task queue no worker polls, yet
    workflow_id = f"req-default-{uuid.uuid4().hex[:12]}"
    request = SubmitRequest(text="Follow up with ABC Logistics (sales@abclogistics.com) about pricing")
    await client.start_workflow(
        ApprovalWorkflow.run,
        ApprovalInput(request=request, requester=Principal.model_validate(me), policy=load_policy(None)),
        id=workflow_id,
        task_queue=nobody,
    )
    counting = Counting(httpx.ASGITransport(app=api.app))

    async with AsyncClient(BASE, api.keys["requester"], transport=counting, retries=0) as once:
        with pytest.raises(Unavailable) as unavailable:
            await once.get(workflow_id)
    assert (unavailable.value.status, unavailable.value.retry_after) == (503, 1.0)

    counting.statuses.clear()
    counting.refused.clear()

    async def late_worker(stop: asyncio.Event) -> None:
        await counting.refused.wait()
        worker = build_worker(
            client, task_queue=nobody, data_dir=tmp_path / "late", planner=RulesPlanner(), trust=TEST_TRUST
        )
        async with worker:
            await stop.wait()

    stop = asyncio.Event()
    starting = asyncio.create_task(late_worker(stop))
    try:
        async with AsyncClient(BASE, api.keys["requester"], transport=counting, retries=5) as patient:
            view = await patient.get(workflow_id)
    finally:
        stop.set()
        await starting
    assert view.workflow_id == workflow_id
    assert counting.statuses[0] == 503 and counting.statuses[-1] == 200, counting.statuses

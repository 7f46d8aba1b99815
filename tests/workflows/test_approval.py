"""ApprovalWorkflow on a real Temporal dev server, with the real activities, planner and tools."""

import asyncio
from pathlib import Path

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from countersign.llm.rules import RulesPlanner
from countersign.models import search_attributes as sa
from countersign.models.decisions import DecideInput, Refusal
from countersign.models.enums import ActorKind, Decision, RequestType, Role, WorkflowState
from countersign.models.policy import ApprovalPolicy
from countersign.models.principals import Principal
from countersign.worker import build_worker
from countersign.workflows.approval import ApprovalWorkflow
from tests.helpers import (
    DIRECTOR,
    FINANCE,
    MANAGER,
    MANAGER_2,
    OTHER_TENANT_MANAGER,
    REQUESTER,
    TEST_TRUST,
    eventually,
    last_approval,
    outbox_messages,
    start,
    tool_records,
    wait_for_state,
)

pytestmark = pytest.mark.usefixtures("worker")

FOLLOW_UP = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"
LAPTOPS = "buy 40 laptops from Dell for $52,000"


def approve(reviewer: Principal, **kwargs: object) -> DecideInput:
    return DecideInput(reviewer=reviewer, decision=Decision.APPROVED, **{"proposal_version": 1, **kwargs})  # type: ignore[arg-type]


def reject(reviewer: Principal, notes: str | None) -> DecideInput:
    return DecideInput(reviewer=reviewer, decision=Decision.REJECTED, notes=notes, proposal_version=1)


async def refused(handle: object, decision: DecideInput) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(ApprovalWorkflow.decide, decision)  # type: ignore[attr-defined]
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    return str(cause.type)


async def test_happy_path_sends_one_email(client: Client, task_queue: str, tmp_path: Path) -> None:
    handle = await start(client, task_queue, FOLLOW_UP)
    waiting = await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    assert waiting.proposal is not None and waiting.proposal.tool == "send_email"
    assert waiting.proposal.args["to"] == "sales@abclogistics.com"
    assert waiting.validation is not None and waiting.validation.ok
    assert [s.role for s in waiting.chain] == [Role.MANAGER]

    view = await last_approval(handle, approve(MANAGER, notes="go"))
    assert view.state == WorkflowState.ACTION_EXECUTED
    assert view.result is not None and not view.result.replayed
    assert await handle.result() == view

    events = [e.event for e in view.audit]
    assert events == [
        "received",
        "ai_analyzed",
        "validated",
        "chain_built",
        "awaiting_approval",
        "decision_approved",
        "approved",
        "action_executed",
    ]
    states = [e.state for e in view.audit]
    assert states == sorted(states, key=list(WorkflowState).index), "states never go back"
    decision = view.audit[5]
    assert (decision.actor, decision.actor_kind, decision.role) == (
        MANAGER.name,
        ActorKind.HUMAN,
        Role.MANAGER,
    )
    assert view.audit[1].actor_kind == ActorKind.AI
    assert decision.proposal_hash == view.proposal.hash != ""  # type: ignore[union-attr]

    outbox = await outbox_messages(tmp_path)
    assert len(outbox) == 1
    assert "sales@abclogistics.com" in outbox[0].text


async def test_search_attributes_follow_the_state(client: Client, task_queue: str) -> None:
    handle = await start(client, task_queue, LAPTOPS)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(sa.STATE) == "WAITING_FOR_APPROVAL"
    assert attrs.get(sa.REQUEST_TYPE) == "PROCUREMENT"
    assert attrs.get(sa.AWAITING_ROLE) == "MANAGER"
    assert attrs.get(sa.REQUESTER) == REQUESTER.id
    assert attrs.get(sa.TENANT) == "default"
    assert attrs.get(sa.AMOUNT) == 52_000
    found = await eventually(
        lambda: _ids(client, f"CountersignState = 'WAITING_FOR_APPROVAL' AND WorkflowId = '{handle.id}'"),
        lambda ids: ids == [handle.id],
    )
    assert found == [handle.id]
    # What the Web UI shows: the static summary set at start, and the current details while waiting.
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert "waiting for MANAGER (step 1 of 3)" in metadata.current_details
    assert "laptops" in metadata.current_details


async def _ids(client: Client, query: str) -> list[str]:
    return [w.id async for w in client.list_workflows(query)]


async def test_large_procurement_walks_the_whole_chain(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    handle = await start(client, task_queue, LAPTOPS)
    view = await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    assert [s.role for s in view.chain] == [Role.MANAGER, Role.FINANCE, Role.DIRECTOR]
    # FINANCE may not jump the queue: the first step awaits MANAGER.
    assert await refused(handle, approve(FINANCE)) == Refusal.ROLE_MISSING

    view = await handle.execute_update(ApprovalWorkflow.decide, approve(MANAGER))
    assert (view.state, view.current_step) == (WorkflowState.WAITING_FOR_APPROVAL, 1)
    view = await handle.execute_update(ApprovalWorkflow.decide, approve(FINANCE))
    assert view.current_step == 2
    assert (await handle.describe()).typed_search_attributes.get(sa.AWAITING_ROLE) == "DIRECTOR"
    view = await last_approval(handle, approve(DIRECTOR))
    assert view.state == WorkflowState.ACTION_EXECUTED
    records = await tool_records(tmp_path)
    assert [r["tool"] for r in records] == ["create_purchase_order"]
    assert records[0]["args"]["amount"] == 52_000


async def test_rejection_with_reason_executes_nothing(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    handle = await start(client, task_queue, FOLLOW_UP)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    assert await refused(handle, reject(MANAGER, "  ")) == Refusal.REASON_REQUIRED
    view = await handle.execute_update(ApprovalWorkflow.decide, reject(MANAGER, "pricing is settled"))
    assert view.state == WorkflowState.REJECTED
    assert view.result is None
    assert (await handle.result()).state == WorkflowState.REJECTED
    assert await outbox_messages(tmp_path) == [] and await tool_records(tmp_path) == []
    assert view.chain[0].decisions[0].notes == "pricing is settled"


async def test_every_refusal_is_refused_before_anything_is_written(client: Client, task_queue: str) -> None:
    handle = await start(client, task_queue, LAPTOPS)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    self_approver = Principal(id=REQUESTER.id, name=REQUESTER.name, roles=[Role.MANAGER])
    assert await refused(handle, approve(self_approver)) == Refusal.SELF_APPROVAL
    assert await refused(handle, approve(FINANCE)) == Refusal.ROLE_MISSING
    assert await refused(handle, approve(OTHER_TENANT_MANAGER)) == Refusal.WRONG_TENANT
    assert await refused(handle, approve(MANAGER, proposal_version=2)) == Refusal.STALE_PROPOSAL
    view = await handle.query(ApprovalWorkflow.view)
    assert view.chain[0].decisions == []
    assert "decision_refused" not in [e.event for e in view.audit]

    # MANAGER approves step 1; holding FINANCE too does not let them approve step 2 as well.
    both = Principal(id=MANAGER_2.id, name=MANAGER_2.name, roles=[Role.MANAGER, Role.FINANCE])
    await handle.execute_update(ApprovalWorkflow.decide, approve(both))
    assert await refused(handle, approve(both)) == Refusal.ALREADY_DECIDED
    await handle.cancel()


async def test_decisions_after_the_end_are_refused(client: Client, task_queue: str) -> None:
    handle = await start(client, task_queue, FOLLOW_UP)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    await handle.execute_update(ApprovalWorkflow.decide, reject(MANAGER, "no"))
    await handle.result()
    with pytest.raises(RPCError, match=r"(?i)complete"):
        await handle.execute_update(ApprovalWorkflow.decide, approve(MANAGER_2))


async def test_signal_path_applies_and_audits_refusals(client: Client, task_queue: str) -> None:
    handle = await start(client, task_queue, FOLLOW_UP)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    await handle.signal(ApprovalWorkflow.decision, approve(FINANCE))
    await handle.signal(ApprovalWorkflow.decision, reject(MANAGER, None))
    view = await eventually(
        lambda: handle.query(ApprovalWorkflow.view),
        lambda v: sum(e.event == "decision_refused" for e in v.audit) == 2,
    )
    assert view.state == WorkflowState.WAITING_FOR_APPROVAL
    details = [e.detail for e in view.audit if e.event == "decision_refused"]
    assert details[0].startswith(Refusal.ROLE_MISSING) and details[1].startswith(Refusal.REASON_REQUIRED)
    await handle.signal(ApprovalWorkflow.decision, approve(MANAGER))
    final = await handle.result()
    assert final.state == WorkflowState.ACTION_EXECUTED


async def test_invalid_proposal_is_triaged_and_cannot_be_approved(client: Client, task_queue: str) -> None:
    # No amount anywhere: the purchase order cannot be valid, even after re-planning.
    handle = await start(client, task_queue, "please purchase new office chairs")
    view = await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    assert view.proposal is not None and view.proposal.request_type == RequestType.PROCUREMENT
    assert view.validation is not None and not view.validation.ok and view.validation.needs_triage
    assert "replan" in [e.event for e in view.audit]
    assert "validation_failed" in [e.event for e in view.audit]
    assert await refused(handle, approve(MANAGER)) == Refusal.INVALID_PROPOSAL
    final = await handle.execute_update(ApprovalWorkflow.decide, reject(MANAGER, "no amount given"))
    assert final.state == WorkflowState.REJECTED


async def test_worker_restart_while_waiting(client: Client, tmp_path: Path) -> None:
    queue = "restart-" + tmp_path.name[-12:]
    first = build_worker(
        client, task_queue=queue, data_dir=tmp_path, planner=RulesPlanner(), trust=TEST_TRUST
    )
    async with first:
        handle = await start(client, queue, FOLLOW_UP)
        await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    # No worker at all for a moment: the workflow is durable state on the server, not in memory.
    await asyncio.sleep(0.5)
    second = build_worker(
        client, task_queue=queue, data_dir=tmp_path, planner=RulesPlanner(), trust=TEST_TRUST
    )
    async with second:
        view = await last_approval(handle, approve(MANAGER))
        assert view.state == WorkflowState.ACTION_EXECUTED
    assert len(await outbox_messages(tmp_path)) == 1


async def test_policy_is_data(client: Client, task_queue: str) -> None:
    policy = ApprovalPolicy.model_validate(
        {
            "rules": [{"when": "true", "steps": [{"role": "HR"}]}],
            "extra_steps": [{"when": "confidence < 0.6", "step": {"role": "DIRECTOR"}}],
        }
    )
    handle = await start(client, task_queue, "please handle this", policy=policy)
    view = await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    assert view.proposal is not None and view.proposal.confidence < policy.confidence_threshold
    assert [s.role for s in view.chain] == [Role.HR, Role.DIRECTOR]
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    cancelled = await handle.query(ApprovalWorkflow.view)
    assert (cancelled.state, cancelled.audit[-1].event) == (WorkflowState.CANCELLED, "cancelled")
    attrs = (await handle.describe()).typed_search_attributes
    assert (attrs.get(sa.STATE), attrs.get(sa.AWAITING_ROLE)) == ("CANCELLED", None)


async def test_concurrent_decisions_on_one_step_apply_once(client: Client, task_queue: str) -> None:
    handle = await start(client, task_queue, LAPTOPS)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    outcomes = await asyncio.gather(
        *(handle.execute_update(ApprovalWorkflow.decide, approve(m)) for m in (MANAGER, MANAGER_2)),
        return_exceptions=True,
    )
    accepted = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(accepted) == 1, outcomes
    refused_error = next(o for o in outcomes if isinstance(o, BaseException))
    assert isinstance(refused_error, WorkflowUpdateFailedError)
    view = await handle.query(ApprovalWorkflow.view)
    assert [len(step.decisions) for step in view.chain] == [1, 0, 0]
    assert view.current_step == 1
    await handle.cancel()

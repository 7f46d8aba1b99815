"""A tool the tenant declared, executed by the caller: after approval the workflow runs nothing and
waits for `report_result`, on the real dev server; the result deadline on the time-skipping server."""

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from countersign.llm.rules import RulesPlanner
from countersign.models.decisions import DecideInput, EditInput, Refusal, ResultInput
from countersign.models.declared_tools import DeclaredTool
from countersign.models.enums import Decision, Risk, Role, SideEffect, WorkflowState
from countersign.models.policy import ApprovalPolicy
from countersign.models.principals import Principal
from countersign.models.requests import ApprovalInput, ProposedAction, SubmitRequest
from countersign.models.views import WorkflowView
from countersign.worker import WorkerGroup, build_worker
from countersign.workflows.approval import ApprovalWorkflow
from tests.helpers import DEFAULT_POLICY, MANAGER, MANAGER_2, REQUESTER, TEST_TRUST, wait_for_state

REFUND = DeclaredTool(
    tenant=REQUESTER.tenant,
    name="refund_payment",
    version=1,
    description="Refund a payment",
    args_schema={
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
        "required": ["order_id", "amount"],
        "additionalProperties": False,
    },
    side_effect=SideEffect.EXTERNAL,
    risk=Risk.MEDIUM,
)
ARGS = {"order_id": "A-1001", "amount": 40.0}
COLLEAGUE = Principal(id="p-col", name="Cole League", roles=[Role.MANAGER])

Handle = WorkflowHandle[ApprovalWorkflow, WorkflowView]


async def begin(client: Client, queue: str, policy: ApprovalPolicy = DEFAULT_POLICY) -> Handle:
    return await client.start_workflow(
        ApprovalWorkflow.run,
        ApprovalInput(
            request=SubmitRequest(action=ProposedAction(tool="refund_payment", args=ARGS)),
            requester=REQUESTER,
            policy=policy,
            declared_tool=REFUND,
        ),
        id=f"req-default-{uuid.uuid4().hex[:12]}",
        task_queue=queue,
    )


def approve(reviewer: Principal = MANAGER, version: int = 1) -> DecideInput:
    return DecideInput(reviewer=reviewer, decision=Decision.APPROVED, proposal_version=version)


def result(principal: Principal = REQUESTER, **outcome: Any) -> ResultInput:
    return ResultInput(principal=principal, **outcome)


async def refused(handle: Handle, message: ResultInput) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(ApprovalWorkflow.report_result, message)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    return str(cause.type)


@pytest.mark.usefixtures("worker")
async def test_the_caller_executes_what_was_approved_and_reports_it(client: Client, task_queue: str) -> None:
    handle = await begin(client, task_queue)
    waiting = await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    assert waiting.execution == "caller" and waiting.approved_args is None
    # Nothing to report before the approval.
    assert await refused(handle, result(ok=True, output={"refund_id": "r-1"})) == Refusal.NOT_WAITING
    approved = await handle.execute_update(ApprovalWorkflow.decide, approve())
    assert approved.state == WorkflowState.APPROVED
    view = await handle.query(ApprovalWorkflow.view)
    assert view.approved_args == ARGS and view.result_due_at is not None
    # Only the caller who proposed it reports, and a reviewer is no exception.
    assert await refused(handle, result(COLLEAGUE, ok=True, output={})) == Refusal.NOT_ALLOWED
    done = await handle.execute_update(
        ApprovalWorkflow.report_result, result(ok=True, output={"refund_id": "r-1"})
    )
    assert done.state == WorkflowState.ACTION_EXECUTED
    final = await handle.result()
    assert final.result is not None and final.result.result == {"refund_id": "r-1"}
    events = {e.event: e for e in final.audit}
    assert events["awaiting_result"].state == WorkflowState.APPROVED
    assert (events["action_executed"].actor, events["action_executed"].actor_kind) == (
        REQUESTER.name,
        "CALLER",
    )
    # Countersign executed nothing itself: no `execute` activity in the whole history.
    history = await handle.fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert "execute" not in scheduled and "validate" in scheduled


@pytest.mark.usefixtures("worker")
async def test_the_caller_runs_the_args_a_reviewer_edited(client: Client, task_queue: str) -> None:
    handle = await begin(client, task_queue)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    edited = {"order_id": "A-1001", "amount": 25.0}
    await handle.execute_update(
        ApprovalWorkflow.edit, EditInput(reviewer=MANAGER, proposal_version=1, args=edited)
    )
    # The editor made version 2 and may not approve it too: another manager does.
    answered = await handle.execute_update(ApprovalWorkflow.decide, approve(MANAGER_2, version=2))
    assert answered.state == WorkflowState.APPROVED
    view = await handle.query(ApprovalWorkflow.view)
    assert view.approved_args == edited and view.request.action is not None
    assert view.request.action.args == ARGS  # what was proposed stays on record
    failed = await handle.execute_update(
        ApprovalWorkflow.report_result, result(ok=False, error="PaymentGatewayError: card expired")
    )
    assert failed.state == WorkflowState.FAILED
    final = await handle.result()
    assert final.error == "refund_payment failed at the caller: PaymentGatewayError: card expired"
    assert [e.actor_kind for e in final.audit if e.event == "failed"] == ["CALLER"]


@pytest.mark.usefixtures("worker")
async def test_args_that_break_the_declared_schema_never_reach_a_reviewer_as_valid(
    client: Client, task_queue: str
) -> None:
    # The gateway refuses such an action before starting; a workflow started with one anyway (by
    # hand) validates it against the frozen declaration and cannot be approved.
    bad = ApprovalInput(
        request=SubmitRequest(action=ProposedAction(tool="refund_payment", args={"order_id": 7})),
        requester=REQUESTER,
        policy=DEFAULT_POLICY,
        declared_tool=REFUND,
    )
    handle = await client.start_workflow(
        ApprovalWorkflow.run, bad, id=f"req-default-{uuid.uuid4().hex[:12]}", task_queue=task_queue
    )
    view = await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    assert view.validation is not None and not view.validation.ok
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(ApprovalWorkflow.decide, approve())


@pytest.fixture
async def skipping_worker(
    time_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> AsyncIterator[WorkerGroup]:
    async with build_worker(
        time_env.client, task_queue=task_queue, data_dir=tmp_path, planner=RulesPlanner(), trust=TEST_TRUST
    ) as worker:
        yield worker


@pytest.mark.usefixtures("skipping_worker")
async def test_no_result_by_the_deadline_fails_the_workflow_and_a_late_one_is_refused(
    time_env: WorkflowEnvironment, task_queue: str
) -> None:
    policy = DEFAULT_POLICY.model_copy(update={"result_deadline": 2 * 3600})
    handle = await begin(time_env.client, task_queue, policy)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    await handle.execute_update(ApprovalWorkflow.decide, approve())
    final = await handle.result()  # time skips to the deadline
    assert final.state == WorkflowState.FAILED and final.result is None
    at = {e.event: datetime.fromisoformat(e.at) for e in final.audit}
    assert timedelta(hours=2) <= at["result_overdue"] - at["awaiting_result"] < timedelta(hours=2, minutes=1)
    assert final.error is not None and final.error.startswith("no result for refund_payment was reported by")
    (overdue,) = [e for e in final.audit if e.event == "result_overdue"]
    assert overdue.state == WorkflowState.FAILED
    # Too late: the workflow has closed, so nothing can change its outcome (the gateway answers 409).
    with pytest.raises(RPCError) as late:
        await handle.execute_update(ApprovalWorkflow.report_result, result(ok=True, output={}))
    assert late.value.status == RPCStatusCode.NOT_FOUND

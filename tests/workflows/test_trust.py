"""The AI proposes, a human decides — under attack, on a real Temporal dev server.

1. The action chooses its approvers: a malicious but well-formed plan (from the fake model endpoint,
   through the real `openai` SDK) labelled to dodge a chain still gets the chain its action needs.
2. Decisions are authenticated inside the workflow: anyone who reaches Temporal (`raw_client`, which
   does not sign) can neither approve, nor start a workflow of their own that a worker would run, nor
   replay, retarget or alter a message the gateway signed.
3. Smaller holes: no approving a step one reassigned, a decision names its version, a human rejection
   ends the trail with `rejected`, notification subjects carry nothing a model wrote.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from countersign.llm.factory import build_planner
from countersign.llm.spec import LLMOptions, parse_chain
from countersign.models import search_attributes as sa
from countersign.models.decisions import DecideInput, ReassignInput, Refusal
from countersign.models.enums import Decision, Role, WorkflowState
from countersign.models.graph import GraphCarry, GraphRunInput, GraphRunView, RunStatus
from countersign.models.principals import Principal
from countersign.models.requests import ApprovalInput, SubmitRequest
from countersign.models.views import WorkflowView
from countersign.security.gateway_keys import GatewaySigner, generate
from countersign.tools.builtin import build_registry
from countersign.worker import WorkerGroup, build_worker
from countersign.workflows.approval import ApprovalWorkflow
from countersign.workflows.graph import GraphWorkflow
from tests.fake_llm import FakeLLM, follow_up_plan, openai_answer
from tests.helpers import (
    DEFAULT_POLICY,
    DIRECTOR,
    FINANCE,
    MANAGER,
    MANAGER_2,
    REQUESTER,
    SIGNER,
    TEST_TRUST,
    last_approval,
    notification_records,
    start,
    wait_for_state,
)
from tests.workflows.test_graph import APPROVAL, graph_worker, run_graph, waiting

__all__ = ["graph_worker"]  # the graph tests' worker fixture, used here too

REGISTRY = build_registry()
LAPTOPS = "buy 40 laptops from Dell for $52,000"
FOLLOW_UP = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"
ADMIN = Principal(id="p-adm", name="Ada Admin", roles=[Role.ADMIN])
ADMIN_MANAGER = Principal(id="p-adm-mgr", name="Avery Admin", roles=[Role.ADMIN, Role.MANAGER])
Handle = WorkflowHandle[ApprovalWorkflow, WorkflowView]


# ---- 1. the action chooses its approvers ----------------------------------------------------------


def _fields(**given: object) -> dict[str, object]:
    names = "amount currency quantity item days start_date severity counterparty email topic"
    blank = dict.fromkeys(names.split())
    return {**blank, **given}


# Each plan is well-formed and its action valid; its labels are chosen to get the shortest chain.
MALICIOUS = {
    "a 52,000 purchase order labelled GENERAL": (
        follow_up_plan(
            request_type="GENERAL",
            fields=_fields(),
            summary="A quick note to a supplier.",
            action={
                "tool": "create_purchase_order",
                "args": {
                    "vendor": "Dell",
                    "item": "laptops",
                    "quantity": 40,
                    "amount": 52000,
                    "currency": "USD",
                },
            },
        ),
        [Role.MANAGER, Role.FINANCE, Role.DIRECTOR],
    ),
    "30 days of leave labelled as 2": (
        follow_up_plan(
            request_type="LEAVE",
            fields=_fields(days=2),
            summary="Two days off.",
            action={"tool": "record_leave", "args": {"employee": "Riley", "days": 30}},
        ),
        [Role.MANAGER, Role.HR],
    ),
    "a severity 5 ticket labelled severity 1": (
        follow_up_plan(
            request_type="SUPPORT",
            fields=_fields(severity=1),
            summary="A minor glitch.",
            action={"tool": "open_support_ticket", "args": {"title": "Checkout down", "severity": 5}},
        ),
        [Role.SUPPORT_L2, Role.MANAGER],
    ),
}


@pytest.fixture
async def model_worker(
    client: Client, task_queue: str, tmp_path: Path, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[WorkerGroup]:
    for name, value in fake_llm.vendor_env("sk-test", "sk-test").items():
        monkeypatch.setenv(name, value)
    options = LLMOptions(timeout_seconds=5, max_output_tokens=1000, max_repairs=1)
    planner = build_planner(parse_chain("openai:gpt-4.1-mini")[0], registry=REGISTRY, options=options)
    async with build_worker(
        client, task_queue=task_queue, data_dir=tmp_path, planner=planner, registry=REGISTRY, trust=TEST_TRUST
    ) as group:
        yield group


@pytest.mark.parametrize("case", sorted(MALICIOUS))
@pytest.mark.usefixtures("model_worker")
async def test_a_plan_labelled_to_dodge_a_chain_gets_the_chain_its_action_needs(
    case: str, client: Client, task_queue: str, fake_llm: FakeLLM
) -> None:
    plan, chain = MALICIOUS[case]
    fake_llm.responder = lambda _: openai_answer(plan)  # the same answer to every call and re-plan
    handle = await start(client, task_queue, "please take care of this for me")
    view = await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    assert [step.role for step in view.chain] == chain, case
    assert view.validation is not None and view.validation.facts is not None
    # Reviewers see where the labels and the action disagree.
    codes = {f.code for f in view.validation.findings}
    assert codes & {"label_mismatch", "inconsistent"}, view.validation.findings
    # Lists and the inbox filter on what the action is, too.
    described = await handle.describe()
    assert described.typed_search_attributes.get(sa.REQUEST_TYPE) == view.validation.facts.type.value


@pytest.mark.usefixtures("model_worker")
async def test_one_approval_does_not_execute_a_purchase_order_labelled_general(
    client: Client, task_queue: str, fake_llm: FakeLLM
) -> None:
    plan, _ = MALICIOUS["a 52,000 purchase order labelled GENERAL"]
    fake_llm.responder = lambda _: openai_answer(plan)
    handle = await start(client, task_queue, "a quick note to our laptop supplier")
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    view = await handle.execute_update(ApprovalWorkflow.decide, _approve(MANAGER))
    assert (view.state, view.current_step) == (WorkflowState.WAITING_FOR_APPROVAL, 1)
    assert view.result is None


# ---- 2. decisions authenticated inside the workflow ----------------------------------------------


def _approve(reviewer: Principal, version: int = 1, **more: Any) -> DecideInput:
    return DecideInput(reviewer=reviewer, decision=Decision.APPROVED, proposal_version=version, **more)


def _mallory(role: Role) -> Principal:
    return Principal(id=f"mallory-{role.value.lower()}", name="Mallory", roles=[role])


def _refusals(view: WorkflowView | GraphRunView) -> list[str]:
    audit = view.audit if isinstance(view, WorkflowView) else []
    return [e.detail for e in audit if e.event.endswith("_refused")]


@pytest.mark.usefixtures("worker")
async def test_unsigned_decisions_are_refused_and_audited(
    client: Client, raw_client: Client, task_queue: str
) -> None:
    """The review's attack: a `decision` signal per step, naming principals that do not exist."""
    handle = await start(client, task_queue, LAPTOPS)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    forged = raw_client.get_workflow_handle_for(ApprovalWorkflow.run, handle.id)
    for role in (Role.MANAGER, Role.FINANCE, Role.DIRECTOR):
        await forged.signal(ApprovalWorkflow.decision, _approve(_mallory(role)))
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await forged.execute_update(ApprovalWorkflow.decide, _approve(_mallory(Role.MANAGER)))
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.type == Refusal.UNAUTHENTICATED

    view = await handle.query(ApprovalWorkflow.view)
    assert (view.state, view.current_step) == (WorkflowState.WAITING_FOR_APPROVAL, 0)
    assert all(not step.decisions for step in view.chain)
    refused = [e for e in view.audit if e.event == "decision_refused"]
    assert len(refused) == 4
    assert all(e.detail.startswith("Unauthenticated") for e in refused)
    assert all(
        e.data is not None and str(e.data["claimed_principal_id"]).startswith("mallory") for e in refused
    )
    # The claimed identity is recorded as a claim, never as the actor.
    assert not any(e.actor == "Mallory" for e in view.audit)


@pytest.mark.usefixtures("worker")
async def test_a_signed_message_is_good_once_for_its_workflow_and_unaltered(
    client: Client, raw_client: Client, task_queue: str
) -> None:
    handle = await start(client, task_queue, LAPTOPS)
    other = await start(client, task_queue, LAPTOPS)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    await wait_for_state(other, WorkflowState.WAITING_FOR_APPROVAL)
    raw = raw_client.get_workflow_handle_for(ApprovalWorkflow.run, handle.id)
    signed = SIGNER.sign(_approve(MANAGER), workflow_id=handle.id, name="decide")

    # Altered after signing (another reviewer), signed for another workflow, for another message, expired.
    altered = signed.model_copy(update={"reviewer": MANAGER_2})
    elsewhere = SIGNER.sign(_approve(MANAGER), workflow_id=other.id, name="decide")
    as_edit = SIGNER.sign(_approve(MANAGER), workflow_id=handle.id, name="edit")
    long_ago = datetime.now(UTC) - timedelta(hours=3)
    expired = SIGNER.sign(_approve(MANAGER), workflow_id=handle.id, name="decide", now=long_ago)
    for bad in (altered, elsewhere, as_edit, expired):
        with pytest.raises(WorkflowUpdateFailedError) as caught:
            await raw.execute_update(ApprovalWorkflow.decide, bad)
        assert getattr(caught.value.cause, "type", None) == Refusal.UNAUTHENTICATED

    # The genuine message moves the chain on once; sent again, it is refused.
    view = await raw.execute_update(ApprovalWorkflow.decide, signed)
    assert view.current_step == 1
    with pytest.raises(WorkflowUpdateFailedError) as again:
        await raw.execute_update(ApprovalWorkflow.decide, signed)
    assert getattr(again.value.cause, "type", None) == Refusal.UNAUTHENTICATED
    details = _refusals(await handle.query(ApprovalWorkflow.view))
    assert len(details) == 5
    assert any("already used" in d for d in details) and any("expired" in d for d in details)
    assert sum("does not match" in d for d in details) == 3


@pytest.mark.usefixtures("worker")
async def test_a_workflow_started_outside_the_gateway_is_refused_before_it_plans(
    raw_client: Client, task_queue: str
) -> None:
    """Someone who reaches Temporal starts a workflow whose input trusts their own key, names a requester
    and a one-step policy of their choosing, and signs everything with that key: the worker trusts only
    the gateway's keys, so nothing is planned and nothing can be approved."""
    own_key, _ = generate("mallory")
    mallory = GatewaySigner.from_text(own_key)
    policy = DEFAULT_POLICY.model_copy(update={"rules": DEFAULT_POLICY.rules[-1:]})
    for name, signer in (("unsigned", None), ("self-signed", mallory)):
        workflow_id = f"req-default-forged-{name}"
        forged = ApprovalInput(
            request=SubmitRequest(text=LAPTOPS), requester=REQUESTER, policy=policy, trust=mallory.trust()
        )
        if signer is not None:
            forged = signer.sign(forged, workflow_id=workflow_id, name="start")
        handle = await raw_client.start_workflow(
            ApprovalWorkflow.run, forged, id=workflow_id, task_queue=task_queue
        )
        view = await handle.result()
        assert view.state == WorkflowState.FAILED
        assert [e.event for e in view.audit] == ["start_refused"]
        assert view.error is not None and "not started by a trusted gateway" in view.error
        assert view.proposal is None and view.chain == []
        scheduled = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            async for e in handle.fetch_history_events()
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ]
        assert "plan" not in scheduled, name


@pytest.mark.usefixtures("graph_worker")
async def test_graph_approval_nodes_refuse_unsigned_decisions_and_forged_carries(
    client: Client, raw_client: Client, task_queue: str
) -> None:
    handle = await run_graph(client, task_queue, APPROVAL)
    await waiting(handle)
    raw = raw_client.get_workflow_handle_for(GraphWorkflow.run, handle.id)
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await raw.execute_update(GraphWorkflow.decide, _approve(_mallory(Role.MANAGER)))
    assert getattr(caught.value.cause, "type", None) == Refusal.UNAUTHENTICATED
    assert (await handle.query(GraphWorkflow.view)).status == RunStatus.WAITING_FOR_APPROVAL
    await handle.execute_update(GraphWorkflow.decide, _approve(MANAGER))
    assert (await handle.result()).status == RunStatus.COMPLETED

    # A run started from outside with carried state (past its approval node) and a genuine start's
    # signature: carried state comes only from the run's own continue-as-new.
    genuine = await run_graph(client, task_queue, APPROVAL)
    signed_input = (await _first_input(genuine)).model_copy(
        update={
            "carry": GraphCarry(
                state={"count": 1, "review_approved": True},
                next_node="publish",
                visits={},
                steps=0,
                logs=[],
                logs_dropped=0,
                events=0,
                started_at=datetime.now(UTC),
                stream=None,
                audited=0,
            )
        }
    )
    await genuine.terminate("the test reuses its input")
    forged = await raw_client.start_workflow(
        GraphWorkflow.run, signed_input, id=f"{genuine.id}-forged", task_queue=task_queue
    )
    view = await forged.result()
    assert view.status == RunStatus.FAILED
    assert view.error is not None and "carry state only when continued" in view.error
    assert "publish" not in view.visits


async def _first_input(handle: WorkflowHandle[GraphWorkflow, GraphRunView]) -> GraphRunInput:
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            payload = event.workflow_execution_started_event_attributes.input.payloads[0]
            return pydantic_data_converter.payload_converter.from_payload(payload, GraphRunInput)
    raise AssertionError("no start event")


# ---- 3. the smaller holes ----------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_an_admin_cannot_approve_a_step_they_reassigned(client: Client, task_queue: str) -> None:
    handle = await start(client, task_queue, FOLLOW_UP)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    with pytest.raises(WorkflowUpdateFailedError) as to_self:
        await handle.execute_update(
            ApprovalWorkflow.reassign,
            ReassignInput(admin=ADMIN_MANAGER, to_principal=ADMIN_MANAGER, reason="I'll do it"),
        )
    assert getattr(to_self.value.cause, "type", None) == Refusal.NOT_ALLOWED
    # Handed to a role the ADMIN holds: still not theirs to approve, though a colleague may.
    await handle.execute_update(
        ApprovalWorkflow.reassign, ReassignInput(admin=ADMIN_MANAGER, to_role=Role.MANAGER, reason="cover")
    )
    with pytest.raises(WorkflowUpdateFailedError) as own:
        await handle.execute_update(ApprovalWorkflow.decide, _approve(ADMIN_MANAGER))
    assert getattr(own.value.cause, "type", None) == Refusal.SELF_APPROVAL
    done = await last_approval(handle, _approve(MANAGER))
    assert done.state == WorkflowState.ACTION_EXECUTED


@pytest.mark.usefixtures("worker")
async def test_a_decision_must_name_its_proposal_version(client: Client, task_queue: str) -> None:
    handle = await start(client, task_queue, FOLLOW_UP)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    unversioned = DecideInput(reviewer=MANAGER, decision=Decision.APPROVED)
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(ApprovalWorkflow.decide, unversioned)
    assert getattr(caught.value.cause, "type", None) == Refusal.BAD_REQUEST
    assert (await handle.query(ApprovalWorkflow.view)).state == WorkflowState.WAITING_FOR_APPROVAL


@pytest.mark.usefixtures("worker")
async def test_a_human_rejection_ends_the_trail_with_rejected(client: Client, task_queue: str) -> None:
    handle = await start(client, task_queue, LAPTOPS)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    await handle.execute_update(ApprovalWorkflow.decide, _approve(MANAGER))
    reject = DecideInput(
        reviewer=FINANCE, decision=Decision.REJECTED, notes="over budget", proposal_version=1
    )
    await handle.execute_update(ApprovalWorkflow.decide, reject)
    view = await handle.result()
    assert view.state == WorkflowState.REJECTED
    last = view.audit[-1]
    assert (last.event, last.state, last.role) == ("rejected", WorkflowState.REJECTED, Role.FINANCE)
    assert "Frances Finance" in last.detail and "over budget" in last.detail
    assert DIRECTOR.id not in {d.reviewer_id for step in view.chain for d in step.decisions}


@pytest.mark.usefixtures("model_worker")
async def test_notification_subjects_carry_nothing_a_model_wrote(
    client: Client, task_queue: str, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    injected = "URGENT - reply APPROVE now, the CEO already agreed"
    fake_llm.responder = lambda _: openai_answer(follow_up_plan(summary=injected))
    handle = await start(client, task_queue, FOLLOW_UP)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    await handle.execute_update(ApprovalWorkflow.decide, _approve(MANAGER))
    await handle.result()
    notes = await notification_records(tmp_path)
    assert {n["kind"] for n in notes} >= {"pending", "outcome"}
    for note in notes:
        assert "URGENT" not in str(note["subject"]) and "APPROVE" not in str(note["subject"])
        assert f"[{handle.id}]" in str(note["subject"])
    pending = next(n for n in notes if n["kind"] == "pending")
    assert f"> {injected}" in str(pending["body"])  # shown, quoted as the AI's words
    assert "send_email" in str(pending["subject"]) and REQUESTER.name in str(pending["subject"])

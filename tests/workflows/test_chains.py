"""Enterprise chains on a real dev server: quorum, segregation of duties, approve with changes,
delegation, reassignment and withdrawal. (Timers are in test_sla.py, on the time-skipping server.)"""

import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from countersign.models.decisions import CancelInput, DecideInput, EditInput, ReassignInput, Refusal
from countersign.models.enums import Decision, Role, WorkflowState
from countersign.models.policy import ApprovalPolicy
from countersign.models.principals import Principal
from countersign.models.views import WorkflowView
from countersign.workflows.approval import ApprovalWorkflow
from tests.helpers import (
    DIRECTOR,
    FINANCE,
    MANAGER,
    MANAGER_2,
    REQUESTER,
    last_approval,
    outbox_messages,
    start,
    tool_records,
    wait_for_state,
)

pytestmark = pytest.mark.usefixtures("worker")

LAPTOPS = "buy 40 laptops from Dell for $52,000"
FOLLOW_UP = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"
FINANCE_2 = Principal(id="p-fin2", name="Fay Finance", roles=[Role.FINANCE])
# One person holding two roles of the same chain still counts once.
MANAGER_AND_FINANCE = Principal(id="p-mf", name="Mel Both", roles=[Role.MANAGER, Role.FINANCE])
ADMIN = Principal(id="p-adm", name="Ada Admin", roles=[Role.ADMIN])
COLLEAGUE = Principal(id="p-col", name="Cole League", roles=[])
# The requester holds MANAGER too: still never approves their own request.
MANAGER_REQUESTER = Principal(id="p-mreq", name="Mira Manager", roles=[Role.MANAGER])

QUORUM_POLICY = ApprovalPolicy.model_validate(
    {
        "version": "quorum-test",
        "rules": [
            {
                "name": "large procurement",
                "when": "type == 'PROCUREMENT' and amount > 10000",
                "steps": [{"role": "MANAGER"}, {"role": "FINANCE", "quorum": 2}, {"role": "DIRECTOR"}],
            },
            {"when": "true", "steps": [{"role": "MANAGER"}]},
        ],
    }
)

Handle = WorkflowHandle[ApprovalWorkflow, WorkflowView]


def approve(reviewer: Principal, **kwargs: object) -> DecideInput:
    return DecideInput(reviewer=reviewer, decision=Decision.APPROVED, **{"proposal_version": 1, **kwargs})  # type: ignore[arg-type]


async def refusal(call: object) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await call  # type: ignore[misc]
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    return str(cause.type)


async def decide(handle: Handle, decision: DecideInput) -> WorkflowView:
    return await handle.execute_update(ApprovalWorkflow.decide, decision)


async def test_three_step_chain_with_quorum_two_at_finance(
    client: Client, task_queue: str, tmp_path: object
) -> None:
    handle = await start(client, task_queue, LAPTOPS, policy=QUORUM_POLICY)
    view = await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    assert [(s.role, s.quorum) for s in view.chain] == [
        (Role.MANAGER, 1),
        (Role.FINANCE, 2),
        (Role.DIRECTOR, 1),
    ]
    assert view.policy_version == "quorum-test"
    built = next(e for e in view.audit if e.event == "chain_built")
    assert built.data == {"policy_version": "quorum-test", "rule": "large procurement", "steps": 3}

    view = await decide(handle, approve(MANAGER_AND_FINANCE))
    assert view.current_step == 1
    # Having approved as MANAGER, the same person cannot make up the FINANCE quorum.
    assert await refusal(decide(handle, approve(MANAGER_AND_FINANCE))) == Refusal.ALREADY_DECIDED
    view = await decide(handle, approve(FINANCE))
    assert (view.current_step, view.chain[1].approvals(), view.chain[1].status) == (1, 1, "waiting")
    assert await refusal(decide(handle, approve(FINANCE))) == Refusal.ALREADY_DECIDED
    view = await decide(handle, approve(FINANCE_2))
    assert view.current_step == 2 and view.chain[1].status == "approved"
    view = await last_approval(handle, approve(DIRECTOR))
    assert view.state == WorkflowState.ACTION_EXECUTED
    assert [d.reviewer_id for s in view.chain for d in s.decisions] == ["p-mf", "p-fin", "p-fin2", "p-dir"]
    assert len(await tool_records(tmp_path)) == 1


async def test_segregation_of_duties(client: Client, task_queue: str) -> None:
    handle = await start(client, task_queue, FOLLOW_UP, requester=MANAGER_REQUESTER)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    # The requester, even holding the awaited role, and even standing in for another manager.
    assert await refusal(decide(handle, approve(MANAGER_REQUESTER))) == Refusal.SELF_APPROVAL
    mine = approve(MANAGER_REQUESTER, acting_for=[MANAGER])
    assert await refusal(decide(handle, mine)) == Refusal.SELF_APPROVAL
    # A delegate cannot use the requester's own authority either.
    via_requester = approve(COLLEAGUE, acting_for=[MANAGER_REQUESTER])
    assert await refusal(decide(handle, via_requester)) == Refusal.ROLE_MISSING
    # Nor edit, reassign to, or withdraw on behalf of someone else.
    edit = EditInput(reviewer=MANAGER_REQUESTER, proposal_version=1, args={"to": "x@y.example"})
    assert await refusal(handle.execute_update(ApprovalWorkflow.edit, edit)) == Refusal.SELF_APPROVAL
    to_requester = ReassignInput(admin=ADMIN, to_principal=MANAGER_REQUESTER, reason="cover")
    assert (
        await refusal(handle.execute_update(ApprovalWorkflow.reassign, to_requester)) == Refusal.NOT_ALLOWED
    )
    by_other = CancelInput(principal=MANAGER, reason="not mine")
    assert await refusal(handle.execute_update(ApprovalWorkflow.withdraw, by_other)) == Refusal.NOT_ALLOWED
    view = await handle.query(ApprovalWorkflow.view)
    assert view.chain[0].decisions == [] and view.proposal is not None and view.proposal.version == 1
    assert (await last_approval(handle, approve(MANAGER))).state == WorkflowState.ACTION_EXECUTED


async def test_edit_makes_a_new_version_and_restarts_approvals(
    client: Client, task_queue: str, tmp_path: object
) -> None:
    handle = await start(client, task_queue, LAPTOPS)
    view = await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    assert view.proposal is not None
    args = dict(view.proposal.args)
    view = await decide(handle, approve(MANAGER))
    assert view.current_step == 1

    # FINANCE trims the order; it stays above 10,000, so the same three steps start over.
    trimmed = {**args, "quantity": 30, "amount": 39_000}
    edit = EditInput(reviewer=FINANCE, proposal_version=1, args=trimmed, notes="30 is enough")
    view = await handle.execute_update(ApprovalWorkflow.edit, edit)
    assert view.proposal is not None
    assert (view.proposal.version, view.proposal.edited_by, view.proposal.fields.amount) == (
        2,
        FINANCE.name,
        39_000,
    )
    assert view.proposal.hash != "" and view.current_step == 0
    assert [len(s.decisions) for s in view.chain] == [0, 0, 0]
    edited = next(e for e in view.audit if e.event == "edited")
    assert edited.actor == FINANCE.name and "changed amount, quantity" in edited.detail
    assert edited.proposal_version == 2

    # Decisions naming version 1 are stale; the manager approves version 2 afresh.
    assert await refusal(decide(handle, approve(MANAGER, proposal_version=1))) == Refusal.STALE_PROPOSAL
    stale_edit = EditInput(reviewer=MANAGER, proposal_version=1, args={**trimmed, "quantity": 1})
    assert await refusal(handle.execute_update(ApprovalWorkflow.edit, stale_edit)) == Refusal.STALE_PROPOSAL
    await decide(handle, approve(MANAGER, proposal_version=2))
    # FINANCE made version 2: another FINANCE reviewer checks it.
    assert await refusal(decide(handle, approve(FINANCE, proposal_version=2))) == Refusal.SELF_APPROVAL
    await decide(handle, approve(FINANCE_2, proposal_version=2))
    view = await last_approval(handle, approve(DIRECTOR, proposal_version=2))
    assert view.state == WorkflowState.ACTION_EXECUTED
    assert view.result is not None and view.result.idempotency_key.endswith(":v2")
    records = await tool_records(tmp_path)
    assert [(r["args"]["quantity"], r["args"]["amount"]) for r in records] == [(30, 39_000)]


async def test_an_edit_that_lowers_the_amount_gets_the_shorter_chain(client: Client, task_queue: str) -> None:
    handle = await start(client, task_queue, LAPTOPS)
    view = await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    assert view.proposal is not None and len(view.chain) == 3
    edit = EditInput(
        reviewer=MANAGER, proposal_version=1, args={**view.proposal.args, "quantity": 6, "amount": 7_800}
    )
    view = await handle.execute_update(ApprovalWorkflow.edit, edit)
    assert [s.role for s in view.chain] == [Role.MANAGER]
    # Maker and checker: the editor may not approve their own version; another manager must.
    assert await refusal(decide(handle, approve(MANAGER, proposal_version=2))) == Refusal.SELF_APPROVAL
    view = await last_approval(handle, approve(MANAGER_2, proposal_version=2))
    assert view.state == WorkflowState.ACTION_EXECUTED


async def test_an_edit_that_does_not_validate_changes_nothing(client: Client, task_queue: str) -> None:
    handle = await start(client, task_queue, FOLLOW_UP)
    view = await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    assert view.proposal is not None
    bad = EditInput(reviewer=MANAGER, proposal_version=1, args={**view.proposal.args, "to": "not an address"})
    assert await refusal(handle.execute_update(ApprovalWorkflow.edit, bad)) == Refusal.INVALID_EDIT
    same = EditInput(reviewer=MANAGER, proposal_version=1, args=view.proposal.args)
    assert await refusal(handle.execute_update(ApprovalWorkflow.edit, same)) == Refusal.INVALID_EDIT
    after = await handle.query(ApprovalWorkflow.view)
    assert after.proposal is not None and after.proposal.version == 1
    assert [e.event for e in after.audit][-1] == "edit_refused"
    assert (
        await last_approval(handle, approve(MANAGER, proposal_version=1))
    ).state == WorkflowState.ACTION_EXECUTED


async def test_a_delegate_decides_on_behalf_of_the_delegator(client: Client, task_queue: str) -> None:
    handle = await start(client, task_queue, FOLLOW_UP)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    # Without a delegation the colleague holds no role; with the manager's, they decide for them.
    assert await refusal(decide(handle, approve(COLLEAGUE))) == Refusal.ROLE_MISSING
    view = await last_approval(handle, approve(COLLEAGUE, acting_for=[MANAGER], notes="covering"))
    assert view.state == WorkflowState.ACTION_EXECUTED
    record = view.chain[0].decisions[0]
    assert (record.reviewer_id, record.on_behalf_of_id, record.role) == (
        COLLEAGUE.id,
        MANAGER.id,
        Role.MANAGER,
    )
    entry = next(e for e in view.audit if e.event == "decision_approved")
    assert (
        entry.actor == COLLEAGUE.name
        and entry.detail == f"on behalf of {MANAGER.name} (delegation): covering"
    )
    assert entry.data == {"principal_id": COLLEAGUE.id, "on_behalf_of": MANAGER.id}


async def test_the_delegator_counts_once_whoever_decides(client: Client, task_queue: str) -> None:
    handle = await start(client, task_queue, LAPTOPS, policy=QUORUM_POLICY)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    await decide(handle, approve(MANAGER))
    await decide(handle, approve(COLLEAGUE, acting_for=[FINANCE]))
    # FINANCE's authority was used by the delegate: FINANCE cannot add a second approval.
    assert await refusal(decide(handle, approve(FINANCE))) == Refusal.ALREADY_DECIDED


async def test_admin_reassigns_a_waiting_step(client: Client, task_queue: str) -> None:
    handle = await start(client, task_queue, FOLLOW_UP)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    to_colleague = ReassignInput(admin=ADMIN, to_principal=COLLEAGUE, reason="manager on leave")
    assert (
        await refusal(
            handle.execute_update(
                ApprovalWorkflow.reassign, to_colleague.model_copy(update={"admin": MANAGER})
            )
        )
        == Refusal.ROLE_MISSING
    )
    view = await handle.execute_update(ApprovalWorkflow.reassign, to_colleague)
    assert (view.chain[0].assignee_id, view.chain[0].deciding_roles) == (COLLEAGUE.id, [])
    entry = view.audit[-1]
    assert (entry.event, entry.actor, entry.role) == ("reassigned", ADMIN.name, Role.ADMIN)
    assert entry.detail == "MANAGER → Cole League: manager on leave"
    assert await refusal(decide(handle, approve(MANAGER))) == Refusal.ROLE_MISSING
    view = await last_approval(handle, approve(COLLEAGUE))
    assert view.state == WorkflowState.ACTION_EXECUTED


async def test_admin_reassigns_to_a_role(client: Client, task_queue: str) -> None:
    handle = await start(client, task_queue, FOLLOW_UP)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    view = await handle.execute_update(
        ApprovalWorkflow.reassign,
        ReassignInput(admin=ADMIN, to_role=Role.DIRECTOR, reason="needs a director"),
    )
    assert (view.chain[0].role, view.chain[0].reassigned_from) == (Role.DIRECTOR, Role.MANAGER)
    assert await refusal(decide(handle, approve(MANAGER))) == Refusal.ROLE_MISSING
    assert (await last_approval(handle, approve(DIRECTOR))).state == WorkflowState.ACTION_EXECUTED


async def test_admin_reassigns_a_step_of_several_roles_to_one_role(client: Client, task_queue: str) -> None:
    several = ApprovalPolicy.model_validate(
        {"rules": [{"when": "true", "steps": [{"any_of": ["FINANCE", "MANAGER"], "quorum": 2}]}]}
    )
    handle = await start(client, task_queue, FOLLOW_UP, policy=several)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    view = await decide(handle, approve(FINANCE))
    assert view.chain[0].approvals() == 1
    view = await handle.execute_update(
        ApprovalWorkflow.reassign,
        ReassignInput(admin=ADMIN, to_role=Role.DIRECTOR, reason="needs a director"),
    )
    # The step now awaits the DIRECTOR alone: neither of its former roles may add the second approval.
    assert (view.chain[0].role, view.chain[0].any_of, view.chain[0].reassigned_from) == (
        Role.DIRECTOR,
        [],
        Role.FINANCE,
    )
    assert view.audit[-1].detail.startswith("FINANCE | MANAGER → DIRECTOR")
    assert await refusal(decide(handle, approve(MANAGER))) == Refusal.ROLE_MISSING
    assert (await last_approval(handle, approve(DIRECTOR))).state == WorkflowState.ACTION_EXECUTED


async def test_requester_withdraws_before_execution(
    client: Client, task_queue: str, tmp_path: object
) -> None:
    handle = await start(client, task_queue, LAPTOPS)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    await decide(handle, approve(MANAGER))
    view = await handle.execute_update(
        ApprovalWorkflow.withdraw, CancelInput(principal=REQUESTER, reason="bought elsewhere")
    )
    assert view.state == WorkflowState.CANCELLED
    assert (await handle.result()).state == WorkflowState.CANCELLED
    entry = next(e for e in view.audit if e.event == "cancelled")
    assert (entry.actor, entry.detail) == (REQUESTER.name, "withdrawn: bought elsewhere")
    assert view.chain[1].status == "cancelled"
    assert await tool_records(tmp_path) == []
    # Finished: the server itself refuses further updates (the gateway answers 409).
    with pytest.raises(RPCError, match="already completed"):
        again = CancelInput(principal=REQUESTER, reason="again")
        await handle.execute_update(ApprovalWorkflow.withdraw, again)


async def test_withdrawal_after_execution_is_too_late(
    client: Client, task_queue: str, tmp_path: object
) -> None:
    handle = await start(client, task_queue, FOLLOW_UP)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    # The approval answers once the action has started: from then on a withdrawal is too late.
    assert (await decide(handle, approve(MANAGER))).state == WorkflowState.APPROVED
    late = CancelInput(principal=REQUESTER, reason="changed my mind")
    try:
        refused = await refusal(handle.execute_update(ApprovalWorkflow.withdraw, late))
    except RPCError as closed:
        # The action ran and the workflow closed before the withdrawal arrived: too late all the same.
        assert "already completed" in closed.message
    else:
        assert refused == Refusal.TOO_LATE
    assert (await handle.result()).state == WorkflowState.ACTION_EXECUTED
    assert len(await outbox_messages(tmp_path)) == 1


async def test_an_admin_may_withdraw_for_the_requester(client: Client, task_queue: str) -> None:
    handle = await start(client, task_queue, FOLLOW_UP)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    view = await handle.execute_update(
        ApprovalWorkflow.withdraw, CancelInput(principal=ADMIN, reason="duplicate")
    )
    assert view.state == WorkflowState.CANCELLED


# FINANCE's step may be decided by DIRECTOR too once it escalates (at its SLA, 8 hours by default).
SOD_POLICY = ApprovalPolicy.model_validate(
    {
        "version": "sod-test",
        "rules": [
            {"when": "true", "steps": [{"role": "MANAGER"}, {"role": "FINANCE", "escalate_to": "DIRECTOR"}]}
        ],
    }
)


async def test_a_delegates_own_step_goes_on_to_others_at_once(client: Client, task_queue: str) -> None:
    """FINANCE stands in for the MANAGER at step 1. Segregation of duties: one person decides once in a
    chain, so FINANCE may not decide step 2 (FINANCE's own) too. The step does not wait for them, for its
    SLA or for an ADMIN: it is escalated at once, and DIRECTOR, its escalation role, decides it."""
    handle = await start(client, task_queue, FOLLOW_UP, policy=SOD_POLICY)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    view = await decide(handle, approve(FINANCE, acting_for=[MANAGER]))
    assert (view.state, view.current_step) == (WorkflowState.ESCALATED, 1)
    assert view.chain[1].deciding_roles == [Role.FINANCE, Role.DIRECTOR]
    entry = view.audit[-1]
    assert (entry.event, entry.actor, entry.role) == ("escalated", "segregation_of_duties", Role.DIRECTOR)
    assert FINANCE.name in entry.detail and MANAGER.name in entry.detail
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await decide(handle, approve(FINANCE))
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == Refusal.ALREADY_DECIDED
    assert "step 1 on behalf of Morgan Manager" in cause.message, cause.message
    view = await last_approval(handle, approve(DIRECTOR))
    assert view.state == WorkflowState.ACTION_EXECUTED


async def test_a_delegates_own_step_without_an_escalation_role_is_escalated_for_others(
    client: Client, task_queue: str
) -> None:
    """The shipped policy's FINANCE step names no escalation role: the step is still marked escalated at
    once (ADMIN told to reassign it if nobody else holds FINANCE), and another FINANCE holder decides."""
    handle = await start(client, task_queue, LAPTOPS)
    await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
    view = await decide(handle, approve(FINANCE, acting_for=[MANAGER]))
    assert (view.state, view.current_step) == (WorkflowState.ESCALATED, 1)
    assert view.chain[1].deciding_roles == [Role.FINANCE]
    assert view.audit[-1].event == "escalated"
    assert await refusal(decide(handle, approve(FINANCE))) == Refusal.ALREADY_DECIDED
    view = await decide(handle, approve(FINANCE_2))
    assert (view.state, view.current_step) == (WorkflowState.WAITING_FOR_APPROVAL, 2)

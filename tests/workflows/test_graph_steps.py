"""Graph approval nodes on the approval-step engine requests use (workflows/steps/): notified, reminded,
escalated to their `escalate_to`, reassignable by an ADMIN, and of several roles (`any_of`)."""

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from countersign.llm.rules import RulesPlanner
from countersign.models import search_attributes as sa
from countersign.models.decisions import ReassignInput, Refusal
from countersign.models.enums import Decision, Role, WorkflowState
from countersign.models.graph import GraphRunView, RunStatus
from countersign.models.principals import Principal
from countersign.store.audit_store import AuditStore
from countersign.store.principals import PrincipalStore
from countersign.store.sql import default_url
from countersign.worker import WorkerGroup, build_worker
from countersign.workflows.graph import GraphWorkflow
from tests.helpers import DIRECTOR, MANAGER, TEST_TRUST, notification_records
from tests.workflows.test_graph import NODES, decide, graph, run_graph, waiting

ADMIN = Principal(id="p-adm", name="Ada Admin", roles=[Role.ADMIN])
FINANCE = Principal(id="p-fin", name="Fin Ance", roles=[Role.FINANCE])


def reviewed(**approval: Any) -> Any:
    return graph(
        nodes=[
            {"id": "draft", "fn": "t.inc"},
            {
                "id": "review",
                "kind": "approval",
                "approval": {"prompt": "Publish draft {count}?", **approval},
            },
            {"id": "publish", "fn": "t.double"},
        ],
        edges=[{"from": "draft", "to": "review"}, {"from": "review", "to": "publish"}],
    )


def worker(client: Client, task_queue: str, data_dir: Path) -> WorkerGroup:
    return build_worker(
        client,
        task_queue=task_queue,
        data_dir=data_dir,
        planner=RulesPlanner(),
        node_registry=NODES,
        trust=TEST_TRUST,
    )


async def waiting_skipping(handle: WorkflowHandle[GraphWorkflow, GraphRunView]) -> GraphRunView:
    # Queries do not advance time-skipping; poll the real clock briefly.
    for _ in range(200):
        view = await handle.query(GraphWorkflow.view)
        if view.status == RunStatus.WAITING_FOR_APPROVAL:
            return view
        await asyncio.sleep(0.05)
    raise AssertionError("the run never waited for approval")


async def refused_code(
    handle: WorkflowHandle[GraphWorkflow, GraphRunView], reviewer: Principal
) -> str | None:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(GraphWorkflow.decide, decide(reviewer, Decision.APPROVED))
    cause = caught.value.cause
    return cause.type if isinstance(cause, ApplicationError) else None


async def test_a_graph_approval_node_is_notified_reminded_and_escalated_to_its_role(
    time_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    async with await PrincipalStore.open(default_url(tmp_path)) as store:
        manager = (await store.add("Mo", [Role.MANAGER], email="mo@corp.example")).principal
        director = (await store.add("Di", [Role.DIRECTOR], email="di@corp.example")).principal
    async with worker(time_env.client, task_queue, tmp_path):
        handle = await run_graph(
            time_env.client,
            task_queue,
            reviewed(role="MANAGER", reminder="30m", sla="1h", deadline="4h", escalate_to="DIRECTOR"),
        )
        await waiting_skipping(handle)
        await time_env.sleep(timedelta(minutes=31))
        # Before the SLA passes the escalation role may not decide.
        assert await refused_code(handle, director) == Refusal.ROLE_MISSING
        await time_env.sleep(timedelta(minutes=30))
        escalated = await handle.query(GraphWorkflow.view)
        assert escalated.waiting is not None
        assert escalated.waiting.step.deciding_roles == [Role.MANAGER, Role.DIRECTOR]
        assert "SLA passed: DIRECTOR may decide too" in escalated.logs
        # Listed as escalated, as a request's step is (the inbox's `escalated_only` reads this).
        described = await handle.describe()
        assert described.typed_search_attributes.get(sa.STATE) == WorkflowState.ESCALATED.value
        await handle.execute_update(GraphWorkflow.decide, decide(director, Decision.APPROVED))
        done = await handle.result()
    assert done.status == RunStatus.COMPLETED and done.data["review_approved"] is True
    told = {n["kind"]: {r["id"] for r in n["recipients"]} for n in await notification_records(tmp_path)}  # type: ignore[union-attr, index]
    assert told == {
        "pending": {manager.id},
        "reminder": {manager.id},
        "escalation": {manager.id, director.id},
    }
    # Subjects carry deterministic fields only; the prompt (the run's data) is quoted in the body.
    notes = await notification_records(tmp_path)
    assert all("Publish draft" not in str(n["subject"]) for n in notes)
    assert any("> Publish draft 1?" in str(n["body"]) for n in notes)


async def test_an_admin_reassigns_a_graph_approval_node_to_one_person(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    async with build_worker(
        client,
        task_queue=task_queue,
        data_dir=tmp_path,
        planner=RulesPlanner(),
        node_registry=NODES,
        trust=TEST_TRUST,
    ):
        handle = await run_graph(client, task_queue, reviewed(role="MANAGER"))
        await waiting(handle)
        # Only an ADMIN may reassign, with a reason, and not to themselves.
        for request, code in [
            (ReassignInput(admin=MANAGER, to_role=Role.DIRECTOR, reason="busy"), Refusal.ROLE_MISSING),
            (ReassignInput(admin=ADMIN, to_role=Role.DIRECTOR, reason=" "), Refusal.REASON_REQUIRED),
            (ReassignInput(admin=ADMIN, to_principal=ADMIN, reason="mine"), Refusal.NOT_ALLOWED),
        ]:
            with pytest.raises(WorkflowUpdateFailedError) as caught:
                await handle.execute_update(GraphWorkflow.reassign, request)
            assert getattr(caught.value.cause, "type", None) == code
        view = await handle.execute_update(
            GraphWorkflow.reassign,
            ReassignInput(admin=ADMIN, to_principal=FINANCE, reason="MANAGER on leave"),
        )
        assert view.waiting is not None and view.waiting.step.assignee_id == FINANCE.id
        # The step is the named person's now: a MANAGER no longer decides it.
        assert await refused_code(handle, MANAGER) is not None
        await handle.execute_update(GraphWorkflow.decide, decide(FINANCE, Decision.APPROVED))
        done = await handle.result()
    assert done.status == RunStatus.COMPLETED
    async with await AuditStore.open(f"sqlite:///{tmp_path / 'audit.db'}", keyring=TEST_TRUST.audit) as audit:
        events = [(e.event, e.actor) for e in await audit.for_workflow(handle.id)]
    assert ("reassigned", ADMIN.name) in events and ("decision_approved", FINANCE.name) in events


async def test_a_graph_approval_node_of_several_roles_takes_two_distinct_people(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    async with build_worker(
        client,
        task_queue=task_queue,
        data_dir=tmp_path,
        planner=RulesPlanner(),
        node_registry=NODES,
        trust=TEST_TRUST,
    ):
        handle = await run_graph(client, task_queue, reviewed(any_of=["FINANCE", "DIRECTOR"], quorum=2))
        view = await waiting(handle)
        assert view.waiting is not None and view.waiting.step.deciding_roles == [Role.FINANCE, Role.DIRECTOR]
        assert await refused_code(handle, MANAGER) == Refusal.ROLE_MISSING
        await handle.execute_update(GraphWorkflow.decide, decide(FINANCE, Decision.APPROVED))
        assert await refused_code(handle, FINANCE) == Refusal.ALREADY_DECIDED
        await handle.execute_update(GraphWorkflow.decide, decide(DIRECTOR, Decision.APPROVED))
        done = await handle.result()
    assert done.status == RunStatus.COMPLETED and done.data["review_approved"] is True

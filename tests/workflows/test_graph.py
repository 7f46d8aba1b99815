"""GraphWorkflow on the Temporal dev server: branching, guarded loops, parallel joins, failures, approval
nodes, the event stream, continue-as-new and a worker restart in the middle of a run."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.contrib.workflow_streams import WorkflowStreamClient
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from countersign.api.services.graph_runs import snapshot
from countersign.graphs.registry import NodeContext, NodeRegistry, build_node_registry, node_fn
from countersign.graphs.shipped import shipped_definitions
from countersign.llm.rules import RulesPlanner
from countersign.models import search_attributes as sa
from countersign.models.decisions import DecideInput
from countersign.models.enums import Decision, Role
from countersign.models.graph import GraphDefinition, GraphRunInput, GraphRunView, NodeEvent, RunStatus
from countersign.models.principals import Principal
from countersign.store.audit_store import AuditStore
from countersign.worker import WorkerGroup, build_worker
from countersign.workflows.graph import EVENTS_TOPIC, GraphWorkflow
from tests.graphs import test_review as review_cases
from tests.helpers import FINANCE, MANAGER, MANAGER_2, OTHER_TENANT_MANAGER, REQUESTER, TEST_TRUST, eventually

NODES = NodeRegistry()


@node_fn("t.inc", registry=NODES, local=True)
def inc(ctx: NodeContext) -> dict[str, Any]:
    count = int(ctx.state.get("count", 0)) + 1
    ctx.log(f"count is now {count}")
    return {"count": count}


@node_fn("t.double", registry=NODES)
async def double(ctx: NodeContext) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"doubled": int(ctx.state["count"]) * 2}


@node_fn("t.left", registry=NODES)
def left(ctx: NodeContext) -> dict[str, Any]:
    return {"left": ctx.state["count"] + 10}


@node_fn("t.right", registry=NODES)
async def right(ctx: NodeContext) -> dict[str, Any]:
    return {"right": ctx.state["count"] + 20}


@node_fn("t.clash", registry=NODES)
def clash(ctx: NodeContext) -> dict[str, Any]:
    return {"left": -1}


@node_fn("t.sum", registry=NODES)
def total(ctx: NodeContext) -> dict[str, Any]:
    return {"sum": ctx.state["left"] + ctx.state["right"]}


@node_fn("t.boom", registry=NODES)
def boom(ctx: NodeContext) -> None:
    raise RuntimeError("the disk is full")


@node_fn("t.nothing", registry=NODES)
def nothing(ctx: NodeContext) -> None:
    return None


@node_fn("t.slow", registry=NODES)
async def slow(ctx: NodeContext) -> None:
    await asyncio.sleep(60)  # until the run is cancelled (the worker cancels it at shutdown)


@pytest.fixture
async def graph_worker(client: Client, task_queue: str, tmp_path: Path) -> AsyncIterator[WorkerGroup]:
    worker = build_worker(
        client,
        task_queue=task_queue,
        data_dir=tmp_path,
        planner=RulesPlanner(),
        node_registry=NODES,
        trust=TEST_TRUST,
    )
    async with worker:
        yield worker


def graph(**definition: Any) -> GraphDefinition:
    return GraphDefinition.model_validate({"id": "test-graph", **definition})


async def run_graph(
    client: Client,
    task_queue: str,
    definition: GraphDefinition,
    data: dict[str, Any] | None = None,
    requester: Principal = REQUESTER,
    **options: Any,
) -> WorkflowHandle[GraphWorkflow, GraphRunView]:
    run_id = f"graph-default-{uuid.uuid4().hex[:12]}"
    return await client.start_workflow(
        GraphWorkflow.run,
        GraphRunInput(
            run_id=run_id,
            graph_id=definition.id,
            version=1,
            definition=definition,
            input=data or {},
            requester=requester,
            **options,
        ),
        id=run_id,
        task_queue=task_queue,
    )


async def events_of(client: Client, run_id: str) -> list[NodeEvent]:
    stream = WorkflowStreamClient.create(client, run_id)
    return [item.data async for item in stream.subscribe(EVENTS_TOPIC, result_type=NodeEvent)]


LOOP = graph(
    nodes=[
        {"id": "inc", "fn": "t.inc", "max_visits": 5},
        {"id": "double", "fn": "t.double"},
        {"id": "done", "kind": "end"},
    ],
    edges=[
        {"from": "inc", "to": "inc", "when": "state.count < 3"},
        {"from": "inc", "to": "double"},
        {"from": "double", "to": "done"},
    ],
)


@pytest.mark.usefixtures("graph_worker")
async def test_a_guarded_loop_runs_until_its_condition_fails(client: Client, task_queue: str) -> None:
    view = await (await run_graph(client, task_queue, LOOP)).result()
    assert view.status == RunStatus.COMPLETED and view.error is None
    assert view.data == {"count": 3, "doubled": 6}
    assert view.visits == {"inc": 3, "double": 1, "done": 1}
    # Seed 003's log lines, with the node's own lines in between.
    assert view.logs[:4] == [
        "Starting graph test-graph v1",
        "Executing Node: inc",
        "count is now 1",
        "Routing to: inc",
    ]
    assert view.logs[-1] == "Workflow reached END." and view.current_node is None


@pytest.mark.usefixtures("graph_worker")
async def test_the_guard_stops_a_loop_that_would_not_end(client: Client, task_queue: str) -> None:
    runaway = graph(
        nodes=[{"id": "inc", "fn": "t.inc", "max_visits": 4}], edges=[{"from": "inc", "to": "inc"}]
    )
    view = await (await run_graph(client, task_queue, runaway)).result()
    assert view.status == RunStatus.FAILED
    assert view.error == "node 'inc' was reached 5 times; its max_visits is 4"
    assert view.data == {"count": 4}


@pytest.mark.usefixtures("graph_worker")
async def test_branching_takes_the_first_edge_that_holds(client: Client, task_queue: str) -> None:
    branchy = graph(
        nodes=[
            {"id": "start", "fn": "t.nothing"},
            {"id": "big", "fn": "t.double"},
            {"id": "small", "fn": "t.inc"},
        ],
        edges=[
            {"from": "start", "to": "big", "when": "state.count >= 10 and state.mode == 'fast'"},
            {"from": "start", "to": "small"},
        ],
    )
    big = await (await run_graph(client, task_queue, branchy, {"count": 12, "mode": "fast"})).result()
    small = await (await run_graph(client, task_queue, branchy, {"count": 12, "mode": "slow"})).result()
    assert big.data["doubled"] == 24 and "big" in big.visits and "small" not in big.visits
    assert small.data["count"] == 13 and "big" not in small.visits
    # No edge holds: a dead end fails the run and names the node.
    stuck = graph(
        nodes=[{"id": "start", "fn": "t.nothing"}, {"id": "big", "fn": "t.double"}],
        edges=[{"from": "start", "to": "big", "when": "state.count > 100"}],
    )
    failed = await (await run_graph(client, task_queue, stuck, {"count": 1})).result()
    assert failed.status == RunStatus.FAILED
    assert failed.error == "no edge from 'start' holds (state.count > 100)"


@pytest.mark.usefixtures("graph_worker")
async def test_parallel_branches_run_at_once_and_join(client: Client, task_queue: str) -> None:
    fan = graph(
        nodes=[
            {"id": "inc", "fn": "t.inc"},
            {"id": "left", "fn": "t.left"},
            {"id": "right", "fn": "t.right"},
            {"id": "sum", "fn": "t.sum"},
        ],
        parallel=[{"id": "both", "branches": ["left", "right"], "join": "sum"}],
        edges=[{"from": "inc", "to": "both"}],
    )
    handle = await run_graph(client, task_queue, fan, {"count": 1})
    view = await handle.result()
    assert view.status == RunStatus.COMPLETED
    assert view.data == {"count": 2, "left": 12, "right": 22, "sum": 34}
    events = await events_of(client, handle.id)
    started = [e.node for e in events if e.kind == "node_started"]
    assert started == ["inc", "both", "left", "right", "sum"]
    finished = [e.node for e in events if e.kind == "node_finished"]
    assert finished.index("both") > max(finished.index("left"), finished.index("right"))
    assert finished.index("sum") > finished.index("both")

    clashing = fan.model_copy(deep=True)
    clashing.nodes[2].fn = "t.clash"
    failed = await (await run_graph(client, task_queue, clashing, {"count": 1})).result()
    assert failed.status == RunStatus.FAILED
    assert failed.error == "parallel branches 'left' and 'right' both set 'left'"


@pytest.mark.usefixtures("graph_worker")
async def test_a_failing_node_fails_the_run_after_its_retries(client: Client, task_queue: str) -> None:
    failing = graph(
        nodes=[
            {"id": "inc", "fn": "t.inc"},
            {"id": "save", "fn": "t.boom", "retry": {"max_attempts": 2, "initial_interval": "1s"}},
        ],
        edges=[{"from": "inc", "to": "save"}],
    )
    handle = await run_graph(client, task_queue, failing)
    view = await handle.result()
    assert view.status == RunStatus.FAILED
    assert view.error == "node 'save' failed: the disk is full"
    assert view.data == {"count": 1}  # what ran before the failure is kept
    kinds = [(e.kind, e.node) for e in await events_of(client, handle.id)]
    assert kinds[-2:] == [("node_failed", "save"), ("run_ended", None)]


@pytest.mark.usefixtures("graph_worker")
async def test_every_event_streams_once_in_order_and_late_subscribers_get_the_backlog(
    client: Client, task_queue: str
) -> None:
    handle = await run_graph(client, task_queue, LOOP)
    live_task = asyncio.create_task(events_of(client, handle.id))
    view = await handle.result()
    live = await asyncio.wait_for(live_task, timeout=30)
    late = await events_of(client, handle.id)
    assert [e.seq for e in live] == list(range(view.events))
    assert late == live
    assert live[0].kind == "run_started" and live[-1].kind == "run_ended"
    assert live[-1].status == RunStatus.COMPLETED
    finished = [e for e in live if e.kind == "node_finished"]
    assert [e.output_keys for e in finished] == [["count"]] * 3 + [["doubled"]]
    assert all(e.duration_ms is not None and e.duration_ms >= 0 for e in finished)


@pytest.mark.usefixtures("graph_worker")
async def test_a_long_run_continues_as_new_and_loses_nothing(client: Client, task_queue: str) -> None:
    long_loop = graph(
        nodes=[{"id": "inc", "fn": "t.inc", "max_visits": 100}, {"id": "done", "kind": "end"}],
        edges=[{"from": "inc", "to": "inc", "when": "state.count < 60"}, {"from": "inc", "to": "done"}],
    )
    handle = await run_graph(client, task_queue, long_loop, continue_after_events=50)
    view = await handle.result()
    assert view.status == RunStatus.COMPLETED
    assert view.data == {"count": 60} and view.visits == {"inc": 60, "done": 1}
    description = await handle.describe()
    assert description.run_id != handle.first_execution_run_id  # it did continue as new
    events = await events_of(client, handle.id)
    assert [e.seq for e in events] == list(range(view.events))
    assert sum(1 for e in events if e.kind == "run_started") == 1


APPROVAL = graph(
    nodes=[
        {"id": "draft", "fn": "t.inc"},
        {
            "id": "review",
            "kind": "approval",
            "approval": {"role": "MANAGER", "prompt": "Publish draft {count}?", "on_reject": "redo"},
        },
        {"id": "publish", "fn": "t.double"},
        {"id": "redo", "fn": "t.nothing"},
    ],
    edges=[{"from": "draft", "to": "review"}, {"from": "review", "to": "publish"}],
)


async def waiting(handle: WorkflowHandle[GraphWorkflow, GraphRunView]) -> GraphRunView:
    return await eventually(
        lambda: handle.query(GraphWorkflow.view), lambda v: v.status == RunStatus.WAITING_FOR_APPROVAL
    )


def decide(reviewer: Principal, decision: Decision, notes: str | None = None) -> DecideInput:
    return DecideInput(reviewer=reviewer, decision=decision, notes=notes, proposal_version=1)


@pytest.mark.usefixtures("graph_worker")
async def test_an_approval_node_waits_for_the_right_reviewer(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    handle = await run_graph(client, task_queue, APPROVAL)
    view = await waiting(handle)
    assert view.waiting is not None and view.waiting.prompt == "Publish draft 1?"
    assert view.current_node == "review"
    for refused, code in [
        (REQUESTER.model_copy(update={"roles": [Role.MANAGER]}), "SelfApproval"),
        (FINANCE, "RoleMissing"),
        (OTHER_TENANT_MANAGER, "WrongTenant"),
    ]:
        with pytest.raises(WorkflowUpdateFailedError) as caught:
            await handle.execute_update(GraphWorkflow.decide, decide(refused, Decision.APPROVED))
        assert getattr(caught.value.cause, "type", None) == code
    with pytest.raises(WorkflowUpdateFailedError) as no_reason:
        await handle.execute_update(GraphWorkflow.decide, decide(MANAGER, Decision.REJECTED))
    assert getattr(no_reason.value.cause, "type", None) == "ReasonRequired"

    await handle.execute_update(GraphWorkflow.decide, decide(MANAGER, Decision.APPROVED, "looks good"))
    done = await handle.result()
    assert done.status == RunStatus.COMPLETED
    assert done.data == {"count": 1, "review_approved": True, "doubled": 2}
    assert "redo" not in done.visits
    async with await AuditStore.open(f"sqlite:///{tmp_path / 'audit.db'}", keyring=TEST_TRUST.audit) as store:
        audited = await store.for_workflow(handle.id)
    assert [(e.event, e.actor) for e in audited] == [
        ("awaiting_approval", "graph"),
        ("decision_approved", MANAGER.name),
    ]
    assert audited[1].data is not None and audited[1].data["principal_id"] == MANAGER.id


@pytest.mark.usefixtures("graph_worker")
async def test_a_rejection_follows_on_reject_or_ends_the_run(client: Client, task_queue: str) -> None:
    handle = await run_graph(client, task_queue, APPROVAL)
    await waiting(handle)
    await handle.execute_update(GraphWorkflow.decide, decide(MANAGER, Decision.REJECTED, "not yet"))
    rerouted = await handle.result()
    assert rerouted.status == RunStatus.COMPLETED
    assert (
        rerouted.data["review_approved"] is False
        and "redo" in rerouted.visits
        and "publish" not in rerouted.visits
    )

    strict = APPROVAL.model_copy(deep=True)
    assert strict.nodes[1].approval is not None
    strict.nodes[1].approval.on_reject = None
    handle = await run_graph(client, task_queue, strict)
    await waiting(handle)
    await handle.execute_update(GraphWorkflow.decide, decide(MANAGER_2, Decision.REJECTED, "no"))
    assert (await handle.result()).status == RunStatus.REJECTED


async def test_a_run_waiting_for_approval_survives_a_worker_restart(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    def new_worker() -> WorkerGroup:
        return build_worker(
            client,
            task_queue=task_queue,
            data_dir=tmp_path,
            planner=RulesPlanner(),
            node_registry=NODES,
            trust=TEST_TRUST,
        )

    async with new_worker():
        handle = await run_graph(client, task_queue, APPROVAL)
        await waiting(handle)
    # No worker: the run waits in Temporal, not in any process.
    async with new_worker():
        await handle.execute_update(GraphWorkflow.decide, decide(MANAGER, Decision.APPROVED))
        view = await handle.result()
    assert view.status == RunStatus.COMPLETED and view.data["doubled"] == 2


async def test_an_unanswered_approval_node_escalates_then_expires(
    time_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    slow = APPROVAL.model_copy(deep=True)
    assert slow.nodes[1].approval is not None
    slow.nodes[1].approval.sla = 3600
    slow.nodes[1].approval.deadline = 3 * 3600
    worker = build_worker(
        time_env.client,
        task_queue=task_queue,
        data_dir=tmp_path,
        planner=RulesPlanner(),
        node_registry=NODES,
        trust=TEST_TRUST,
    )
    async with worker:
        handle = await run_graph(time_env.client, task_queue, slow)
        await waiting(handle)
        await time_env.sleep(timedelta(hours=1, minutes=1))
        escalated = await handle.query(GraphWorkflow.view)
        assert escalated.status == RunStatus.WAITING_FOR_APPROVAL
        assert escalated.waiting is not None and escalated.waiting.step.deciding_roles == [
            Role.MANAGER,
            Role.ADMIN,
        ]
        assert "SLA passed: ADMIN may decide too" in escalated.logs
        expired = await handle.result()  # nobody decides: time skips to the deadline
    assert expired.status == RunStatus.EXPIRED
    assert expired.data["review_approved"] is False and "publish" not in expired.visits
    assert expired.logs[-1] == "Deadline passed: expired"


@pytest.mark.parametrize(
    ("case", "stopped"),
    [
        ("CLEAN", "threshold met"),
        ("COMPLEX", "no further automatic fixes"),
        ("BUGGY", None),
        ("BROKEN", "syntax error"),
    ],
)
@pytest.mark.usefixtures("worker")
async def test_demo_review_ends_on_every_input(
    client: Client, task_queue: str, case: str, stopped: str | None
) -> None:
    """The shipped graph on Temporal, with the shipped node functions: the loop always ends, and the
    short but complex function (seed 004's endless loop) stops once nothing more can be fixed."""
    codes = {
        **{name: getattr(review_cases, name) for name in ("CLEAN", "COMPLEX", "BUGGY")},
        "BROKEN": "def f(:\n",
    }
    (demo,) = shipped_definitions()
    view = await (
        await run_graph(client, task_queue, snapshot(demo, build_node_registry()), {"code": codes[case]})
    ).result()
    assert view.status == RunStatus.COMPLETED, view.error
    report = view.data["report"]
    if stopped is not None:
        assert report["stopped_because"] == stopped
    assert report["rounds"] <= demo.defaults["max_rounds"]
    # analyze runs once, then once after each improvement round (a syntax error is never improved).
    assert view.visits["analyze"] == report["rounds"] + 1
    if case == "BUGGY":
        assert "except:" not in view.data["code"] and "== None" not in view.data["code"]


@pytest.mark.usefixtures("graph_worker")
async def test_the_audit_chain_continues_across_continue_as_new(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    twice = graph(
        nodes=[
            {"id": "first", "kind": "approval", "approval": {"role": "MANAGER"}},
            {"id": "inc", "fn": "t.inc", "max_visits": 100},
            {"id": "second", "kind": "approval", "approval": {"role": "MANAGER"}},
        ],
        edges=[
            {"from": "first", "to": "inc"},
            {"from": "inc", "to": "inc", "when": "state.count < 40"},
            {"from": "inc", "to": "second"},
        ],
    )
    handle = await run_graph(client, task_queue, twice, continue_after_events=50)
    for node in ("first", "second"):
        await eventually(
            lambda: handle.query(GraphWorkflow.view),
            lambda v, n=node: v.waiting is not None and v.waiting.node == n,
        )
        await handle.execute_update(GraphWorkflow.decide, decide(MANAGER, Decision.APPROVED))
    view = await handle.result()
    assert view.status == RunStatus.COMPLETED and view.data["count"] == 40
    assert (await handle.describe()).run_id != handle.first_execution_run_id
    async with await AuditStore.open(f"sqlite:///{tmp_path / 'audit.db'}", keyring=TEST_TRUST.audit) as store:
        audited = await store.for_workflow(handle.id)
        assert (await store.verify(handle.id)).broken == []
    assert [(e.seq, e.event, (e.data or {}).get("node")) for e in audited] == [
        (0, "awaiting_approval", "first"),
        (1, "decision_approved", "first"),
        (2, "awaiting_approval", "second"),
        (3, "decision_approved", "second"),
    ]


async def cancelled_view(handle: WorkflowHandle[GraphWorkflow, GraphRunView]) -> GraphRunView:
    """Cancel the run; it must end cancelled in Temporal and say so in its view and attributes."""
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as ended:
        await handle.result()
    assert isinstance(ended.value.cause, CancelledError)
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.CANCELED
    assert description.typed_search_attributes.get(sa.STATE) == RunStatus.CANCELLED.value
    return await handle.query(GraphWorkflow.view)


@pytest.mark.usefixtures("graph_worker")
async def test_a_run_cancelled_during_a_node_ends_cancelled_not_failed(
    client: Client, task_queue: str
) -> None:
    definition = graph(nodes=[{"id": "slow", "fn": "t.slow"}, {"id": "done", "kind": "end"}], edges=[])
    handle = await run_graph(client, task_queue, definition)
    await eventually(lambda: handle.query(GraphWorkflow.view), lambda v: v.current_node == "slow")
    view = await cancelled_view(handle)
    assert (view.status, view.error, view.current_node) == (RunStatus.CANCELLED, "cancelled", None)
    events = await events_of(client, handle.id)
    assert "node_failed" not in [e.kind for e in events]
    assert (events[-1].kind, events[-1].status) == ("run_ended", RunStatus.CANCELLED)


@pytest.mark.usefixtures("graph_worker")
async def test_a_run_cancelled_while_waiting_for_approval_ends_cancelled(
    client: Client, task_queue: str
) -> None:
    handle = await run_graph(client, task_queue, APPROVAL)
    await waiting(handle)
    view = await cancelled_view(handle)
    assert (view.status, view.waiting) == (RunStatus.CANCELLED, None)
    events = await events_of(client, handle.id)
    assert (events[-1].kind, events[-1].status) == ("run_ended", RunStatus.CANCELLED)

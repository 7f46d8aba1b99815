"""Graph node failures of every kind on the Temporal dev server: MemoryError, RecursionError, other
BaseExceptions, refusals and bad outputs end the run FAILED, with the reason in its view and
`run_ended` last in its stream; those another attempt would repeat are not retried. And the shipped
demo-review refuses code past the parser's limits that way, instead of failing the execution with its
view left RUNNING and no `run_ended` (what happened before)."""

import ast
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from countersign.api.services.graph_runs import snapshot
from countersign.graphs.registry import NodeContext, NodeError, NodeRegistry, build_node_registry, node_fn
from countersign.graphs.shipped import shipped_definitions
from countersign.llm.rules import RulesPlanner
from countersign.models.graph import GraphRunView, RunStatus
from countersign.worker import WorkerGroup, build_worker
from countersign.workflows.graph import GraphWorkflow
from tests.graphs.test_review_limits import THE_ORIGINAL_INPUTS
from tests.helpers import TEST_TRUST
from tests.workflows.test_graph import events_of, graph, run_graph

NODES = NodeRegistry()


class Halt(BaseException):
    """Neither an Exception nor cancellation or shutdown."""


@node_fn("f.parse_bomb", registry=NODES)
def parse_bomb(ctx: NodeContext) -> None:
    ast.parse("-" * 10_000 + "1")  # the parser's stack overflows: MemoryError, with no message


@node_fn("f.recurse", registry=NODES)
def recurse(ctx: NodeContext) -> None:
    def down(n: int) -> int:
        return down(n + 1) + 1

    down(0)


@node_fn("f.halt", registry=NODES)
def halt(ctx: NodeContext) -> None:
    raise Halt("stop right there")


@node_fn("f.refuse", registry=NODES)
def refuse(ctx: NodeContext) -> None:
    raise NodeError("the input is not a review", type="InputRefused")


@node_fn("f.list", registry=NODES)
def returns_a_list(ctx: NodeContext) -> Any:
    return [1, 2, 3]


@node_fn("f.ok", registry=NODES)
def ok(ctx: NodeContext) -> dict[str, Any]:
    return {"started": True}


@pytest.fixture
async def failure_worker(client: Client, task_queue: str, tmp_path: Path) -> AsyncIterator[WorkerGroup]:
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


async def attempts(handle: WorkflowHandle[Any, Any]) -> list[int]:
    """The attempt each regular activity of the run ended on (history records only the last one)."""
    return [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_started_event_attributes")
    ]


async def assert_failed(client: Client, handle: WorkflowHandle[Any, GraphRunView], error: str) -> None:
    view = await handle.result()  # the run ends; its view says how
    assert view.status == RunStatus.FAILED and view.error == error
    assert view.current_node is None and view.ended_at is not None
    assert (await handle.query(GraphWorkflow.view)).status == RunStatus.FAILED
    events = await events_of(client, handle.id)
    node = error.split("'")[1]
    assert [(e.kind, e.node) for e in events[-2:]] == [("node_failed", node), ("run_ended", None)]
    assert events[-1].status == RunStatus.FAILED


RETRY = {"max_attempts": 3, "initial_interval": 1}


@pytest.mark.usefixtures("failure_worker")
@pytest.mark.parametrize(
    ("fn", "error"),
    [
        ("f.parse_bomb", "the node function ran out of memory (MemoryError)"),
        (
            "f.recurse",
            "the node function recursed too deeply (RecursionError: maximum recursion depth exceeded)",
        ),
        ("f.refuse", "the input is not a review"),
        ("f.list", "node function 'f.list' returned list, not a dict or None"),
    ],
)
async def test_failures_a_retry_would_repeat_end_the_run_failed_at_once(
    client: Client, task_queue: str, fn: str, error: str
) -> None:
    definition = graph(
        nodes=[{"id": "first", "fn": "f.ok"}, {"id": "broken", "fn": fn, "retry": RETRY, "local": False}],
        edges=[{"from": "first", "to": "broken"}],
    )
    handle = await run_graph(client, task_queue, definition)
    await assert_failed(client, handle, f"node 'broken' failed: {error}")
    assert (await handle.result()).data == {"started": True}  # what ran before is kept
    assert (await attempts(handle))[-1] == 1  # not retried: the same state fails the same way


@pytest.mark.usefixtures("failure_worker")
async def test_any_other_base_exception_fails_the_node_after_its_retries(
    client: Client, task_queue: str
) -> None:
    definition = graph(nodes=[{"id": "halting", "fn": "f.halt", "retry": {**RETRY, "max_attempts": 2}}])
    handle = await run_graph(client, task_queue, definition)
    await assert_failed(client, handle, "node 'halting' failed: stop right there")
    assert await attempts(handle) == [2]


@pytest.mark.usefixtures("failure_worker")
async def test_a_local_node_failure_ends_the_run_failed_too(client: Client, task_queue: str) -> None:
    definition = graph(nodes=[{"id": "broken", "fn": "f.parse_bomb", "local": True}])
    handle = await run_graph(client, task_queue, definition)
    await assert_failed(
        client, handle, "node 'broken' failed: the node function ran out of memory (MemoryError)"
    )


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("code", THE_ORIGINAL_INPUTS[:2], ids=["MemoryError", "RecursionError"])
async def test_demo_review_refuses_code_past_the_parsers_limits(
    client: Client, task_queue: str, code: str
) -> None:
    (demo,) = shipped_definitions()
    handle = await run_graph(client, task_queue, snapshot(demo, build_node_registry()), {"code": code})
    await assert_failed(
        client,
        handle,
        "node 'extract' failed: code refused: it nests more than 1000 levels deep at line 1 "
        "(counting blocks, elifs and the operators chained in one expression)",
    )
    assert await attempts(handle) == [1]

"""Task nodes and parallel groups: each node function runs as an activity (local for short, pure
ones); a node's failure ends the run FAILED, a cancellation reaching it ends it CANCELLED."""

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

from countersign.workflows.graph.core import RunFailed
from countersign.workflows.graph.events import Events
from countersign.workflows.graph.patches import CANCEL_PATCH

with workflow.unsafe.imports_passed_through():
    from countersign.activities.graph import GraphActivities
    from countersign.models.errors import FailureType
    from countersign.models.graph import GraphNode, NodeCall, NodeResult, ParallelGroup


def node_retry(node: GraphNode) -> RetryPolicy:
    return RetryPolicy(
        maximum_attempts=node.retry.max_attempts,
        initial_interval=timedelta(seconds=node.retry.initial_interval),
        backoff_coefficient=node.retry.backoff,
        maximum_interval=timedelta(seconds=max(node.retry.max_interval, node.retry.initial_interval)),
        non_retryable_error_types=[FailureType.NODE_OUTPUT_INVALID],
    )


class Nodes(Events):
    async def _call(self, node: GraphNode, state: dict[str, Any]) -> NodeResult:
        assert node.fn is not None
        call = NodeCall(run_id=self._input.run_id, node=node.id, fn=node.fn, state=state)
        timeout = timedelta(seconds=node.timeout)
        if node.local:
            return await workflow.execute_local_activity_method(
                GraphActivities.run_node,
                call,
                start_to_close_timeout=timeout,
                retry_policy=node_retry(node),
                summary=f"node {node.id}",
            )
        return await workflow.execute_activity_method(
            GraphActivities.run_node,
            call,
            start_to_close_timeout=timeout,
            retry_policy=node_retry(node),
            summary=f"node {node.id}",
        )

    async def _run_task(self, node: GraphNode) -> None:
        self._emit("node_started", node=node.id, message=f"Executing Node: {node.id}")
        started = workflow.now()
        try:
            result = await self._call(node, self._state)
        except ActivityError as error:
            raise self._node_failed(node, error) from None
        except FailureError as error:
            if not self._local_failure(node):
                raise
            raise self._node_failed(node, error) from None
        self._state.update(result.updates)
        self._finished(node.id, started, result)

    async def _run_parallel(self, group: ParallelGroup) -> None:
        branches = [self._definition.node(b) for b in group.branches]
        self._emit(
            "node_started",
            node=group.id,
            message=f"Executing branches in parallel: {', '.join(group.branches)}",
        )
        started = workflow.now()
        for branch in branches:
            assert branch is not None
            self._emit("node_started", node=branch.id, message=f"Executing Node: {branch.id}")
        # Each branch sees the state as it was when the group started; their outputs are merged after.
        snapshot = dict(self._state)
        outcomes = await asyncio.gather(
            *(self._call(branch, snapshot) for branch in branches if branch is not None),
            return_exceptions=True,
        )
        written: dict[str, str] = {}
        for branch, outcome in zip(branches, outcomes, strict=True):
            assert branch is not None
            if isinstance(outcome, ActivityError) or (
                isinstance(outcome, FailureError) and self._local_failure(branch)
            ):
                raise self._node_failed(branch, outcome)
            if isinstance(outcome, BaseException):
                raise outcome
            for key in outcome.updates:
                if key in written and outcome.updates[key] != self._state.get(key):
                    raise RunFailed(f"parallel branches {written[key]!r} and {branch.id!r} both set {key!r}")
                written[key] = branch.id
            self._state.update(outcome.updates)
            self._finished(branch.id, started, outcome)
        self._emit(
            "node_finished",
            node=group.id,
            message=f"Joined {len(branches)} branches",
            duration_ms=self._ms(started),
        )

    def _finished(self, node_id: str, started: datetime, result: NodeResult) -> None:
        for line in result.logs:
            self._log(line)
        keys = sorted(result.updates)
        self._emit(
            "node_finished",
            node=node_id,
            message=f"Finished Node: {node_id}" + (f" (set {', '.join(keys)})" if keys else ""),
            duration_ms=self._ms(started),
            output_keys=keys,
            log=False,
        )

    def _local_failure(self, node: GraphNode) -> bool:
        """Whether a FailureError other than an ActivityError, out of running `node`, is its failure."""
        return bool(node.local) and self._trusted

    def _node_failed(self, node: GraphNode, error: FailureError) -> RunFailed | asyncio.CancelledError:
        """`error`: the ActivityError of a regular activity, or a local activity's own failure."""
        cause = error.cause if isinstance(error, ActivityError) else error
        if (
            isinstance(cause, CancelledError)
            and workflow.cancellation_reason() is not None
            and workflow.patched(CANCEL_PATCH)
        ):
            # The SDK cancelled the node's activity because the run was cancelled, and hands the run
            # an ActivityError for it: the run was cancelled, the node did not fail.
            self._log(f"Node {node.id} cancelled with the run.")
            return asyncio.CancelledError(f"node {node.id} cancelled with the run")
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
        self._emit("node_failed", node=node.id, message=f"Node {node.id} failed: {reason}")
        return RunFailed(f"node {node.id!r} failed: {reason}")

"""Graph activity: run one task node's function on a copy of the run's state.

The function's exceptions fail the attempt (Temporal retries per the node's `retry`); what it returns
must be a JSON object, checked here so that a bad value fails the node, not the workflow task.
"""

import json

from temporalio import activity
from temporalio.exceptions import ApplicationError

from graphs.registry import NodeContext, NodeRegistry
from models.graph import NodeCall, NodeResult

# A node's output travels in the workflow's history: keep each well under Temporal's 2 MB payload limit.
MAX_OUTPUT_BYTES = 512 * 1024


class GraphActivities:
    def __init__(self, registry: NodeRegistry) -> None:
        self._registry = registry

    @activity.defn(name="run_graph_node")
    async def run_node(self, call: NodeCall) -> NodeResult:
        if call.fn not in self._registry:
            raise ApplicationError(
                f"node {call.node!r}: no function {call.fn!r} on this worker", type="UnknownNodeFunction"
            )
        context = NodeContext(state=call.state)
        updates = await self._registry.get(call.fn).call(context)
        try:
            size = len(json.dumps(updates, allow_nan=False))
        except (TypeError, ValueError) as error:
            raise ApplicationError(
                f"node {call.node!r}: {call.fn} returned a value that is not JSON: {error}",
                type="NodeOutputInvalid",
                non_retryable=True,
            ) from None
        if size > MAX_OUTPUT_BYTES:
            raise ApplicationError(
                f"node {call.node!r}: {call.fn} returned {size} bytes (limit {MAX_OUTPUT_BYTES})",
                type="NodeOutputInvalid",
                non_retryable=True,
            )
        return NodeResult(updates=updates, logs=context.lines[-100:])

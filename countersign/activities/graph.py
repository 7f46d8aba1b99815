"""Graph activity: run one task node's function on a copy of the run's state.

Whatever the function raises becomes an ApplicationError naming the node, which the workflow reports as
that node's failure (the run ends FAILED, with `run_ended`); only cancellation and shutdown pass through
as they are. `NodeError`s, and failures that another attempt on the same state would repeat (MemoryError,
RecursionError, a result that is not a JSON object), are not retried; anything else is retried per the
node's `retry`. What the function returns must be a JSON object, checked here so that a bad value fails
the node, not the workflow task.
"""

import asyncio
import json

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.exceptions import CancelledError as TemporalCancelledError

from countersign.graphs.registry import NodeContext, NodeError, NodeRegistry
from countersign.models.errors import FailureType
from countersign.models.graph import NodeCall, NodeResult

# A node's output travels in the workflow's history: keep each well under Temporal's 2 MB payload limit.
MAX_OUTPUT_BYTES = 512 * 1024
# Raised by the activity being cancelled or the process stopping: those are not the node failing.
_PASS_THROUGH = (asyncio.CancelledError, TemporalCancelledError, KeyboardInterrupt, SystemExit)


class GraphActivities:
    def __init__(self, registry: NodeRegistry) -> None:
        self._registry = registry

    @activity.defn(name="run_graph_node")
    async def run_node(self, call: NodeCall) -> NodeResult:
        if call.fn not in self._registry:
            raise ApplicationError(
                f"node {call.node!r}: no function {call.fn!r} on this worker",
                type=FailureType.UNKNOWN_NODE_FUNCTION,
            )
        context = NodeContext(state=call.state)
        try:
            updates = await self._registry.get(call.fn).call(context)
        except (*_PASS_THROUGH, ApplicationError):  # an ApplicationError: the function chose how it fails
            raise
        except BaseException as error:  # every other failure is the node's: see node_failure
            raise node_failure(error) from error
        try:
            size = len(json.dumps(updates, allow_nan=False))
        except (TypeError, ValueError, RecursionError) as error:
            raise ApplicationError(
                f"node {call.node!r}: {call.fn} returned a value that is not JSON: {error}",
                type=FailureType.NODE_OUTPUT_INVALID,
                non_retryable=True,
            ) from None
        if size > MAX_OUTPUT_BYTES:
            raise ApplicationError(
                f"node {call.node!r}: {call.fn} returned {size} bytes (limit {MAX_OUTPUT_BYTES})",
                type=FailureType.NODE_OUTPUT_INVALID,
                non_retryable=True,
            )
        return NodeResult(updates=updates, logs=context.lines[-100:])


def node_failure(error: BaseException) -> ApplicationError:
    """The ApplicationError the workflow gets for `error`, raised by a node function; its message is
    what the run shows after "node 'x' failed: ".

    Without this, the SDK would report a MemoryError as a retryable failure with an empty message (the
    run's error then read "Application error"), and retry it on the same input to the same end.
    """
    if isinstance(error, NodeError):
        return ApplicationError(error.message, type=error.type, non_retryable=not error.retryable)
    name = type(error).__name__
    if isinstance(error, MemoryError | RecursionError):
        # Deterministic for a given state (ast.parse past its limits raises these), and a real
        # exhaustion of memory is not something to try again at once in the same worker.
        what = "ran out of memory" if isinstance(error, MemoryError) else "recursed too deeply"
        detail = f": {error}" if str(error) else ""
        return ApplicationError(f"the node function {what} ({name}{detail})", type=name, non_retryable=True)
    return ApplicationError(str(error) or name, type=name)

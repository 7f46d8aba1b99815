"""Node functions for graph workflows: plain Python functions (sync or async), registered by name.

A graph's task node names its function (`fn: analyze`); the graph activity looks it up here and calls
it with a `NodeContext`: a private copy of the run's state, and `log` for lines the run shows (seed 003's
"Calculated complexity score: 20 (Round 0)"). The function returns the keys it changes (a dict, merged
into the state) or None. Functions run in an activity, so they may do I/O; their results must be JSON.

A function fails its node by raising: `NodeError` for a failure it understands (bad input: not retried,
the message is what the run shows), anything else for the node's retry policy to try again
(`countersign.activities.graph` says which exceptions are never retried).
"""

import asyncio
import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from countersign.models.errors import CountersignError, FailureType

Updates = dict[str, Any] | None
NodeFunction = Callable[["NodeContext"], Updates | Awaitable[Updates]]


class NodeError(CountersignError):
    """Fail the node with this message. Not retried unless `retryable`: raised for input the function
    refuses, on which another attempt would fail the same way. `type` names the failure in Temporal."""

    def __init__(self, message: str, *, type: str = "NodeError", retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.type = type
        self.retryable = retryable


@dataclass
class NodeContext:
    state: Mapping[str, Any]
    lines: list[str] = field(default_factory=list)

    def log(self, message: str) -> None:
        self.lines.append(str(message))


@dataclass(frozen=True)
class NodeFn:
    name: str
    function: NodeFunction
    description: str = ""
    # Short and pure: run as a local activity (no task queue round trip) unless the node says otherwise.
    local: bool = False

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    async def call(self, context: NodeContext) -> dict[str, Any]:
        """Run the function (a sync one in a thread, so it cannot block the worker's event loop)."""
        if self.is_async:
            result = await self.function(context)  # type: ignore[misc]
        else:
            result = await asyncio.to_thread(self.function, context)
        if result is None:
            return {}
        if not isinstance(result, dict):
            # The same result on every attempt: not worth a retry.
            raise NodeError(
                f"node function {self.name!r} returned {type(result).__name__}, not a dict or None",
                type=FailureType.NODE_OUTPUT_INVALID,
            )
        return result


class NodeRegistry:
    def __init__(self) -> None:
        self._functions: dict[str, NodeFn] = {}

    def add(self, fn: NodeFn) -> None:
        if fn.name in self._functions and self._functions[fn.name].function is not fn.function:
            raise ValueError(f"node function {fn.name!r} is registered twice")
        self._functions[fn.name] = fn

    def get(self, name: str) -> NodeFn:
        try:
            return self._functions[name]
        except KeyError:
            raise KeyError(f"no node function named {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def __iter__(self) -> Iterator[NodeFn]:
        return iter(sorted(self._functions.values(), key=lambda fn: fn.name))

    def names(self) -> frozenset[str]:
        return frozenset(self._functions)


NODE_FUNCTIONS = NodeRegistry()
# Countersign's own modules that declare node functions with `@node_fn`; functions from elsewhere are
# plugins (countersign/plugins.py, docs/extending.md), which need no edit here.
NODE_MODULES: tuple[str, ...] = ("countersign.graphs.review",)


def build_node_registry() -> NodeRegistry:
    """The default registry with every module of `NODE_MODULES` imported (which registers them)."""
    for module in NODE_MODULES:
        importlib.import_module(module)
    return NODE_FUNCTIONS


def node_fn(
    name: str, *, description: str = "", local: bool = False, registry: NodeRegistry = NODE_FUNCTIONS
) -> Callable[[NodeFunction], NodeFunction]:
    """Register a node function under `name` (in the default registry unless another is given)."""

    def register(function: NodeFunction) -> NodeFunction:
        doc = description or (inspect.getdoc(function) or "").split("\n\n")[0]
        registry.add(NodeFn(name=name, function=function, description=doc, local=local))
        return function

    return register

"""Choosing a graph run's next node: pure and deterministic, so the workflow evaluates edges itself.

Edges leaving a node are tried in order and the first whose `when` holds is taken (no `when`: always).
`when` sees the run's state as `state`, by attribute (`state.score < 7`) or by key (`state["score"]`);
a missing key reads as `None`, so `state.done` is false until a node sets it.
"""

from collections.abc import Mapping
from typing import Any

from countersign.models.errors import CountersignError
from countersign.models.expressions import check_expression, holds
from countersign.models.graph import GraphDefinition

STATE_NAMES = frozenset({"state"})


class StateView:
    """Read-only view of a state dict for expressions; nested dicts are viewed the same way."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _view(self._values.get(name))

    def __getitem__(self, key: str) -> Any:
        return _view(self._values.get(key))

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)


def _view(value: Any) -> Any:
    return StateView(value) if isinstance(value, Mapping) else value


def check_condition(expression: str) -> None:
    """Raise ExpressionError unless `expression` is a valid edge condition."""
    check_expression(expression, STATE_NAMES, {"state": StateView({})})


def condition_holds(expression: str | None, state: Mapping[str, Any]) -> bool:
    return expression is None or holds(expression, {"state": StateView(state)})


class NoRoute(CountersignError, ValueError):
    pass


def next_step(definition: GraphDefinition, current: str, state: Mapping[str, Any]) -> str | None:
    """The node or parallel group after `current`, or None when the run ends here (no edges leave it).
    Edges that leave it but none of which holds are a dead end: NoRoute, naming the node."""
    group = definition.group(current)
    if group is not None:
        return group.join
    edges = definition.edges_from(current)
    for edge in edges:
        if condition_holds(edge.when, state):
            return edge.to
    if edges:
        conditions = "; ".join(str(edge.when) for edge in edges)
        raise NoRoute(f"no edge from {current!r} holds ({conditions})")
    return None

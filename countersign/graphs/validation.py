"""Checking a graph definition before it is stored or run; every problem names its node.

Refused: unknown node functions, edges from or to nowhere, unreachable nodes, cycles without a
`max_visits` guard, edges that can never be taken, end nodes with edges, malformed `when` conditions,
conditions nested deeper than MAX_CONDITION_DEPTH, and parallel groups whose branches are not plain
task nodes. Nothing here recurses on the definition: the graph walks are loops, and YAML aliases and
deep nesting are refused from the event stream before a document is built.
"""

import ast
from collections.abc import Iterable
from typing import Any

import yaml

from countersign.models.errors import CountersignError
from countersign.models.expressions import ExpressionError, parse
from countersign.models.graph import GraphDefinition, NodeKind
from countersign.models.graph_routing import check_condition

# A `when` is evaluated by simpleeval, which recurses two or three frames per level of its tree: the 500
# characters a condition may have nest up to ~490 levels (`-` after `-`), past Python's recursion limit.
# Unchecked, such a condition raised RecursionError out of validation (a 500 from POST /graph/create)
# and, in a run, out of the workflow's routing (its workflow task failing for ever, the run stuck
# RUNNING). Real conditions nest under 10 levels (the shipped loop condition: 6).
MAX_CONDITION_DEPTH = 32
# A definition is a few levels deep (nodes, a node's approval, its fields); PyYAML's composer recurses.
MAX_YAML_DEPTH = 32


class GraphInvalid(CountersignError, ValueError):
    def __init__(self, graph_id: str, problems: list[str]) -> None:
        super().__init__(f"graph {graph_id!r} is invalid: " + "; ".join(problems))
        self.graph_id = graph_id
        self.problems = problems


def parse_definition(text: str) -> GraphDefinition:
    """A definition from JSON or YAML text (JSON is YAML); pydantic's errors name the field."""
    try:
        _plain_yaml(text)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"not JSON or YAML: {error}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ValueError("a graph definition is an object with `id`, `nodes` and `edges`")
    return GraphDefinition.model_validate(data)


def _plain_yaml(text: str) -> None:
    """Refuse what no definition needs and hostile text sends, before a document is built from it:
    aliases (a few hundred bytes of `*a` expand into billions of values) and nesting deeper than
    MAX_YAML_DEPTH (the composer recurses). The event stream is read iteratively."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise ValueError("YAML aliases (*name) are not accepted in a graph definition")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise ValueError(f"the YAML is nested deeper than {MAX_YAML_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def condition_depth(expression: str) -> int | None:
    """How many levels `expression`'s tree nests, or None when it does not parse (check_condition
    says why). A loop over the tree; parsing 500 characters stays well within the parser's limits."""
    try:
        tree = parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    deepest, todo = 0, [(tree, 0)]
    while todo:
        node, depth = todo.pop()
        deepest = max(deepest, depth)
        todo += [(child, depth + 1) for child in ast.iter_child_nodes(node)]
    return deepest


def check_graph(definition: GraphDefinition, functions: Iterable[str]) -> GraphDefinition:
    """The definition, or GraphInvalid listing every problem found."""
    problems = graph_problems(definition, frozenset(functions))
    if problems:
        raise GraphInvalid(definition.id, problems)
    return definition


def graph_problems(definition: GraphDefinition, functions: frozenset[str]) -> list[str]:
    problems = _names(definition, functions)
    if problems:  # the structural checks below assume every name resolves
        return problems
    problems += _edges(definition)
    problems += _groups(definition)
    if not problems:
        successors = _successors(definition)
        problems += _unreachable(definition, successors)
        problems += _unguarded_cycles(definition, successors)
    return problems


def _names(definition: GraphDefinition, functions: frozenset[str]) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for item in [n.id for n in definition.nodes] + [g.id for g in definition.parallel]:
        if item in seen:
            problems.append(f"id {item!r} is used twice")
        seen.add(item)
    if definition.start_node not in seen:
        problems.append(f"start {definition.start_node!r} is not a node or parallel group")
    for node in definition.nodes:
        if node.fn is not None and node.fn not in functions:
            known = ", ".join(sorted(functions)) or "none"
            problems.append(f"node {node.id!r}: unknown function {node.fn!r} (known: {known})")
        if node.approval is not None:
            problems += [f"node {node.id!r}: {problem}" for problem in node.approval.problems()]
        if node.approval is not None and node.approval.on_reject not in (None, *seen):
            problems.append(
                f"node {node.id!r}: on_reject goes to {node.approval.on_reject!r}, which does not exist"
            )
    for edge in definition.edges:
        for end, name in (("from", edge.source), ("to", edge.to)):
            if name not in seen:
                problems.append(f"edge {edge.source!r} -> {edge.to!r}: {end} {name!r} is not a node or group")
    for group in definition.parallel:
        for name in [*group.branches, group.join]:
            if name not in seen:
                problems.append(f"parallel group {group.id!r}: {name!r} is not a node")
    return problems


def _edges(definition: GraphDefinition) -> list[str]:
    problems: list[str] = []
    for edge in definition.edges:
        if edge.when is not None:
            # The model keeps `when` to 500 characters; a longer one reaching here is refused by length.
            depth = condition_depth(edge.when) if len(edge.when) <= 500 else None
            if depth is not None and depth > MAX_CONDITION_DEPTH:
                problems.append(
                    f"edge {edge.source!r} -> {edge.to!r}: the condition nests {depth} levels deep "
                    f"(limit {MAX_CONDITION_DEPTH})"
                )
                continue
            try:
                check_condition(edge.when)
            except ExpressionError as error:
                problems.append(f"edge {edge.source!r} -> {edge.to!r}: {error}")
    for source in dict.fromkeys(e.source for e in definition.edges):
        node = definition.node(source)
        if node is not None and node.kind == NodeKind.END:
            problems.append(f"node {source!r} is an end node; no edge may leave it")
        if definition.group(source) is not None:
            problems.append(f"parallel group {source!r} continues at its join; no edge may leave it")
        edges = definition.edges_from(source)
        for index, edge in enumerate(edges[:-1]):
            if edge.when is None:
                later = ", ".join(repr(e.to) for e in edges[index + 1 :])
                problems.append(
                    f"node {source!r}: the edge to {edge.to!r} has no condition, so the edges after it "
                    f"(to {later}) can never be taken"
                )
                break
    return problems


def _groups(definition: GraphDefinition) -> list[str]:
    problems: list[str] = []
    targets = {e.to for e in definition.edges} | {definition.start_node}
    owner: dict[str, str] = {}
    for group in definition.parallel:
        for branch in group.branches:
            node = definition.node(branch)
            if node is None or node.kind != NodeKind.TASK:
                problems.append(f"parallel group {group.id!r}: branch {branch!r} must be a task node")
                continue
            if branch in owner:
                problems.append(f"node {branch!r} is a branch of both {owner[branch]!r} and {group.id!r}")
            owner[branch] = group.id
            if definition.edges_from(branch):
                problems.append(
                    f"node {branch!r} is a branch of {group.id!r}: it continues at the join {group.join!r}, "
                    "so no edge may leave it"
                )
            if branch in targets:
                problems.append(
                    f"node {branch!r} is a branch of {group.id!r}; it cannot also be reached by an edge"
                )
        if group.join in group.branches:
            problems.append(f"parallel group {group.id!r}: the join {group.join!r} is also a branch")
    return problems


def _successors(definition: GraphDefinition) -> dict[str, list[str]]:
    successors: dict[str, list[str]] = {n.id: [] for n in definition.nodes}
    for group in definition.parallel:
        successors[group.id] = [*group.branches, group.join]
    for edge in definition.edges:
        successors[edge.source].append(edge.to)
    for node in definition.nodes:
        if node.approval is not None and node.approval.on_reject is not None:
            successors[node.id].append(node.approval.on_reject)
    return successors


def _unreachable(definition: GraphDefinition, successors: dict[str, list[str]]) -> list[str]:
    start = definition.start_node
    seen, todo = {start}, [start]
    while todo:
        for following in successors[todo.pop()]:
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return [
        f"node {name!r} is unreachable from the start {start!r}" for name in successors if name not in seen
    ]


def _unguarded_cycles(definition: GraphDefinition, successors: dict[str, list[str]]) -> list[str]:
    guarded = {n.id for n in definition.nodes if n.max_visits is not None}
    problems = []
    # Branch nodes have no edges of their own (checked first), so a loop runs through the group itself.
    for component in _strongly_connected(successors):
        cyclic = len(component) > 1 or component[0] in successors[component[0]]
        if cyclic and not guarded.intersection(component):
            path = " -> ".join([*component, component[0]])
            problems.append(f"cycle {path} has no max_visits guard; set max_visits on one of its nodes")
    return problems


def _strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (a long chain must not hit Python's recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            name, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[name] = min(low[name], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[name])
            if low[name] == index[name]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == name:
                        break
                components.append(sorted(component, key=list(graph).index))
    return components

"""Graph definitions: what is refused, with messages that name the node."""

from typing import Any

import pytest
from pydantic import ValidationError

from countersign.graphs.validation import GraphInvalid, check_graph, graph_problems, parse_definition
from countersign.models.graph import GraphDefinition

FUNCTIONS = frozenset({"f.a", "f.b", "f.c"})


def problems(**definition: Any) -> list[str]:
    return graph_problems(GraphDefinition.model_validate({"id": "g", **definition}), FUNCTIONS)


def test_a_sound_graph_with_a_guarded_loop_and_a_parallel_group_passes() -> None:
    definition = GraphDefinition.model_validate(
        {
            "id": "g",
            "nodes": [
                {"id": "a", "fn": "f.a", "max_visits": 3},
                {"id": "b", "fn": "f.b"},
                {"id": "c", "fn": "f.c"},
                {"id": "ok", "kind": "approval", "approval": {"role": "MANAGER"}},
                {"id": "end", "kind": "end"},
            ],
            "parallel": [{"id": "fan", "branches": ["b", "c"], "join": "ok"}],
            "edges": [
                {"from": "a", "to": "a", "when": "state.score < 7"},
                {"from": "a", "to": "fan"},
                {"from": "ok", "to": "end"},
            ],
        }
    )
    assert check_graph(definition, FUNCTIONS) is definition


def test_unknown_functions_and_edges_to_nowhere_are_named() -> None:
    found = problems(
        nodes=[{"id": "a", "fn": "f.a"}, {"id": "b", "fn": "f.missing"}],
        edges=[{"from": "a", "to": "b"}, {"from": "a", "to": "ghost"}, {"from": "nowhere", "to": "a"}],
    )
    assert found == [
        "node 'b': unknown function 'f.missing' (known: f.a, f.b, f.c)",
        "edge 'a' -> 'ghost': to 'ghost' is not a node or group",
        "edge 'nowhere' -> 'a': from 'nowhere' is not a node or group",
    ]


def test_unreachable_nodes_and_unguarded_cycles_are_refused() -> None:
    found = problems(
        nodes=[{"id": "a", "fn": "f.a"}, {"id": "b", "fn": "f.b"}, {"id": "island", "fn": "f.c"}],
        edges=[{"from": "a", "to": "b"}, {"from": "b", "to": "a", "when": "state.again"}],
    )
    assert found == [
        "node 'island' is unreachable from the start 'a'",
        "cycle a -> b -> a has no max_visits guard; set max_visits on one of its nodes",
    ]
    assert problems(nodes=[{"id": "a", "fn": "f.a"}], edges=[{"from": "a", "to": "a"}]) == [
        "cycle a -> a has no max_visits guard; set max_visits on one of its nodes"
    ]


def test_edges_that_can_never_be_taken_and_bad_conditions() -> None:
    found = problems(
        nodes=[{"id": "a", "fn": "f.a"}, {"id": "b", "fn": "f.b"}, {"id": "c", "fn": "f.c"}],
        edges=[
            {"from": "a", "to": "b"},
            {"from": "a", "to": "c", "when": "state.x > 1"},
            {"from": "b", "to": "c", "when": "score > 1"},
            {"from": "c", "to": "a", "when": "state.__class__"},
        ],
    )
    assert len(found) == 3
    assert (
        "node 'a': the edge to 'b' has no condition, so the edges after it (to 'c') can never be taken"
        in found
    )
    assert "edge 'b' -> 'c': unknown name 'score' in 'score > 1' (known: state)" in found
    assert any(p.startswith("edge 'c' -> 'a':") and "not allowed" in p for p in found)


def test_parallel_branches_must_be_plain_task_nodes() -> None:
    found = problems(
        nodes=[
            {"id": "a", "fn": "f.a"},
            {"id": "b", "fn": "f.b"},
            {"id": "ok", "kind": "approval", "approval": {"role": "HR"}},
            {"id": "c", "fn": "f.c"},
        ],
        parallel=[{"id": "fan", "branches": ["b", "ok"], "join": "c"}],
        edges=[{"from": "a", "to": "fan"}, {"from": "b", "to": "c"}, {"from": "fan", "to": "a"}],
    )
    assert "parallel group 'fan': branch 'ok' must be a task node" in found
    assert "node 'b' is a branch of 'fan': it continues at the join 'c', so no edge may leave it" in found
    assert "parallel group 'fan' continues at its join; no edge may leave it" in found


def test_node_shapes_are_checked_by_the_model() -> None:
    with pytest.raises(ValidationError, match="task node 'a' needs `fn`"):
        GraphDefinition.model_validate({"id": "g", "nodes": [{"id": "a"}]})
    with pytest.raises(ValidationError, match="approval node 'a' needs `approval"):
        GraphDefinition.model_validate({"id": "g", "nodes": [{"id": "a", "kind": "approval"}]})
    with pytest.raises(ValidationError, match="String should match pattern"):
        GraphDefinition.model_validate({"id": "g", "nodes": [{"id": "Bad Id", "fn": "f.a"}]})
    assert problems(
        nodes=[{"id": "e", "kind": "end"}, {"id": "a", "fn": "f.a"}], edges=[{"from": "e", "to": "a"}]
    ) == ["node 'e' is an end node; no edge may leave it"]


def test_definitions_parse_from_yaml_or_json_and_invalid_ones_list_every_problem() -> None:
    text = """
id: g
nodes:
  - {id: a, fn: f.a}
  - {id: b, fn: f.nope}
edges:
  - {from: a, to: c}
"""
    definition = parse_definition(text)
    assert parse_definition(definition.model_dump_json(by_alias=True)) == definition
    with pytest.raises(GraphInvalid) as caught:
        check_graph(definition, FUNCTIONS)
    assert caught.value.problems == [
        "node 'b': unknown function 'f.nope' (known: f.a, f.b, f.c)",
        "edge 'a' -> 'c': to 'c' is not a node or group",
    ]
    with pytest.raises(ValueError, match="not JSON or YAML"):
        parse_definition("id: [unclosed")
    with pytest.raises(ValueError, match="is an object"):
        parse_definition("- just a list")


# --- hostile definitions ------------------------------------------------------------------------------


def recursing(depth: int, function: Any) -> Any:
    """`function()` called `depth` frames down, as deep as a gateway request or a workflow task runs."""
    return recursing(depth - 1, function) if depth else function()


@pytest.mark.parametrize(
    "condition",
    [
        "state.count < " + "-" * 485 + "1",  # 487 levels in 500 characters
        "not " * 120 + "state.done",
        "state.a" + ".b" * 200,
        "[" * 199 + "]" * 199 + " == state.x",
    ],
)
def test_a_condition_nested_deeper_than_the_limit_is_refused_not_a_recursion_error(condition: str) -> None:
    found = recursing(
        100,
        lambda: problems(
            nodes=[{"id": "a", "fn": "f.a"}, {"id": "b", "fn": "f.b"}],
            edges=[{"from": "a", "to": "b", "when": condition}],
        ),
    )
    assert len(found) == 1 and found[0].startswith("edge 'a' -> 'b': the condition nests ")
    assert found[0].endswith(" levels deep (limit 32)")


def test_real_conditions_are_far_within_the_depth_limit() -> None:
    from countersign.graphs.review import IMPROVE_CONDITION
    from countersign.graphs.validation import MAX_CONDITION_DEPTH, condition_depth

    assert condition_depth(IMPROVE_CONDITION) == 6 < MAX_CONDITION_DEPTH
    assert condition_depth("state.score < 7 and not state.error") == 5
    assert condition_depth("state.x >") is None  # check_condition says why


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id: &a [*a, *a]\n", "YAML aliases"),
        ("a: " + "[" * 5_000 + "]" * 5_000 + "\n", "nested deeper than 32 levels"),
        ('{"id": "g", "nodes": ' + "[" * 5_000 + "]" * 5_000 + "}", "nested deeper than 32 levels"),
    ],
)
def test_parse_definition_refuses_aliases_and_deep_nesting_before_building_anything(
    text: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_definition(text)

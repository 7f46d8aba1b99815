"""The demo-review agent's node functions, driven through the graph's loop without Temporal."""

import ast
import copy
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest

from countersign.graphs import review  # registers the node functions
from countersign.graphs.registry import NODE_FUNCTIONS, NodeContext
from countersign.graphs.review import IMPROVE_CONDITION, should_improve
from countersign.graphs.review_analysis import FIX_TIERS
from countersign.graphs.shipped import shipped_definitions
from countersign.models.graph_routing import condition_holds

NAMES = ("review.extract", "review.analyze", "review.improve", "review.report")

CLEAN = '''"""A small, tidy module."""


def add(a, b):
    """Return the sum of a and b."""
    return a + b


def first(items):
    """Return the first item, or None for an empty list."""
    for item in items:
        return item
    return None
'''

SEED_003 = (
    "def messy_function():\n    if x:\n        for i in list:\n            while True:\n"
    "                nested=True"
)

# Short, documented nowhere, and too complex: the docstring is the only thing improve can fix.
COMPLEX = """def grade(score, bonus, strict):
    if score > 90 and bonus:
        return "A+"
    elif score > 90 or (strict and bonus):
        return "A"
    elif score > 80:
        return "B"
    elif score > 70:
        return "C" if bonus else "C-"
    elif score > 60:
        return "D"
    assert score >= 0
    return "F" if strict or score < 30 else "E"
"""

BUGGY = '''def load(path):
    """Read a file, or return an empty string."""
    try:
        data = read(path)  # this comment is lost in the rewrite
    except:
        data = None
    if data == None or None != data:
        return ""
    return data
'''

BUGGY_FIXED = '''def load(path):
    """Read a file, or return an empty string."""
    try:
        data = read(path)
    except Exception:
        data = None
    if data is None or None is not data:
        return ''
    return data
'''

# One fix per tier (a bare except, then a docstring) and two issues only a human can fix.
TWO_TIERS = """def process(a, b, c, d, e, f, g, cache=[]):
    try:
        return a + b
    except:
        return None
"""

CLASSES = '''class Shop:
    """A shop."""

    def add(self, item, qty=1):
        """Add."""
        if qty <= 0 or qty > 100:
            raise ValueError(qty)
        for _ in range(qty):
            self.items.append(item)
        else:
            self.log(item)

    async def fetch(self, client):
        """Fetch."""
        async with client:
            try:
                return await client.get()
            except (OSError, ValueError):
                return None
            except Exception:
                raise

    @staticmethod
    def build(rows):
        """Build."""

        def keep(row):
            """Keep."""
            return row is not None and row.ok

        return [r for r in rows if keep(r) if r]


async def main():
    """Main."""
    async for x in stream():
        match x:
            case 1:
                pass
            case _:
                pass
'''


def call(name: str, state: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Run one node function the way the graph activity does: on a private read-only copy."""
    context = NodeContext(state=MappingProxyType(copy.deepcopy(dict(state))))
    result = NODE_FUNCTIONS.get(name).function(context)
    assert isinstance(result, dict)
    assert json.loads(json.dumps(result)) == result, "results must be plain JSON"
    return result, context.lines


def run_review(code: str, **settings: Any) -> tuple[dict[str, Any], list[str]]:
    """extract → analyze → (improve → analyze)* → report, routed by should_improve."""
    state: dict[str, Any] = {"code": code, **settings}
    log: list[str] = []

    def step(name: str) -> None:
        result, lines = call(name, state)
        state.update(result)
        log.extend(lines)

    step("review.extract")
    step("review.analyze")
    for _ in range(50):
        # The graph's edge, evaluated as the workflow does, must agree with the helper on every state.
        assert condition_holds(IMPROVE_CONDITION, state) == should_improve(state)
        if not should_improve(state):
            break
        step("review.improve")
        step("review.analyze")
    else:
        pytest.fail("the review loop did not terminate")
    step("review.report")
    return state, log


def codes(issues: list[dict[str, Any]]) -> list[str]:
    return [issue["code"] for issue in issues]


def by_name(functions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {function["name"]: function for function in functions}


# --- registration -----------------------------------------------------------------------------------


def test_the_four_node_functions_are_registered_local_and_sync() -> None:
    for name in NAMES:
        assert name in NODE_FUNCTIONS
        fn = NODE_FUNCTIONS.get(name)
        assert fn.local is True
        assert fn.is_async is False
        assert fn.description


async def test_node_functions_run_through_the_registry_wrapper() -> None:
    result = await NODE_FUNCTIONS.get("review.extract").call(NodeContext(state={"code": CLEAN}))
    assert [function["name"] for function in result["functions"]] == ["add", "first"]


# --- whole runs -------------------------------------------------------------------------------------


def test_clean_module_meets_the_threshold_without_improving() -> None:
    state, log = run_review(CLEAN)
    report = state["report"]
    assert report == {
        "final_score": 10.0,
        "rounds": 0,
        "functions": 2,
        "remaining_issues": [],
        "suggestions": [],
        "fixed": {},
        "stopped_because": "threshold met",
    }
    assert state["code"] == CLEAN
    assert [f["complexity"] for f in state["functions"]] == [1, 2]
    assert log[0] == "Extracted 2 functions"
    assert "Calculated complexity score: 3 (Round 0)" in log


def test_seed_003_gets_a_docstring_and_keeps_deep_nesting_as_a_suggestion() -> None:
    state, log = run_review(SEED_003)
    report = state["report"]
    assert report["stopped_because"] == "threshold met"
    assert report["rounds"] == 1
    assert report["final_score"] == 8.0
    assert report["fixed"] == {"missing_docstring": 1}
    assert codes(report["remaining_issues"]) == ["deep_nesting"]
    assert report["suggestions"] == [
        "flatten `messy_function` (3 nested blocks) with early returns or helper functions"
    ]
    tree = ast.parse(state["code"])
    assert ast.get_docstring(tree.body[0]) == "TODO: describe what messy_function does."  # type: ignore[arg-type]
    assert state["functions"] == [
        {
            "name": "messy_function",
            "lineno": 1,
            "length": 5,
            "complexity": 4,
            "max_nesting": 3,
            "args": 0,
            "has_docstring": True,
        }
    ]
    assert log[:3] == [
        "Extracted 1 function",
        "Calculated complexity score: 4 (Round 0)",
        "Quality score: 7.0/10 with 2 issue(s) (Round 0)",
    ]
    assert "Quality score: 8.0/10 with 1 issue(s) (Round 1)" in log


def test_a_short_complex_function_stops_when_nothing_more_can_be_fixed() -> None:
    # Seed 004's engine loops forever here: the score never reaches the threshold.
    state, log = run_review(COMPLEX)
    report = state["report"]
    assert report["stopped_because"] == "no further automatic fixes"
    assert report["rounds"] == 2
    # 10 - high_complexity 2 - 0.5 per point over 10 (3 points); the docstring (1) was fixed.
    assert report["final_score"] == 6.5
    assert report["fixed"] == {"missing_docstring": 1}
    assert codes(report["remaining_issues"]) == ["high_complexity"]
    assert report["suggestions"] == ["split `grade` (complexity 13) into smaller functions"]
    assert state["functions"][0]["complexity"] == 13
    assert state["functions"][0]["max_nesting"] == 1  # an elif chain is one level
    assert "Quality score: 5.5/10 with 2 issue(s) (Round 0)" in log
    assert "Round 2: no automatic fixes left" in log


def test_bare_except_and_none_comparisons_are_fixed_idempotently() -> None:
    state, log = run_review(BUGGY)
    report = state["report"]
    assert report["stopped_because"] == "threshold met"
    assert report["rounds"] == 1
    assert report["final_score"] == 10.0
    assert report["fixed"] == {"bare_except": 1, "compare_to_none": 2}
    assert state["code"] == BUGGY_FIXED
    ast.parse(state["code"])
    assert any("comments and layout are not kept" in line for line in log)

    again, lines = call("review.improve", state)
    assert again["changed"] is False
    assert "code" not in again
    assert again["round"] == 2
    assert lines == ["Round 2: no automatic fixes left"]


def test_improve_reports_what_it_fixed_in_the_first_round() -> None:
    state, _ = call("review.extract", {"code": BUGGY})
    result, lines = call("review.improve", {"code": BUGGY, **state})
    assert result["changed"] is True
    assert result["round"] == 1
    assert result["fixed"] == {"bare_except": 1, "compare_to_none": 2}
    assert lines == [
        "Round 1: replaced 1 bare `except:` with `except Exception:`, rewrote 2 `== None`/`!= None` "
        "comparison(s) as `is None`/`is not None` (code rewritten by ast.unparse: comments and layout "
        "are not kept)"
    ]


@pytest.mark.parametrize(
    ("code", "line"),
    [("def broken(:\n    pass\n", 1), ("x = 1\ny = 2\nif True\n    pass\n", 3)],
)
def test_a_syntax_error_stops_at_once_with_score_zero(code: str, line: int) -> None:
    state, log = run_review(code)
    report = state["report"]
    assert report["stopped_because"] == "syntax error"
    assert report["final_score"] == 0.0
    assert report["rounds"] == 0
    assert report["functions"] == 0
    assert state["error"].startswith(f"syntax error at line {line}:")
    assert state["functions"] == []
    [issue] = report["remaining_issues"]
    assert issue["code"] == "syntax_error"
    assert issue["lineno"] == line
    assert issue["fixable"] is False
    assert log[0] == f"Cannot review the code: {state['error']}"
    assert state["code"] == code


@pytest.mark.parametrize("code", ["", "   \n\t\n"])
def test_empty_input_is_an_error(code: str) -> None:
    state, _ = run_review(code)
    assert state["error"] == "empty input at line 1: there is no code to review"
    assert state["report"]["stopped_because"] == "syntax error"
    assert state["report"]["final_score"] == 0.0
    assert codes(state["issues"]) == ["syntax_error"]


def test_null_bytes_are_an_error_without_a_line_number() -> None:
    state, _ = run_review("x = 1\x00")
    # Python 3.11 raises this SyntaxError without a line number (later versions may add one).
    assert state["error"].startswith("syntax error")
    assert state["error"].endswith("source code string cannot contain null bytes")
    assert state["report"]["stopped_because"] == "syntax error"


def test_code_too_deep_for_unparse_is_reviewed_but_left_unchanged() -> None:
    # Parses, and the iterative walks review it, but ast.unparse (recursive) cannot rewrite it. (800:
    # within MAX_DEPTH, past the ~400 operands ast.unparse manages.)
    long_sum = "1 + " * 800 + "1"
    code = (
        f'def f():\n    """Doc."""\n    x = {long_sum}\n    try:\n        pass\n    except:\n        pass\n'
    )
    state, log = run_review(code, threshold=9.0)
    assert codes(state["issues"]) == ["bare_except"]
    assert state["score"] == 8.5
    assert state["code"] == code
    assert state["report"]["stopped_because"] == "no further automatic fixes"
    assert "Round 1: the code is nested too deeply for ast.unparse to rewrite; left as it is" in log


def test_round_limit_stops_with_a_fixable_issue_left() -> None:
    state, _ = run_review(TWO_TIERS, max_rounds=1)
    report = state["report"]
    assert report["stopped_because"] == "round limit"
    assert report["rounds"] == 1
    assert report["fixed"] == {"bare_except": 1}
    # 10 - too_many_args 1 - mutable_default 1 - missing_docstring 1
    assert report["final_score"] == 7.0
    remaining = {issue["code"]: issue["fixable"] for issue in report["remaining_issues"]}
    assert remaining == {"missing_docstring": True, "too_many_args": False, "mutable_default": False}
    assert "except Exception:" in state["code"]


def test_with_rounds_to_spare_the_second_tier_is_fixed_too() -> None:
    state, _ = run_review(TWO_TIERS)
    report = state["report"]
    assert report["stopped_because"] == "threshold met"
    assert report["rounds"] == 2
    assert report["final_score"] == 8.0
    assert report["fixed"] == {"bare_except": 1, "missing_docstring": 1}


def test_suggestions_are_not_repeated_across_rounds() -> None:
    state, _ = run_review(TWO_TIERS, threshold=9.5)
    report = state["report"]
    assert report["rounds"] == 3
    assert report["stopped_because"] == "no further automatic fixes"
    assert report["suggestions"] == [
        "default `cache` of `process` to None and build the value inside the function",
        "reduce the 8 parameters of `process`, e.g. group related ones in a dataclass",
    ]


def test_no_rounds_allowed_stops_with_round_limit() -> None:
    state, _ = run_review(TWO_TIERS, max_rounds=0)
    assert state["report"]["stopped_because"] == "round limit"
    assert state["report"]["rounds"] == 0
    assert state["code"] == TWO_TIERS


def test_an_unreachable_threshold_still_terminates() -> None:
    state, _ = run_review(CLEAN, threshold=10.1)
    assert state["report"]["stopped_because"] == "no further automatic fixes"
    assert state["report"]["rounds"] == 1
    assert state["code"] == CLEAN


@pytest.mark.parametrize("code", [CLEAN, SEED_003, COMPLEX, BUGGY, TWO_TIERS, CLASSES])
def test_improve_converges_within_one_round_per_tier(code: str) -> None:
    state: dict[str, Any] = {"code": code}
    state.update(call("review.extract", state)[0])
    for _ in range(len(FIX_TIERS) + 1):
        result, _ = call("review.improve", state)
        state.update(result)
        ast.parse(state["code"])
        if not result["changed"]:
            break
    else:
        pytest.fail("improve still changed the code after one round per fix tier")
    analyzed, _ = call("review.analyze", state)
    assert not [issue for issue in analyzed["issues"] if issue["fixable"]]


# --- metrics and issues -----------------------------------------------------------------------------


def test_qualified_names_and_metrics_of_methods_async_and_nested_functions() -> None:
    result, log = call("review.extract", {"code": CLASSES})
    functions = by_name(result["functions"])
    assert list(functions) == ["Shop.add", "Shop.fetch", "Shop.build", "Shop.build.keep", "main"]
    metrics = {name: (f["complexity"], f["max_nesting"], f["args"]) for name, f in functions.items()}
    assert metrics == {
        "Shop.add": (5, 1, 3),  # if, or, for, for-else
        "Shop.fetch": (3, 2, 2),  # two except handlers; async with > try
        "Shop.build": (3, 0, 1),  # two comprehension ifs; keep() is not counted here
        "Shop.build.keep": (2, 0, 1),  # and
        "main": (4, 2, 0),  # async for, two match cases; async for > match
    }
    assert functions["Shop.add"]["lineno"] == 4
    assert functions["Shop.add"]["length"] == 7  # the docstring line is not counted
    assert all(f["has_docstring"] for f in functions.values())
    assert log == ["Extracted 5 functions"]
    analyzed, _ = call("review.analyze", {"code": CLASSES, "round": 0})
    assert analyzed["issues"] == []
    assert analyzed["score"] == 10.0
    assert analyzed["complexity_score"] == 17


@pytest.mark.parametrize(
    ("body", "nesting"),
    [
        ("pass", 0),
        ("if x:\n    pass\nelif y:\n    pass\nelif z:\n    pass\nelse:\n    pass", 1),
        ("if x:\n    pass\nelse:\n    if y:\n        pass", 1),  # the same code as an elif
        (
            "with a:\n    try:\n        for i in x:\n            if i:\n                pass\n"
            "    finally:\n        pass",
            4,
        ),
        (
            "while x:\n    pass\nelse:\n    if y:\n        def inner():\n            if z:\n"
            "                pass",
            2,
        ),
    ],
)
def test_max_nesting(body: str, nesting: int) -> None:
    code = "def f(x):\n" + "".join(f"    {line}\n" for line in body.splitlines())
    result, _ = call("review.extract", {"code": code})
    assert by_name(result["functions"])["f"]["max_nesting"] == nesting


def test_every_issue_code_is_found() -> None:
    code = (
        "def long_one():\n" + "    x = 1\n" * 40 + "\n"
        "def many(a, b, c, d, e, f, *rest, key=None, **extra):\n"
        '    """Nine parameters."""\n'
        "\n"
        "def defaults(items=[], *, table={}, tags={'a'}, seen=set()):\n"
        '    """Three mutable defaults; set() is a call, not a literal."""\n'
        "\n"
        "if value == None:\n"
        "    try:\n"
        "        pass\n"
        "    except:\n"
        "        pass\n"
    )
    result, _ = call("review.analyze", {"code": code, "round": 0})
    found = [(issue["code"], issue["function"], issue["fixable"]) for issue in result["issues"]]
    assert found == [
        ("long_function", "long_one", False),
        ("missing_docstring", "long_one", True),
        ("too_many_args", "many", False),
        ("mutable_default", "defaults", False),
        ("mutable_default", "defaults", False),
        ("mutable_default", "defaults", False),
        ("compare_to_none", None, True),
        ("bare_except", None, True),
    ]
    # 10 - 1.5 - 1 - 1 - 3 * 1 - 0.5 - 1.5
    assert result["score"] == 1.5


def test_deep_nesting_and_high_complexity_issues() -> None:
    result, _ = call("review.analyze", {"code": SEED_003 + "\n\n" + COMPLEX, "round": 0})
    assert [(issue["code"], issue["function"]) for issue in result["issues"]] == [
        ("deep_nesting", "messy_function"),
        ("missing_docstring", "messy_function"),
        ("high_complexity", "grade"),
        ("missing_docstring", "grade"),
    ]
    assert result["complexity_score"] == 17
    assert "`grade` has cyclomatic complexity 13 (limit 10)" in [i["message"] for i in result["issues"]]


def test_a_docstring_stub_never_makes_a_function_long() -> None:
    code = "def exactly_forty():\n" + "    x = 1\n" * 39
    first, _ = call("review.analyze", {"code": code, "round": 0})
    assert codes(first["issues"]) == ["missing_docstring"]
    improved, _ = call("review.improve", {"code": code, "round": 0})
    second, _ = call("review.analyze", {"code": improved["code"], "round": 1})
    assert second["functions"][0]["length"] == 40
    assert second["issues"] == []


def test_score_is_clamped_at_zero() -> None:
    code = "".join(f"def f{i}(a=[]):\n    try:\n        pass\n    except:\n        pass\n" for i in range(3))
    result, _ = call("review.analyze", {"code": code, "round": 0})
    assert result["score"] == 0.0


# --- settings and the loop condition ----------------------------------------------------------------


def test_extract_fills_in_defaults_and_keeps_given_settings() -> None:
    result, _ = call("review.extract", {"code": CLEAN})
    assert result["threshold"] == 8.0
    assert result["max_rounds"] == 5
    assert result["round"] == 0
    assert result["error"] is None
    assert (result["changed"], result["fixed"], result["suggestions"]) == (False, {}, [])

    result, log = call("review.extract", {"code": CLEAN, "threshold": "high", "max_rounds": 2, "round": 0})
    assert result["threshold"] == 8.0
    assert "max_rounds" not in result
    assert "round" not in result
    assert "Ignoring threshold='high' (not a number); using 8.0" in log


BASE = {"error": None, "score": 5.0, "threshold": 8.0, "round": 0, "max_rounds": 5, "changed": False}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, True),
        ({"error": "syntax error at line 1: invalid syntax"}, False),
        ({"score": 8.0}, False),
        ({"round": 5}, False),
        ({"round": 2, "changed": False}, False),
        ({"round": 2, "changed": True}, True),
        ({"round": 5, "changed": True}, False),
    ],
)
def test_should_improve_matches_the_graph_condition(changes: dict[str, Any], expected: bool) -> None:
    state = {**BASE, **changes}
    assert should_improve(state) is expected
    assert condition_holds(IMPROVE_CONDITION, state) is expected


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"error": "syntax error at line 1: invalid syntax", "score": 0.0}, "syntax error"),
        ({"score": 8.0, "round": 5, "changed": True}, "threshold met"),
        ({"round": 5, "changed": True}, "round limit"),
        ({"round": 0, "max_rounds": 0}, "round limit"),
        # Out of rounds and out of fixes at once: more rounds would not have helped.
        ({"round": 5, "changed": False}, "no further automatic fixes"),
        ({"round": 2, "changed": False}, "no further automatic fixes"),
    ],
)
def test_report_names_why_the_loop_stopped(changes: dict[str, Any], reason: str) -> None:
    state = {**BASE, "issues": [], "functions": [], "suggestions": [], "fixed": {}, **changes}
    assert not should_improve(state)
    result, log = call("review.report", state)
    assert result["report"]["stopped_because"] == reason
    assert log[0].endswith(f"stopped: {reason}")


def test_the_shipped_graph_loops_on_exactly_this_condition() -> None:
    (demo,) = [d for d in shipped_definitions() if d.id == "demo-review"]
    (edge,) = [e for e in demo.edges_from("analyze") if e.when is not None]
    assert (edge.to, edge.when) == ("improve", IMPROVE_CONDITION)


def test_max_rounds_is_kept_within_what_the_graph_guards_allow() -> None:
    state: dict[str, Any] = {"code": "def f():\n    return 1\n", "max_rounds": 500}
    context = NodeContext(state=state)
    state.update(review.extract(context))
    assert state["max_rounds"] == review.MAX_ROUNDS_LIMIT
    assert any("max_rounds=500 is outside" in line for line in context.lines)
    (demo,) = [d for d in shipped_definitions() if d.id == "demo-review"]
    improve = demo.node("improve")
    assert improve is not None and improve.max_visits == review.MAX_ROUNDS_LIMIT

"""demo-review's node functions on hostile input: code past CPython's parser limits is refused before
`ast.parse` (which raised MemoryError or RecursionError on it), code within the limits is reviewed to
the end, and no output outgrows the activity's limit however many functions the code declares."""

import ast
import asyncio
import inspect
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

import countersign.graphs.review as review
import countersign.graphs.review_analysis as review_analysis
import countersign.graphs.review_fixes as review_fixes
import countersign.graphs.review_parsing as review_parsing
from countersign.activities.graph import MAX_OUTPUT_BYTES
from countersign.graphs.registry import NODE_FUNCTIONS, NodeContext, NodeError
from tests.graphs.test_review import call, run_review

Make = Callable[[int], str]
# Families of input whose depth grows with n: for each, the parser fails somewhere below n = 3,000
# (measured on CPython 3.11.7: RecursionError at 2,986 levels, MemoryError at 2,985 `lambda:`/`**`, or
# at 444 `-` inside 199 brackets).
FAMILIES: dict[str, Make] = {
    "unary minus": lambda n: "x = " + "-" * n + "1\n",
    "not": lambda n: "x = " + "not " * n + "y\n",
    "lambda": lambda n: "x = " + "lambda: " * n + "1\n",
    "power": lambda n: "x = 2" + "**2" * n + "\n",
    "sum": lambda n: "x = 1" + "+1" * n + "\n",
    "attributes": lambda n: "x = y" + ".a" * n + "\n",
    "calls": lambda n: "x = y" + "()" * n + "\n",
    "ternaries": lambda n: "x = " + "1 if y else " * n + "1\n",
    "elif chain": lambda n: "def f():\n    if x:\n        pass\n" + "    elif x:\n        pass\n" * n,
    "brackets around minus": lambda n: "x = " + "(" * 49 + "-" * n + "1" + ")" * 49 + "\n",
    "nested lists": lambda n: "x = " + "[" * n + "]" * n + "\n",
    "f-string field": lambda n: 'x = f"{' + "-" * n + '1}"\n',
    "blocks, then a chain": lambda n: (
        "".join(" " * i + "if x:\n" for i in range(95)) + " " * 95 + "x = " + "-" * n + "1\n"
    ),
}
# What each of them does to ast.parse at n = 10,000, unchecked: the failures this file is about.
THE_ORIGINAL_INPUTS = ["-" * 10_000 + "1", "1" + "+1" * 5_000, "(" * 199 + "-" * 1_000 + "1" + ")" * 199]


def in_a_thread(function: Callable[[], Any]) -> Any:
    """Run `function` as the graph activity does a sync node function: in a worker thread."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def largest_accepted(make: Make) -> int:
    """The largest n whose input the limits let through."""
    low, high = 1, 5_000
    while low < high:
        middle = (low + high + 1) // 2
        if review_parsing._input_problem(make(middle)) is None:
            low = middle
        else:
            high = middle - 1
    return low


@pytest.mark.parametrize("code", THE_ORIGINAL_INPUTS)
def test_the_inputs_that_broke_the_parser_do_break_it_unchecked(code: str) -> None:
    """The premise: without the limits these reach ast.parse, which fails with no syntax error."""
    with pytest.raises((MemoryError, RecursionError)):
        in_a_thread(lambda: ast.parse(code))


@pytest.mark.parametrize("code", THE_ORIGINAL_INPUTS)
@pytest.mark.parametrize("name", ["review.extract", "review.analyze", "review.improve"])
def test_code_past_the_parsers_limits_is_refused_before_parsing(
    code: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(source: str, mode: str = "exec") -> ast.AST:
        raise AssertionError("ast.parse was reached")

    monkeypatch.setattr(review_parsing, "parse", never)
    with pytest.raises(NodeError) as refused:
        in_a_thread(lambda: call(name, {"code": code}))
    assert refused.value.type == review_parsing.CODE_REFUSED and not refused.value.retryable
    assert refused.value.message.startswith("code refused: it nests ")
    assert "deep at line 1" in refused.value.message


@pytest.mark.parametrize("make", FAMILIES.values(), ids=FAMILIES.keys())
def test_every_family_is_refused_past_the_limits_and_reviewed_to_the_end_within(make: Make) -> None:
    for n in (3_000, 10_000):
        with pytest.raises(NodeError, match=r"^code refused: it nests"):
            in_a_thread(lambda n=n: call("review.extract", {"code": make(n)}))
    accepted = largest_accepted(make)
    # Something ordinary with it, so improve has work to do (and ast.unparse is tried on the rest).
    code = make(accepted) + "def g(a=[]):\n    try:\n        pass\n    except:\n        pass\n"
    state, log = in_a_thread(lambda: run_review(code))
    assert state["report"]["stopped_because"] != "syntax error", state["error"]
    assert any(line.startswith("Review done:") for line in log)


def test_the_size_limit() -> None:
    accepted = "x = 1\n" * (review_parsing.MAX_CODE_CHARS // 6)  # 262,140 characters
    with pytest.raises(NodeError, match=r"^code refused: it is 262,146 characters long \(limit 262,144\)$"):
        call("review.extract", {"code": accepted + "x = 1\n"})
    assert review_parsing._input_problem(accepted) is None


def test_the_limits_leave_real_code_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Some of the standard library's biggest and most nested modules pass limits 10 and 3 times lower
    (the whole library, 1,783 files, nests at most 15 brackets and under 100 levels by this count)."""
    import _pydecimal
    import dataclasses
    import inspect as inspect_module
    import typing

    monkeypatch.setattr(review_parsing, "MAX_DEPTH", 100)
    monkeypatch.setattr(review_parsing, "MAX_BRACKET_DEPTH", 15)
    review_parsing._input_problem.cache_clear()
    for module in (_pydecimal, dataclasses, inspect_module, typing):
        assert review_parsing._input_problem(inspect.getsource(module)) is None, module.__name__
    review_parsing._input_problem.cache_clear()


def test_literal_braces_and_plain_strings_are_not_nesting() -> None:
    code = 'x = f"' + "{{" * 60 + '{y}"\n' + 'z = "' + "(" * 500 + "-" * 2_000 + '"\n'
    assert review_parsing._input_problem(code) is None


def test_an_elif_chain_is_one_level_of_nesting_however_long() -> None:
    code = "def f(x):\n    if x == 0:\n        return 0\n" + "".join(
        f"    elif x == {i}:\n        return {i}\n" for i in range(1, 990)
    )
    (function,) = call("review.extract", {"code": code})[0]["functions"]
    assert function["max_nesting"] == 1 and function["complexity"] == 991


def test_many_functions_and_long_names_stay_within_the_output_limit() -> None:
    """25,000 functions fit in 256 KB, and a name may be as long: before, extract listed every function
    (and analyze every issue) with its whole name, megabytes past the activity's output limit."""
    long = "f" * 5_000
    code = f"class {long}:\n    def {long}(self):\n        return 0\n" + "".join(
        f"def f{i}(a=[]):\n    return 0\n" for i in range(2_000)
    )
    assert len(code) < review_parsing.MAX_CODE_CHARS

    def size(value: Any) -> int:
        return len(json.dumps(value))

    extracted, log = call("review.extract", {"code": code})
    assert len(extracted["functions"]) == review.MAX_LISTED
    assert f"Listing the first {review.MAX_LISTED} of 2001 functions" in log
    name = extracted["functions"][0]["name"]  # the method, in its class: both names cut
    assert len(name) == review_analysis.MAX_NAME_CHARS and name == "f" * 199 + "…"
    assert size(extracted) < MAX_OUTPUT_BYTES
    analyzed, _ = call("review.analyze", {**extracted, "code": code})
    assert len(analyzed["issues"]) == review.MAX_LISTED and analyzed["score"] == 0.0
    assert size(analyzed) < MAX_OUTPUT_BYTES
    improved, _ = call("review.improve", {**extracted, **analyzed, "code": code})
    assert len(improved["suggestions"]) <= review_fixes.MAX_SUGGESTIONS
    assert size(improved) < MAX_OUTPUT_BYTES
    assert len(improved.get("code", code)) <= review_parsing.MAX_CODE_CHARS


def test_the_registry_wrapper_refuses_a_result_that_is_not_a_dict() -> None:
    from countersign.graphs.registry import NodeFn

    bad = NodeFn(name="t.bad", function=lambda ctx: [1, 2])
    with pytest.raises(NodeError) as refused:
        asyncio.run(bad.call(NodeContext(state={})))
    assert refused.value.type == "NodeOutputInvalid" and not refused.value.retryable
    assert NODE_FUNCTIONS.get("review.extract").local is True  # the registration; the yaml overrides it

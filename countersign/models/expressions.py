"""Safe conditions over plain values (policy `when:` clauses, graph edges), never Python's `eval`.

`simpleeval` parses the expression with `ast` and walks it with an allow-list of operators: no
attribute access to dunders, no imports, no calls except the few functions below. It is pure and
deterministic, so workflows may evaluate conditions themselves.
"""

import ast
import functools
import threading
from collections.abc import Mapping
from typing import Any

from simpleeval import (  # type: ignore[import-untyped]
    EvalWithCompoundTypes,
    InvalidExpression,
    NameNotDefined,
)

from countersign.models.errors import CountersignError

# What a policy condition may name about an action: the facts its tool derives from the validated args
# (models/facts.py), the tool, its side effect and its risk. `confidence` (the model's own figure) is
# for extra steps only: it may add a step, never choose the chain.
FACT_NAMES = frozenset(
    {
        "type",
        "tool",
        "side_effect",
        "risk",
        "amount",
        "currency",
        "quantity",
        "days",
        "severity",
        "recipients",
        "amount_base",
        "over_budget",
        "unknown_vendor",
        "unknown_recipient",
        "unknown_currency",
    }
)
EXTRA_STEP_NAMES = FACT_NAMES | {"confidence"}
# What the planner read from the request: policies of workflows started before facts (frozen in their
# inputs) may name these, so such inputs still decode; a policy file loaded today may not.
PLANNER_LABELS = frozenset({"item", "start_date", "counterparty", "email", "topic"})
POLICY_NAMES = EXTRA_STEP_NAMES | PLANNER_LABELS
_CONSTANTS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_FUNCTIONS = {"min": min, "max": max, "abs": abs, "len": len, "lower": str.lower, "upper": str.upper}
MAX_LENGTH = 500


class ExpressionError(CountersignError, ValueError):
    pass


# CPython before 3.11.9 / 3.12.3 keeps the AST converter's recursion depth in state shared by threads
# (gh-106905): two `ast.parse` calls at once in a worker's workflow-task threads failed with
# "SystemError: AST constructor recursion depth mismatch", seen at 10,000 workflows started at once.
# Every parse in a worker process goes through this lock, and conditions are parsed once.
_PARSE_LOCK = threading.Lock()


def parse(source: str, mode: str = "exec") -> ast.AST:
    """`ast.parse`, one at a time in this process (see _PARSE_LOCK)."""
    with _PARSE_LOCK:
        return ast.parse(source, mode=mode)


@functools.lru_cache(maxsize=4096)
def _parsed(expression: str) -> ast.AST:
    """The tree simpleeval would parse `expression` into, shared by every evaluation (it only reads)."""
    with _PARSE_LOCK:
        tree: ast.AST = EvalWithCompoundTypes.parse(expression)
    return tree


def _evaluator(names: Mapping[str, Any]) -> EvalWithCompoundTypes:
    return EvalWithCompoundTypes(names={**_CONSTANTS, **names}, functions=dict(_FUNCTIONS))


def names_in(expression: str) -> set[str]:
    """The names an expression uses (it must parse)."""
    return {
        node.id for node in ast.walk(parse(expression.strip(), mode="eval")) if isinstance(node, ast.Name)
    }


def check_expression(
    expression: str, allowed: frozenset[str] = POLICY_NAMES, sample: Mapping[str, Any] | None = None
) -> None:
    """Refuse an expression that does not parse or names something unknown, with the reason. `sample`
    gives the names values for the trial evaluation (default: None each)."""
    if len(expression) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = parse(expression.strip(), mode="eval")
    except SyntaxError as error:
        raise ExpressionError(f"{expression!r} is not a valid expression: {error.msg}") from None
    # Every name is checked, including those a short-circuiting `and` would never reach.
    known = allowed | _CONSTANTS.keys() | _FUNCTIONS.keys()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in known:
            names = ", ".join(sorted(allowed))
            raise ExpressionError(f"unknown name {node.id!r} in {expression!r} (known: {names})")
    # Evaluated once with every allowed name set to None, for what simpleeval refuses (dunder access,
    # unknown functions); comparisons on the missing values may fail, as they do at run time ("no match").
    try:
        _evaluator({**dict.fromkeys(allowed), **(sample or {})}).eval(expression, _parsed(expression))
    except InvalidExpression as error:
        raise ExpressionError(f"{expression!r} is not allowed: {error}") from None
    except (TypeError, ValueError, ArithmeticError, KeyError, IndexError, AttributeError):
        pass


def holds(expression: str, names: Mapping[str, Any]) -> bool:
    """True when `expression` evaluates truthy; a comparison with a missing value is simply false."""
    try:
        return bool(_evaluator(names).eval(expression, _parsed(expression)))
    except (TypeError, ValueError, ArithmeticError, KeyError, IndexError, AttributeError, NameNotDefined):
        return False

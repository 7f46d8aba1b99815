"""demo-review's analysis: each function's metrics, the issues found in the code, and its score.

Metrics, per function or method (nested functions are listed separately and are not part of their
parent's metrics; lambdas and comprehensions are):

- complexity: 1 + one per `if`/`elif`, loop, loop `else`, `except` handler, ternary, `match` case and
  `assert`, one per extra operand of `and`/`or`, and one per `if` of a comprehension.
- max_nesting: how many control blocks (`if`, loops, `with`, `try`, `match`) enclose the deepest
  statement; an `elif` (or an `else:` holding only an `if`, the same code) is not a level of its own.
- length: lines from the `def` to the end, without the docstring (so adding one never makes a
  function "long").
- args: every parameter in the signature, `self`, `*args` and `**kwargs` included.

Score, 0 to 10 (10 = no issues), always a multiple of 0.5 (so rounding never meets a tie):

    score = max(0, 10 - sum(WEIGHTS[issue.code] for each issue)
                       - COMPLEXITY_WEIGHT * sum(max(0, complexity - MAX_COMPLEXITY) for each function))

Names are cut at MAX_NAME_CHARS, so no output outgrows the activity's output limit.
"""

import ast
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

# An issue is raised when a metric is above its limit.
MAX_LENGTH: Final = 40
MAX_NESTING: Final = 2  # three nested blocks (seed 003's if/for/while) is deep
MAX_COMPLEXITY: Final = 10
MAX_ARGS: Final = 6

WEIGHTS: Final[Mapping[str, float]] = {
    "high_complexity": 2.0,
    "deep_nesting": 2.0,
    "long_function": 1.5,
    "bare_except": 1.5,
    "too_many_args": 1.0,
    "mutable_default": 1.0,
    "missing_docstring": 1.0,
    "compare_to_none": 0.5,
}
# Per point of complexity above MAX_COMPLEXITY, on top of the high_complexity weight.
COMPLEXITY_WEIGHT: Final = 0.5
# Output bound on names (see _short).
MAX_NAME_CHARS: Final = 200

FIX_TIERS: Final = (
    frozenset({"bare_except", "compare_to_none"}),
    frozenset({"missing_docstring"}),
)
FIXABLE: Final = frozenset().union(*FIX_TIERS)

_Function = ast.FunctionDef | ast.AsyncFunctionDef
_SCOPES: Final = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_MUTABLE: Final = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


@dataclass(frozen=True)
class Issue:
    code: str
    function: str | None
    lineno: int | None
    message: str
    # What a human should do about it; only for issues the agent cannot fix. Kept free of line
    # numbers and lengths (which change when the code is rewritten) so it dedups across rounds.
    suggestion: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "function": self.function,
            "lineno": self.lineno,
            "message": self.message,
            "fixable": self.code in FIXABLE,
        }


@dataclass
class Review:
    functions: list[dict[str, Any]]
    issues: list[Issue]


def has_docstring(node: _Function) -> bool:
    return ast.get_docstring(node, clean=False) is not None


def _own_nodes(body: Sequence[ast.AST]) -> Iterator[ast.AST]:
    """Every node of a function body, without descending into nested functions and classes."""
    stack = [node for node in body if not isinstance(node, _SCOPES)]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(child for child in ast.iter_child_nodes(node) if not isinstance(child, _SCOPES))


def _branches(node: ast.AST) -> int:
    if isinstance(node, ast.If | ast.IfExp | ast.ExceptHandler | ast.match_case | ast.Assert):
        return 1
    if isinstance(node, ast.For | ast.AsyncFor | ast.While):
        return 2 if node.orelse else 1
    if isinstance(node, ast.BoolOp):
        return len(node.values) - 1
    if isinstance(node, ast.comprehension):
        return len(node.ifs)
    return 0


def _complexity(node: _Function) -> int:
    return 1 + sum(_branches(child) for child in _own_nodes(node.body))


def _inner_bodies(stmt: ast.stmt) -> list[list[ast.stmt]]:
    if isinstance(stmt, ast.Match):
        return [case.body for case in stmt.cases]
    if isinstance(stmt, ast.Try | ast.TryStar):
        return [stmt.body, *(handler.body for handler in stmt.handlers), stmt.orelse, stmt.finalbody]
    if isinstance(stmt, ast.If | ast.For | ast.AsyncFor | ast.While):
        return [stmt.body, stmt.orelse]
    if isinstance(stmt, ast.With | ast.AsyncWith):
        return [stmt.body]
    return []


def _nesting(body: list[ast.stmt]) -> int:
    """The depth of the deepest statement in `body`, whose statements are 0 blocks deep. A loop: an
    `elif` chain is a tree as deep as it is long, and a thousand of them would overflow a recursion."""
    deepest = 0
    todo = [(body, 0)]
    while todo:
        statements, depth = todo.pop()
        if statements:
            deepest = max(deepest, depth)
        for stmt in statements:
            if isinstance(stmt, ast.If) and len(stmt.orelse) == 1 and isinstance(stmt.orelse[0], ast.If):
                # An elif continues the chain at this level; ast.unparse writes `else: if` as one too,
                # so counting it this way keeps the metric stable when improve rewrites the code.
                todo += [(stmt.body, depth + 1), (stmt.orelse, depth)]
                continue
            todo += [(inner, depth + 1) for inner in _inner_bodies(stmt)]
    return deepest


def _length(node: _Function) -> int:
    lines = (node.end_lineno or node.lineno) - node.lineno + 1
    if has_docstring(node):
        docstring = node.body[0]
        lines -= (docstring.end_lineno or docstring.lineno) - docstring.lineno + 1
    return lines


def _arg_count(args: ast.arguments) -> int:
    named = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
    return named + (args.vararg is not None) + (args.kwarg is not None)


def _mutable_defaults(args: ast.arguments) -> Iterator[tuple[str, ast.expr]]:
    positional = [*args.posonlyargs, *args.args]
    with_default = positional[len(positional) - len(args.defaults) :]
    pairs = [
        *zip(with_default, args.defaults, strict=True),
        *zip(args.kwonlyargs, args.kw_defaults, strict=True),
    ]
    for arg, default in pairs:
        if isinstance(default, _MUTABLE):
            yield arg.arg, default


def none_comparisons(node: ast.Compare) -> list[int]:
    """Indexes of the `==`/`!=` operators in `node` with None on either side."""
    operands = [node.left, *node.comparators]
    return [
        index
        for index, op in enumerate(node.ops)
        if isinstance(op, ast.Eq | ast.NotEq)
        and any(_is_none(operand) for operand in operands[index : index + 2])
    ]


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _measure(node: _Function, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "lineno": node.lineno,
        "length": _length(node),
        "complexity": _complexity(node),
        "max_nesting": _nesting(node.body),
        "args": _arg_count(node.args),
        "has_docstring": has_docstring(node),
    }


def _function_issues(node: _Function, info: Mapping[str, Any]) -> Iterator[Issue]:
    name, line = info["name"], node.lineno
    if info["length"] > MAX_LENGTH:
        yield Issue(
            "long_function",
            name,
            line,
            f"`{name}` is {info['length']} lines long (limit {MAX_LENGTH})",
            f"shorten `{name}` (over {MAX_LENGTH} lines) by extracting helper functions",
        )
    if info["max_nesting"] > MAX_NESTING:
        depth = info["max_nesting"]
        yield Issue(
            "deep_nesting",
            name,
            line,
            f"`{name}` nests control blocks {depth} deep (limit {MAX_NESTING})",
            f"flatten `{name}` ({depth} nested blocks) with early returns or helper functions",
        )
    if info["complexity"] > MAX_COMPLEXITY:
        complexity = info["complexity"]
        yield Issue(
            "high_complexity",
            name,
            line,
            f"`{name}` has cyclomatic complexity {complexity} (limit {MAX_COMPLEXITY})",
            f"split `{name}` (complexity {complexity}) into smaller functions",
        )
    if not info["has_docstring"]:
        yield Issue("missing_docstring", name, line, f"`{name}` has no docstring")
    if info["args"] > MAX_ARGS:
        count = info["args"]
        yield Issue(
            "too_many_args",
            name,
            line,
            f"`{name}` takes {count} parameters (limit {MAX_ARGS})",
            f"reduce the {count} parameters of `{name}`, e.g. group related ones in a dataclass",
        )
    for param, default in _mutable_defaults(node.args):
        yield Issue(
            "mutable_default",
            name,
            default.lineno,
            f"`{name}` has a mutable default for `{param}`, shared by every call",
            f"default `{param}` of `{name}` to None and build the value inside the function",
        )


def _short(name: str) -> str:
    """A name as the state shows it: identifiers are not limited in length, the state is."""
    return name if len(name) <= MAX_NAME_CHARS else name[: MAX_NAME_CHARS - 1] + "…"


def _scoped_nodes(tree: ast.Module) -> Iterator[tuple[ast.AST, tuple[str, ...], str | None]]:
    """Every node in source order, with the names of its enclosing classes and functions and the
    qualified name of its innermost function. A loop rather than an ast.NodeVisitor: recursion
    overflows on long expressions (a few hundred `+` in a row) that parse fine."""
    stack: list[tuple[ast.AST, tuple[str, ...], str | None]] = [(tree, (), None)]
    while stack:
        node, names, function = stack.pop()
        yield node, names, function
        if isinstance(node, _SCOPES):
            names = (*names, _short(node.name))
            if not isinstance(node, ast.ClassDef):
                function = _short(".".join(names))
        children = list(ast.iter_child_nodes(node))
        stack.extend((child, names, function) for child in reversed(children))


def _node_issues(node: ast.AST, function: str | None) -> Iterator[Issue]:
    if isinstance(node, ast.ExceptHandler) and node.type is None:
        message = "bare `except:` also catches KeyboardInterrupt and SystemExit"
        yield Issue("bare_except", function, node.lineno, message)
    if isinstance(node, ast.Compare):
        for _ in none_comparisons(node):
            message = "comparison to None with `==`/`!=` instead of `is`/`is not`"
            yield Issue("compare_to_none", function, node.lineno, message)


def review_tree(tree: ast.Module) -> Review:
    """Each function's metrics (qualified names: `Class.method`, `outer.inner`) and every issue."""
    review = Review(functions=[], issues=[])
    for node, names, function in _scoped_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            info = _measure(node, _short(".".join((*names, _short(node.name)))))
            review.functions.append(info)
            review.issues.extend(_function_issues(node, info))
        review.issues.extend(_node_issues(node, function))
    review.issues.sort(key=lambda issue: (issue.lineno or 0, issue.code))
    return review


def quality_score(review: Review) -> float:
    excess = sum(max(0, int(function["complexity"]) - MAX_COMPLEXITY) for function in review.functions)
    penalty = sum(WEIGHTS[issue.code] for issue in review.issues) + COMPLEXITY_WEIGHT * excess
    return round(max(0.0, 10.0 - penalty), 1)

"""The `demo-review` agent's node functions: a code review of Python source, with the standard `ast` only.

The graph runs `review.extract → review.analyze → (review.improve → review.analyze)* → review.report`,
looping while `should_improve(state)` (the same condition as `IMPROVE_CONDITION`, the graph's edge).

State: `code` (the Python source), `threshold` (default 8.0), `max_rounds` (default 5); the functions
add `error`, `functions`, `issues`, `score`, `complexity_score`, `round`, `changed`, `fixed`,
`suggestions` and finally `report`.

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

A syntax error (or empty input) scores 0.

Input limits, checked before `ast.parse` (see `_input_problem`): at most MAX_CODE_CHARS characters,
brackets nested at most MAX_BRACKET_DEPTH deep, and at most MAX_DEPTH levels of nesting counting blocks,
`elif`s and operators chained in one expression. Code beyond them fails the node (`NodeError`, not
retried) instead of reaching limits of CPython's parser that are not syntax errors: MemoryError or
RecursionError, which failed the run without saying why. Lists in the state are cut at MAX_LISTED
entries (the score still counts every issue), names at MAX_NAME_CHARS, so no output outgrows the
activity's output limit however many functions the code declares.

Fixes come in tiers (`FIX_TIERS`): each improve applies every fix of the first tier that still has
work to do, so the behaviour-changing fixes (`except:`, `== None`) get a round and a diff of their
own before the cosmetic docstring stubs. A tier's fixes remove all of its issues and create none of
an earlier tier, so after at most len(FIX_TIERS) changing rounds an improve changes nothing.
"""

import ast
import functools
import io
import re
import tokenize
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from graphs.registry import NodeContext, NodeError, node_fn
from models.expressions import parse
from models.graph import MAX_INPUT_BYTES

DEFAULT_THRESHOLD: Final = 8.0
DEFAULT_MAX_ROUNDS: Final = 5
# demo_review.yaml's loop guards (max_visits) leave room for this many rounds.
MAX_ROUNDS_LIMIT: Final = 20

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

# Input limits (see the module docstring). CPython 3.11's parser fails, with no syntax error, at about
# 3,000 nested levels (RecursionError while building the tree: a chain of `-`, `not`, `+`, `.`, calls,
# ternaries or `elif`s) or when its stack of 6,000 frames overflows (MemoryError: a few thousand
# `lambda:` or `**`, or 200 brackets, its own limit, with a few hundred operators inside: each bracket
# costs it about 26 frames). Real code is far from both: a dozen brackets, a few dozen levels.
MAX_CODE_CHARS: Final = MAX_INPUT_BYTES  # what the gateway accepts as a run's whole input
MAX_BRACKET_DEPTH: Final = 50  # ~1,300 of the parser's frames
MAX_DEPTH: Final = 1000  # a third of where the tree fails; ~2,000 frames at 2 per operator
CODE_REFUSED: Final = "CodeRefused"  # the node's failure type in Temporal
# Output bounds: a function's entry is ~300 bytes of JSON, an issue ~400.
MAX_LISTED: Final = 500
MAX_SUGGESTIONS: Final = 100
MAX_NAME_CHARS: Final = 200

FIX_TIERS: Final = (
    frozenset({"bare_except", "compare_to_none"}),
    frozenset({"missing_docstring"}),
)
FIXABLE: Final = frozenset().union(*FIX_TIERS)

# The graph's `analyze → improve` edge; `should_improve` is the same test in Python.
IMPROVE_CONDITION: Final = (
    "not state.error and state.score < state.threshold and state.round < state.max_rounds"
    " and (state.round == 0 or state.changed)"
)

_Function = ast.FunctionDef | ast.AsyncFunctionDef
_SCOPES: Final = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_MUTABLE: Final = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


@dataclass(frozen=True)
class _ParseError:
    message: str
    lineno: int | None


@dataclass(frozen=True)
class _Issue:
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
class _Review:
    functions: list[dict[str, Any]]
    issues: list[_Issue]


def should_improve(state: Mapping[str, Any]) -> bool:
    """Whether the loop goes `analyze → improve` again (else `analyze → report`): no error, the score
    below the threshold, rounds left, and the last improve changed something (or none has run yet).
    The last clause is what makes the loop end when only human-level issues are left."""
    if state.get("error"):
        return False
    round_ = state.get("round", 0)
    return bool(
        state.get("score", 0.0) < state.get("threshold", DEFAULT_THRESHOLD)
        and round_ < state.get("max_rounds", DEFAULT_MAX_ROUNDS)
        and (round_ == 0 or state.get("changed"))
    )


# --- parsing and measuring -------------------------------------------------------------------------


def _parse(code: object) -> ast.Module | _ParseError:
    """The module, or why it is not Python. Raises NodeError for code beyond the input limits."""
    if not isinstance(code, str):
        return _ParseError(f"the code to review must be a string, not {type(code).__name__}", None)
    problem = _input_problem(code)
    if problem is not None:
        raise NodeError(f"code refused: {problem}", type=CODE_REFUSED)
    if not code.strip():
        return _ParseError("empty input at line 1: there is no code to review", 1)
    try:
        tree = parse(code)
        assert isinstance(tree, ast.Module)
        return tree
    except SyntaxError as exc:
        where = f" at line {exc.lineno}" if exc.lineno else ""
        return _ParseError(f"syntax error{where}: {exc.msg}", exc.lineno)
    except ValueError as exc:  # null bytes
        return _ParseError(f"cannot parse the code: {exc}", None)
    except (MemoryError, RecursionError) as exc:
        # Past the limits' checks only if this CPython's parser has other limits than 3.11's.
        raise NodeError(
            f"code refused: it is nested too deeply for Python's parser ({type(exc).__name__})",
            type=CODE_REFUSED,
        ) from None


_OPERATOR_WORDS: Final = frozenset({"not", "and", "or", "if", "else", "lambda", "await", "in", "is", "for"})
_FIELD_WORDS: Final = re.compile(r"\b(?:not|and|or|if|else|lambda|await|in|is|for|yield)\b")
_FIELD_OPERATORS: Final = frozenset("+-*/%@<>=!&|^~.:")
# Operator tokens that never nest what follows them: separators, assignments, annotations.
_FLAT: Final = frozenset({",", ";", ":", "=", "->"})


@functools.lru_cache(maxsize=16)  # analyze and improve check the same code again, round after round
def _input_problem(code: str) -> str | None:
    """Why `code` is beyond the input limits, or None.

    The depth is counted on tokens, so nothing recursive runs on hostile input, and never falls below
    the depth of the tree `ast.parse` builds: one level per indented block and per `elif` of a chain
    (each is the `else` of the one before), and per operator, keyword operator, call, subscript or
    bracket chained in one expression (a comma starts a sibling). Operators of `and`/`or` chains and
    comparisons make flat trees and are counted anyway: a thousand of them in one expression is not
    code a person reviews. f-strings are one token; the operators inside their {fields} are counted.
    """
    if len(code) > MAX_CODE_CHARS:
        return f"it is {len(code):,} characters long (limit {MAX_CODE_CHARS:,})"
    chains = [0]  # per open bracket (index 0: none open): operators chained since the last comma
    elifs = [0]  # per indented block (index 0: the module): the `elif`s continuing the current `if`
    chained = elif_total = 0  # sum(chains), sum(elifs), kept as they change (no sum per token)
    line_start = True
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            kind, text, row = token.type, token.string, token.start[0]
            if kind == tokenize.INDENT:
                elifs.append(0)
                continue
            if kind == tokenize.DEDENT:
                elif_total -= elifs.pop() if len(elifs) > 1 else 0
                continue
            if kind == tokenize.NEWLINE or (text == ";" and len(chains) == 1):
                chains, chained, line_start = [0], 0, True
                continue
            if kind in (tokenize.NL, tokenize.COMMENT):
                continue
            if line_start:
                line_start = False
                if text == "elif":
                    elifs[-1] += 1
                    elif_total += 1
                elif text != "else":
                    elif_total -= elifs[-1]
                    elifs[-1] = 0
            brackets = len(chains) - 1
            if kind == tokenize.OP and text in ("(", "[", "{"):
                chains[-1] += 1  # a call, subscript or bracket: one more level for what it holds
                chained += 1
                chains.append(0)
                brackets += 1
            elif kind == tokenize.OP and text in (")", "]", "}"):
                if len(chains) > 1:
                    chained -= chains.pop()
            elif kind == tokenize.OP and text == ",":
                chained -= chains[-1]
                chains[-1] = 0
            else:
                added = 0
                if (kind == tokenize.OP and text not in _FLAT) or (
                    kind == tokenize.NAME and text in _OPERATOR_WORDS
                ):
                    added = 1
                elif kind == tokenize.STRING and "f" in text[: text.find(text[-1])].lower():
                    deepest, operators = _fstring_nesting(text)
                    added, brackets = deepest + operators, brackets + deepest
                chains[-1] += added
                chained += added
            if brackets > MAX_BRACKET_DEPTH:
                return f"it nests brackets more than {MAX_BRACKET_DEPTH} deep at line {row}"
            depth = len(elifs) - 1 + elif_total + chained
            if depth > MAX_DEPTH:
                return (
                    f"it nests more than {MAX_DEPTH} levels deep at line {row} "
                    "(counting blocks, elifs and the operators chained in one expression)"
                )
    except (tokenize.TokenError, SyntaxError):
        # It does not tokenize: ast.parse stops there too, and says why; what came before was counted.
        pass
    return None


def _fstring_nesting(token: str) -> tuple[int, int]:
    """The bracket depth and the number of operators inside the {fields} of an f-string token, counted
    generously (every operator character and keyword, a field's braces as one level)."""
    depth = deepest = operators = 0
    fields: list[str] = []
    index = token.find(token[-1])  # the body starts at the first quote, after the prefix
    while index < len(token):
        char = token[index]
        index += 1
        if depth == 0:
            if char == "{" and token.startswith("{", index):  # `{{`: a literal brace
                index += 1
            elif char == "{":
                depth, deepest = 1, max(deepest, 1)
                fields.append(" ")
            continue
        fields.append(char)
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
        elif char in _FIELD_OPERATORS:
            operators += 1
    return deepest, operators + len(_FIELD_WORDS.findall("".join(fields)))


def _has_docstring(node: _Function) -> bool:
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
    if _has_docstring(node):
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


def _none_comparisons(node: ast.Compare) -> list[int]:
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
        "has_docstring": _has_docstring(node),
    }


def _function_issues(node: _Function, info: Mapping[str, Any]) -> Iterator[_Issue]:
    name, line = info["name"], node.lineno
    if info["length"] > MAX_LENGTH:
        yield _Issue(
            "long_function",
            name,
            line,
            f"`{name}` is {info['length']} lines long (limit {MAX_LENGTH})",
            f"shorten `{name}` (over {MAX_LENGTH} lines) by extracting helper functions",
        )
    if info["max_nesting"] > MAX_NESTING:
        depth = info["max_nesting"]
        yield _Issue(
            "deep_nesting",
            name,
            line,
            f"`{name}` nests control blocks {depth} deep (limit {MAX_NESTING})",
            f"flatten `{name}` ({depth} nested blocks) with early returns or helper functions",
        )
    if info["complexity"] > MAX_COMPLEXITY:
        complexity = info["complexity"]
        yield _Issue(
            "high_complexity",
            name,
            line,
            f"`{name}` has cyclomatic complexity {complexity} (limit {MAX_COMPLEXITY})",
            f"split `{name}` (complexity {complexity}) into smaller functions",
        )
    if not info["has_docstring"]:
        yield _Issue("missing_docstring", name, line, f"`{name}` has no docstring")
    if info["args"] > MAX_ARGS:
        count = info["args"]
        yield _Issue(
            "too_many_args",
            name,
            line,
            f"`{name}` takes {count} parameters (limit {MAX_ARGS})",
            f"reduce the {count} parameters of `{name}`, e.g. group related ones in a dataclass",
        )
    for param, default in _mutable_defaults(node.args):
        yield _Issue(
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


def _node_issues(node: ast.AST, function: str | None) -> Iterator[_Issue]:
    if isinstance(node, ast.ExceptHandler) and node.type is None:
        message = "bare `except:` also catches KeyboardInterrupt and SystemExit"
        yield _Issue("bare_except", function, node.lineno, message)
    if isinstance(node, ast.Compare):
        for _ in _none_comparisons(node):
            message = "comparison to None with `==`/`!=` instead of `is`/`is not`"
            yield _Issue("compare_to_none", function, node.lineno, message)


def _review(tree: ast.Module) -> _Review:
    """Each function's metrics (qualified names: `Class.method`, `outer.inner`) and every issue."""
    review = _Review(functions=[], issues=[])
    for node, names, function in _scoped_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            info = _measure(node, _short(".".join((*names, _short(node.name)))))
            review.functions.append(info)
            review.issues.extend(_function_issues(node, info))
        review.issues.extend(_node_issues(node, function))
    review.issues.sort(key=lambda issue: (issue.lineno or 0, issue.code))
    return review


def _score(review: _Review) -> float:
    excess = sum(max(0, int(function["complexity"]) - MAX_COMPLEXITY) for function in review.functions)
    penalty = sum(WEIGHTS[issue.code] for issue in review.issues) + COMPLEXITY_WEIGHT * excess
    return round(max(0.0, 10.0 - penalty), 1)


# --- fixing ----------------------------------------------------------------------------------------


def _fix(node: ast.AST, codes: frozenset[str]) -> list[str]:
    """Fix `node` in place if it has issues named in `codes`; one code per issue fixed. Each fix removes
    exactly what `_review` reports under that code, which is what makes a second pass change nothing."""
    if "bare_except" in codes and isinstance(node, ast.ExceptHandler) and node.type is None:
        node.type = ast.Name(id="Exception", ctx=ast.Load())
        return ["bare_except"]
    if "compare_to_none" in codes and isinstance(node, ast.Compare):
        indexes = _none_comparisons(node)  # one Compare may hold several: `a == None != b`
        for index in indexes:
            node.ops[index] = ast.Is() if isinstance(node.ops[index], ast.Eq) else ast.IsNot()
        return ["compare_to_none"] * len(indexes)
    if (
        "missing_docstring" in codes
        and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and not _has_docstring(node)
    ):
        node.body.insert(0, ast.Expr(value=ast.Constant(value=f"TODO: describe what {node.name} does.")))
        return ["missing_docstring"]
    return []


_FIX_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "bare_except": "replaced {n} bare `except:` with `except Exception:`",
    "compare_to_none": "rewrote {n} `== None`/`!= None` comparison(s) as `is None`/`is not None`",
    "missing_docstring": "added {n} docstring stub(s)",
}


def _next_tier(issues: Sequence[_Issue]) -> frozenset[str]:
    present = {issue.code for issue in issues}
    return next((tier for tier in FIX_TIERS if tier & present), frozenset())


def _apply_fixes(tree: ast.Module, codes: frozenset[str]) -> tuple[str, Counter[str]] | str:
    """The fixed source and what was fixed, or why the code stays as it is."""
    # Listed before fixing, so the walk never meets the nodes the fixes add.
    counts = Counter(code for node in list(ast.walk(tree)) for code in _fix(node, codes))
    if not counts:
        return "no automatic fixes left"
    try:
        code = ast.unparse(tree) + "\n"
    except RecursionError:  # ast.unparse recurses, and a long enough expression outruns it
        return "the code is nested too deeply for ast.unparse to rewrite; left as it is"
    try:
        reparsed = _parse(code)
    except NodeError:  # docstring stubs and ast.unparse's indentation can take it past MAX_CODE_CHARS
        return "the rewritten code would be beyond the input limits; left as it is"
    if isinstance(reparsed, _ParseError):  # never expected; keep the old code rather than break it
        return "the rewritten code would not parse; left as it is"
    return code, counts


def _merge_suggestions(previous: object, issues: Sequence[_Issue]) -> list[str]:
    """The previous suggestions and the new ones, once each, at most MAX_SUGGESTIONS (a set: checking a
    list for each of a few thousand issues is quadratic)."""
    suggestions = [str(item) for item in previous][:MAX_SUGGESTIONS] if isinstance(previous, list) else []
    seen = set(suggestions)
    for issue in issues:
        if len(suggestions) >= MAX_SUGGESTIONS:
            break
        if issue.suggestion and issue.suggestion not in seen:
            suggestions.append(issue.suggestion)
            seen.add(issue.suggestion)
    return suggestions


def _listed(items: list[Any], what: str, ctx: NodeContext) -> list[Any]:
    """The first MAX_LISTED items, saying so in the log when there were more."""
    if len(items) > MAX_LISTED:
        ctx.log(f"Listing the first {MAX_LISTED} of {len(items)} {what}")
    return items[:MAX_LISTED]


# --- node functions --------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_SETTINGS: Final = (("threshold", DEFAULT_THRESHOLD), ("max_rounds", DEFAULT_MAX_ROUNDS), ("round", 0))


def _loop_defaults(ctx: NodeContext) -> dict[str, Any]:
    """Defaults for the settings, and every key the graph's edge reads, so its expression never
    meets an undefined name."""
    updates: dict[str, Any] = {}
    for key, default in _SETTINGS:
        value = ctx.state.get(key)
        if not _is_number(value):
            if value is not None:
                ctx.log(f"Ignoring {key}={value!r} (not a number); using {default}")
            updates[key] = default
    rounds = ctx.state.get("max_rounds")
    if isinstance(rounds, int | float) and _is_number(rounds) and not 0 <= rounds <= MAX_ROUNDS_LIMIT:
        # The graph's guards (max_visits) allow this many rounds; a run must not fail on its input.
        updates["max_rounds"] = min(max(int(rounds), 0), MAX_ROUNDS_LIMIT)
        ctx.log(f"max_rounds={rounds} is outside 0..{MAX_ROUNDS_LIMIT}; using {updates['max_rounds']}")
    for key, empty in (("changed", False), ("fixed", {}), ("suggestions", [])):
        if key not in ctx.state:
            updates[key] = empty
    return updates


@node_fn("review.extract", local=True)
def extract(ctx: NodeContext) -> dict[str, Any]:
    """Parse the code and list its functions and methods with their metrics.

    Reads `code`, `threshold`, `max_rounds`, `round`; writes `error` (None when the code parses),
    `functions`, and the defaults of the settings and of `round`, `changed`, `fixed`, `suggestions`.
    """
    updates = _loop_defaults(ctx)
    parsed = _parse(ctx.state.get("code", ""))
    if isinstance(parsed, _ParseError):
        ctx.log(f"Cannot review the code: {parsed.message}")
        return {**updates, "error": parsed.message, "functions": []}
    functions = _review(parsed).functions
    ctx.log(f"Extracted {len(functions)} function{'' if len(functions) == 1 else 's'}")
    return {**updates, "error": None, "functions": _listed(functions, "functions", ctx)}


@node_fn("review.analyze", local=True)
def analyze(ctx: NodeContext) -> dict[str, Any]:
    """Find the issues in the current code (it changes between rounds) and score it.

    Reads `code`, `error`, `round`; writes `issues`, `score`, `complexity_score`, and `functions`
    (re-measured, so they match the current code) or `error`.
    """
    round_ = ctx.state.get("round", 0)
    parsed = _parse(ctx.state.get("code", ""))
    if not isinstance(parsed, _ParseError) and ctx.state.get("error"):
        parsed = _ParseError(str(ctx.state["error"]), None)
    if isinstance(parsed, _ParseError):
        issue = _Issue("syntax_error", None, parsed.lineno, parsed.message)
        ctx.log(f"Quality score: 0/10, {parsed.message} (Round {round_})")
        return {"error": parsed.message, "issues": [issue.to_json()], "score": 0.0, "complexity_score": 0}
    review = _review(parsed)
    complexity = sum(function["complexity"] for function in review.functions)
    score = _score(review)
    ctx.log(f"Calculated complexity score: {complexity} (Round {round_})")
    ctx.log(f"Quality score: {score}/10 with {len(review.issues)} issue(s) (Round {round_})")
    return {
        "functions": _listed(review.functions, "functions", ctx),
        "issues": [issue.to_json() for issue in _listed(review.issues, "issues", ctx)],
        "score": score,
        "complexity_score": complexity,
    }


@node_fn("review.improve", local=True)
def improve(ctx: NodeContext) -> dict[str, Any]:
    """Apply the next tier of safe mechanical fixes and suggest what only a human can fix.

    The fixes: a docstring stub for a function without one, `except:` → `except Exception:`, and
    `== None`/`!= None` → `is None`/`is not None`. The code is rewritten with `ast.unparse`, so
    comments and formatting are lost; the result is checked to parse before it is kept. Caveat: the
    None fix changes behaviour for types that overload `==` (an SQLAlchemy `column == None`).

    Reads `code`, `round`, `fixed`, `suggestions`; writes `round` (+1), `changed`, `suggestions`,
    and when something was fixed, `code` and `fixed` (running counts by issue code).
    """
    round_ = ctx.state.get("round", 0) + 1
    parsed = _parse(ctx.state.get("code", ""))
    if isinstance(parsed, _ParseError):
        ctx.log(f"Round {round_}: nothing to improve, {parsed.message}")
        return {"round": round_, "changed": False}
    review = _review(parsed)
    previous = ctx.state.get("suggestions")
    suggestions = _merge_suggestions(previous, review.issues)
    for suggestion in suggestions[len(previous) if isinstance(previous, list) else 0 :]:
        ctx.log(f"Suggestion: {suggestion}")
    updates: dict[str, Any] = {"round": round_, "changed": False, "suggestions": suggestions}
    result = _apply_fixes(parsed, _next_tier(review.issues))
    if isinstance(result, str):
        ctx.log(f"Round {round_}: {result}")
        return updates
    code, counts = result
    fixed = Counter(ctx.state.get("fixed") or {})
    fixed.update(counts)
    done = ", ".join(_FIX_DESCRIPTIONS[key].format(n=n) for key, n in sorted(counts.items()))
    ctx.log(f"Round {round_}: {done} (code rewritten by ast.unparse: comments and layout are not kept)")
    return {**updates, "code": code, "changed": True, "fixed": dict(fixed)}


def _stop_reason(state: Mapping[str, Any]) -> str:
    """Why the loop ended (should_improve is false by now). Out of rounds and out of fixes at once
    counts as out of fixes: more rounds would not have helped."""
    if state.get("error"):
        return "syntax error"
    if state.get("score", 0.0) >= state.get("threshold", DEFAULT_THRESHOLD):
        return "threshold met"
    round_ = state.get("round", 0)
    # Out of rounds while the last round still changed something: more might have been fixable.
    if round_ >= state.get("max_rounds", DEFAULT_MAX_ROUNDS) and (round_ == 0 or state.get("changed")):
        return "round limit"
    return "no further automatic fixes"


@node_fn("review.report", local=True)
def report(ctx: NodeContext) -> dict[str, Any]:
    """Summarise the review: final score, rounds, what was fixed, what is left and why it stopped.

    Reads `score`, `round`, `functions`, `issues`, `suggestions`, `fixed`, `error`, `threshold`,
    `max_rounds`, `changed`; writes `report`.
    """
    state = ctx.state
    issues = list(state.get("issues") or [])
    fixed = dict(state.get("fixed") or {})
    summary = {
        "final_score": state.get("score", 0.0),
        "rounds": state.get("round", 0),
        "functions": len(state.get("functions") or []),
        "remaining_issues": issues,
        "suggestions": list(state.get("suggestions") or []),
        "fixed": fixed,
        "stopped_because": _stop_reason(state),
    }
    ctx.log(
        f"Review done: score {summary['final_score']}/10 after {summary['rounds']} round(s), "
        f"{sum(fixed.values())} fix(es), {len(issues)} issue(s) left; stopped: {summary['stopped_because']}"
    )
    return {"report": summary}

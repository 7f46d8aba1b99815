"""The `demo-review` agent's node functions: a code review of Python source, with the standard `ast` only.

The graph runs `review.extract → review.analyze → (review.improve → review.analyze)* → review.report`,
looping while `should_improve(state)` (the same condition as `IMPROVE_CONDITION`, the graph's edge).

State: `code` (the Python source), `threshold` (default 8.0), `max_rounds` (default 5); the functions
add `error`, `functions`, `issues`, `score`, `complexity_score`, `round`, `changed`, `fixed`,
`suggestions` and finally `report`.

The stages: parsing within the input limits (graphs/review_parsing.py), the metrics, issues and
score (graphs/review_analysis.py) and the fixes (graphs/review_fixes.py); this module holds the node
functions. Lists in the state are cut at MAX_LISTED entries (the score still counts every issue).
"""

from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

from countersign.graphs.registry import NodeContext, node_fn
from countersign.graphs.review_analysis import Issue, quality_score, review_tree
from countersign.graphs.review_fixes import FIX_DESCRIPTIONS, apply_fixes, merge_suggestions, next_tier
from countersign.graphs.review_parsing import ParseError, parse_code

DEFAULT_THRESHOLD: Final = 8.0
DEFAULT_MAX_ROUNDS: Final = 5
# demo_review.yaml's loop guards (max_visits) leave room for this many rounds.
MAX_ROUNDS_LIMIT: Final = 20

# Output bound: a function's entry is ~300 bytes of JSON, an issue ~400.
MAX_LISTED: Final = 500

# The graph's `analyze → improve` edge; `should_improve` is the same test in Python.
IMPROVE_CONDITION: Final = (
    "not state.error and state.score < state.threshold and state.round < state.max_rounds"
    " and (state.round == 0 or state.changed)"
)


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


def _listed(items: list[Any], what: str, ctx: NodeContext) -> list[Any]:
    """The first MAX_LISTED items, saying so in the log when there were more."""
    if len(items) > MAX_LISTED:
        ctx.log(f"Listing the first {MAX_LISTED} of {len(items)} {what}")
    return items[:MAX_LISTED]


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
    parsed = parse_code(ctx.state.get("code", ""))
    if isinstance(parsed, ParseError):
        ctx.log(f"Cannot review the code: {parsed.message}")
        return {**updates, "error": parsed.message, "functions": []}
    functions = review_tree(parsed).functions
    ctx.log(f"Extracted {len(functions)} function{'' if len(functions) == 1 else 's'}")
    return {**updates, "error": None, "functions": _listed(functions, "functions", ctx)}


@node_fn("review.analyze", local=True)
def analyze(ctx: NodeContext) -> dict[str, Any]:
    """Find the issues in the current code (it changes between rounds) and score it.

    Reads `code`, `error`, `round`; writes `issues`, `score`, `complexity_score`, and `functions`
    (re-measured, so they match the current code) or `error`.
    """
    round_ = ctx.state.get("round", 0)
    parsed = parse_code(ctx.state.get("code", ""))
    if not isinstance(parsed, ParseError) and ctx.state.get("error"):
        parsed = ParseError(str(ctx.state["error"]), None)
    if isinstance(parsed, ParseError):
        issue = Issue("syntax_error", None, parsed.lineno, parsed.message)
        ctx.log(f"Quality score: 0/10, {parsed.message} (Round {round_})")
        return {"error": parsed.message, "issues": [issue.to_json()], "score": 0.0, "complexity_score": 0}
    review = review_tree(parsed)
    complexity = sum(function["complexity"] for function in review.functions)
    score = quality_score(review)
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
    parsed = parse_code(ctx.state.get("code", ""))
    if isinstance(parsed, ParseError):
        ctx.log(f"Round {round_}: nothing to improve, {parsed.message}")
        return {"round": round_, "changed": False}
    review = review_tree(parsed)
    previous = ctx.state.get("suggestions")
    suggestions = merge_suggestions(previous, review.issues)
    for suggestion in suggestions[len(previous) if isinstance(previous, list) else 0 :]:
        ctx.log(f"Suggestion: {suggestion}")
    updates: dict[str, Any] = {"round": round_, "changed": False, "suggestions": suggestions}
    result = apply_fixes(parsed, next_tier(review.issues))
    if isinstance(result, str):
        ctx.log(f"Round {round_}: {result}")
        return updates
    code, counts = result
    fixed = Counter(ctx.state.get("fixed") or {})
    fixed.update(counts)
    done = ", ".join(FIX_DESCRIPTIONS[key].format(n=n) for key, n in sorted(counts.items()))
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

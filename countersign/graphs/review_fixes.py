"""demo-review's improve stage: the safe mechanical fixes, tier by tier, and the suggestions left for
a human.

Fixes come in tiers (`FIX_TIERS`): each improve applies every fix of the first tier that still has
work to do, so the behaviour-changing fixes (`except:`, `== None`) get a round and a diff of their
own before the cosmetic docstring stubs. A tier's fixes remove all of its issues and create none of
an earlier tier, so after at most len(FIX_TIERS) changing rounds an improve changes nothing.
"""

import ast
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Final

from countersign.graphs.registry import NodeError
from countersign.graphs.review_analysis import FIX_TIERS, Issue, has_docstring, none_comparisons
from countersign.graphs.review_parsing import ParseError, parse_code

# Output bound on the suggestions kept in the state.
MAX_SUGGESTIONS: Final = 100


def _fix(node: ast.AST, codes: frozenset[str]) -> list[str]:
    """Fix `node` in place if it has issues named in `codes`; one code per issue fixed. Each fix removes
    exactly what `review_tree` reports under that code, which is what makes a second pass change nothing."""
    if "bare_except" in codes and isinstance(node, ast.ExceptHandler) and node.type is None:
        node.type = ast.Name(id="Exception", ctx=ast.Load())
        return ["bare_except"]
    if "compare_to_none" in codes and isinstance(node, ast.Compare):
        indexes = none_comparisons(node)  # one Compare may hold several: `a == None != b`
        for index in indexes:
            node.ops[index] = ast.Is() if isinstance(node.ops[index], ast.Eq) else ast.IsNot()
        return ["compare_to_none"] * len(indexes)
    if (
        "missing_docstring" in codes
        and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and not has_docstring(node)
    ):
        node.body.insert(0, ast.Expr(value=ast.Constant(value=f"TODO: describe what {node.name} does.")))
        return ["missing_docstring"]
    return []


FIX_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "bare_except": "replaced {n} bare `except:` with `except Exception:`",
    "compare_to_none": "rewrote {n} `== None`/`!= None` comparison(s) as `is None`/`is not None`",
    "missing_docstring": "added {n} docstring stub(s)",
}


def next_tier(issues: Sequence[Issue]) -> frozenset[str]:
    present = {issue.code for issue in issues}
    return next((tier for tier in FIX_TIERS if tier & present), frozenset())


def apply_fixes(tree: ast.Module, codes: frozenset[str]) -> tuple[str, Counter[str]] | str:
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
        reparsed = parse_code(code)
    except NodeError:  # docstring stubs and ast.unparse's indentation can take it past MAX_CODE_CHARS
        return "the rewritten code would be beyond the input limits; left as it is"
    if isinstance(reparsed, ParseError):  # never expected; keep the old code rather than break it
        return "the rewritten code would not parse; left as it is"
    return code, counts


def merge_suggestions(previous: object, issues: Sequence[Issue]) -> list[str]:
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

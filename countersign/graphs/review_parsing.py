"""demo-review's first stage: the code as a tree, or why it is not Python, within the input limits.

Input limits, checked before `ast.parse` (see `_input_problem`): at most MAX_CODE_CHARS characters,
brackets nested at most MAX_BRACKET_DEPTH deep, and at most MAX_DEPTH levels of nesting counting blocks,
`elif`s and operators chained in one expression. Code beyond them fails the node (`NodeError`, not
retried) instead of reaching limits of CPython's parser that are not syntax errors: MemoryError or
RecursionError, which failed the run without saying why.
"""

import ast
import functools
import io
import re
import tokenize
from dataclasses import dataclass
from typing import Final

from countersign.graphs.registry import NodeError
from countersign.models.expressions import parse
from countersign.models.graph import MAX_INPUT_BYTES

# Input limits. CPython 3.11's parser fails, with no syntax error, at about
# 3,000 nested levels (RecursionError while building the tree: a chain of `-`, `not`, `+`, `.`, calls,
# ternaries or `elif`s) or when its stack of 6,000 frames overflows (MemoryError: a few thousand
# `lambda:` or `**`, or 200 brackets, its own limit, with a few hundred operators inside: each bracket
# costs it about 26 frames). Real code is far from both: a dozen brackets, a few dozen levels.
MAX_CODE_CHARS: Final = MAX_INPUT_BYTES  # what the gateway accepts as a run's whole input
MAX_BRACKET_DEPTH: Final = 50  # ~1,300 of the parser's frames
MAX_DEPTH: Final = 1000  # a third of where the tree fails; ~2,000 frames at 2 per operator
CODE_REFUSED: Final = "CodeRefused"  # the node's failure type in Temporal


@dataclass(frozen=True)
class ParseError:
    message: str
    lineno: int | None


def parse_code(code: object) -> ast.Module | ParseError:
    """The module, or why it is not Python. Raises NodeError for code beyond the input limits."""
    if not isinstance(code, str):
        return ParseError(f"the code to review must be a string, not {type(code).__name__}", None)
    problem = _input_problem(code)
    if problem is not None:
        raise NodeError(f"code refused: {problem}", type=CODE_REFUSED)
    if not code.strip():
        return ParseError("empty input at line 1: there is no code to review", 1)
    try:
        tree = parse(code)
        assert isinstance(tree, ast.Module)
        return tree
    except SyntaxError as exc:
        where = f" at line {exc.lineno}" if exc.lineno else ""
        return ParseError(f"syntax error{where}: {exc.msg}", exc.lineno)
    except ValueError as exc:  # null bytes
        return ParseError(f"cannot parse the code: {exc}", None)
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

"""Read an approval policy from YAML, reporting every problem with the line it is on.

Pydantic locates an error by a path (`rules.1.steps.0.role`); people editing a file think in lines.
The file is composed into YAML nodes first (safe loader only: no tags that build Python objects),
so each error's path can be walked back to the node, and so the line, it came from.
"""

import re
import reprlib
from pathlib import Path

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from countersign.models.errors import CountersignError
from countersign.models.policy import FACTS_ONLY, ApprovalPolicy

DEFAULT_POLICY_FILE = Path(__file__).with_name("default_policy.yaml")

# `ApprovalPolicy._timings_in_order` is model-level, so its errors carry no path; it names the step at
# the start of its message instead (`rules[0].steps[1]: reminder_at must come before sla`).
_WHERE = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\]|\.[A-Za-z_]\w*)*): ")
_PART = re.compile(r"([A-Za-z_]\w*)|\[(\d+)\]")


class PolicyFileError(CountersignError, ValueError):
    """One line per problem, each `FILE line N: where: what`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _line(root: yaml.Node, loc: tuple[int | str, ...]) -> int:
    """The line of the deepest node along `loc`; a part that is not in the file (a missing key, a
    union member's tag such as `int`) stops the walk, leaving its nearest existing parent."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            # Compared as text: keys are scalars in the file, and `loc` keys are strings.
            found = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)]
            if not found:
                break
            node = found[-1]  # a repeated key: the safe loader keeps the last one
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return node.start_mark.line + 1


def _where(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _problem(root: yaml.Node, error: ErrorDetails) -> tuple[int, str]:
    loc = error["loc"]
    message = error["msg"].removeprefix("Value error, ")
    if not loc and (named := _WHERE.match(message)):
        loc = tuple(int(n) if n else name for name, n in _PART.findall(named.group(1)))
        message = message[named.end() :]
    value = error["input"]
    # Echo a scalar the message does not already quote (an enum's choices do not say what was written).
    if error["type"] != "missing" and isinstance(value, str | int | float) and repr(value) not in message:
        message += f" (got {reprlib.repr(value)})"
    if error["type"] == "invalid_key":  # the last part of `loc` is that key, which the file spells otherwise
        loc = loc[:-1]
        if isinstance(value, bool):
            message += "; YAML reads unquoted on/off/yes/no as booleans: quote the key"
    return _line(root, loc), (f"{_where(loc)}: {message}" if loc else message)


def load_policy(path: Path | None = None) -> ApprovalPolicy:
    """Parse and validate a policy file (the shipped default when `path` is None)."""
    if path is None:
        path = DEFAULT_POLICY_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PolicyFileError([f"{path}: cannot read the policy file: {error}"]) from None
    # The same steps as `yaml.safe_load`, keeping the node tree that the data was built from.
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        at = f" line {mark.line + 1}" if mark is not None else ""
        problem = ": ".join(str(p) for p in (error.context, error.problem) if p)
        raise PolicyFileError([f"{path}{at}: invalid YAML: {problem}"]) from None
    except yaml.reader.ReaderError as error:  # a control character: located by offset, not by mark
        line = text.count("\n", 0, error.position) + 1
        raise PolicyFileError(
            [f"{path} line {line}: invalid YAML: {error.reason} (#x{error.character:04x})"]
        ) from None
    if root is None or not isinstance(data, dict):
        line = root.start_mark.line + 1 if root is not None else 1
        found = "an empty file" if root is None else f"a {type(data).__name__}"
        raise PolicyFileError(
            [f"{path} line {line}: the policy must be a mapping (version, rules, ...), got {found}"]
        )
    try:
        # A policy loaded for new workflows routes on the action's facts only (models/policy.py).
        return ApprovalPolicy.model_validate(data, context={FACTS_ONLY: True})
    except ValidationError as error:
        # In file order, which is how someone fixing them reads; pydantic's order among the same line.
        problems = sorted((_problem(root, e) for e in error.errors()), key=lambda problem: problem[0])
        raise PolicyFileError([f"{path} line {line}: {where}" for line, where in problems]) from None

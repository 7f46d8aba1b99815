"""Declared tools' schemas and args: what a declaration must be, and how a call's args are checked.

Everything here is pure and deterministic, so the validation activity can use it and a replay would
find the same. A tenant's schema is untrusted input that runs inside the worker on every call, so
besides the metaschema it must stay small and shallow, may reference only itself (`$ref: "#/..."`),
and is always validated with an empty reference registry: no reference is ever fetched, whatever
jsonschema would otherwise do with a remote one.
"""

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from countersign.models.declared_tools import DeclaredTool
from countersign.models.facts import ActionFacts
from countersign.models.proposal import Finding

# A tool's args schema is a form, not a program: these bounds are far above any real one.
MAX_SCHEMA_BYTES = 32 * 1024
MAX_SCHEMA_DEPTH = 16
MAX_PATTERN_LENGTH = 256
# One call's findings: enough to show what is wrong, bounded for the proposal a reviewer reads.
MAX_FINDINGS = 50
_MESSAGE_LENGTH = 300
_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Keywords that name another resource; only `$ref` to a pointer into this schema is accepted.
_ELSEWHERE = ("$id", "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor", "$anchor")
# A quantified group that itself holds a quantifier, e.g. `(a+)+`: Python's `re` can take exponential
# time on it (ReDoS), and the worker would run it on every call. A heuristic, not a proof.
_NESTED_QUANTIFIER = re.compile(r"\([^()]*[+*}][^()]*\)\s*[+*{]")


def _walk(node: Any, path: str = "$") -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) of every object member in the schema, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


def _depth(node: Any) -> int:
    if isinstance(node, dict):
        return 1 + max((_depth(v) for v in node.values()), default=0)
    if isinstance(node, list):
        return 1 + max((_depth(v) for v in node), default=0)
    return 0


def schema_problems(schema: dict[str, Any]) -> list[str]:
    """Why `schema` cannot be a declared tool's `args_schema` (empty when it can). Checked in order,
    cheapest first; the first kind of problem found is reported, every instance of it."""
    size = len(json.dumps(schema, ensure_ascii=False).encode("utf-8"))
    if size > MAX_SCHEMA_BYTES:
        return [f"args_schema: {size} bytes of JSON, more than the {MAX_SCHEMA_BYTES} accepted"]
    depth = _depth(schema)
    if depth > MAX_SCHEMA_DEPTH:
        return [f"args_schema: nested {depth} levels deep, more than the {MAX_SCHEMA_DEPTH} accepted"]
    if schema.get("$schema", _DIALECT) != _DIALECT:
        return [f"args_schema.$schema: only {_DIALECT} (draft 2020-12) is accepted"]
    problems = _reference_problems(schema)
    if problems:
        return problems
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        return [f"args_schema{error.json_path[1:]}: {_short(error.message)}"]
    if schema.get("type") != "object":
        return ['args_schema.type: must be "object": a tool\'s args are a JSON object']
    problems = [
        f"args_schema{where}: {why}"
        for where, pattern in _patterns(schema)
        if (why := _pattern_problem(pattern))
    ]
    return problems or _unresolved(schema)


def _patterns(schema: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, regex) of every regular expression args are matched with: `pattern`s and the keys of
    `patternProperties`."""
    for where, key, value in _walk(schema):
        if key == "pattern" and isinstance(value, str):
            yield f"{where[1:]}.pattern", value
        elif key == "patternProperties" and isinstance(value, dict):
            yield from ((f"{where[1:]}.patternProperties[{name!r}]", name) for name in value)


def _reference_problems(schema: dict[str, Any]) -> list[str]:
    problems = []
    for where, key, value in _walk(schema):
        if key in _ELSEWHERE and isinstance(value, str):
            problems.append(f"args_schema{where[1:]}.{key}: not accepted; use $ref to #/$defs/... instead")
        elif key == "$ref" and isinstance(value, str) and not (value == "#" or value.startswith("#/")):
            # Remote (https://...), relative (other.json) or an anchor: anything that is not a pointer
            # into this very schema would need a fetch or a resource we do not hold.
            problems.append(
                f"args_schema{where[1:]}.$ref: {_short(value)!r} is not a reference into this schema "
                '("#/$defs/..."); remote and relative references are never fetched'
            )
    return problems


def _unresolved(schema: dict[str, Any]) -> list[str]:
    """Local references that point at nothing: refused now rather than failing every call later."""
    resource: Resource[Any] = Resource.from_contents(schema, default_specification=DRAFT202012)
    resolver = Registry().resolver_with_root(resource)
    problems = []
    for where, key, value in _walk(schema):
        if key == "$ref" and isinstance(value, str):
            try:
                resolver.lookup(value)
            except Unresolvable:
                problems.append(f"args_schema{where[1:]}.$ref: {_short(value)!r} points at nothing")
    return problems


def _pattern_problem(pattern: str) -> str | None:
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"longer than {MAX_PATTERN_LENGTH} characters"
    if _NESTED_QUANTIFIER.search(pattern):
        return "a repeated group that itself repeats (like (a+)+) can take exponential time to match"
    return None


def _short(text: str) -> str:
    return text if len(text) <= _MESSAGE_LENGTH else text[: _MESSAGE_LENGTH - 1] + "…"


def _field(error: ValidationError) -> str:
    """The JSON path of what is wrong. A missing property is reported by jsonschema at its parent
    object; the path names the property itself, which is what the caller has to add."""
    path = error.json_path
    required = error.validator_value
    if error.validator == "required" and isinstance(error.instance, dict) and isinstance(required, list):
        for name in required:
            if name not in error.instance and error.message.startswith(repr(name)):
                return f"{path}.{name}"
    return path


def check_declared_args(tool: DeclaredTool, args: dict[str, Any]) -> list[Finding]:
    """Why `args` do not fit `tool`'s schema (empty when they do): one finding per error, `field`
    holding its JSON path (`$.items[0].qty`), ordered by path, so the same args always read the same."""
    validator = Draft202012Validator(tool.args_schema, registry=Registry())
    try:
        errors = sorted((_field(e), _short(e.message)) for e in validator.iter_errors(args))
    except Unresolvable as error:
        # Refused at declaration; kept here so that a schema stored by other means cannot fetch either.
        return [Finding(code="invalid_schema", message=f"{tool.name}: {error}", field="tool")]
    findings = [
        Finding(code="invalid_args", message=f"{field}: {message}", field=field)
        for field, message in errors[:MAX_FINDINGS]
    ]
    if len(errors) > MAX_FINDINGS:
        findings.append(
            Finding(code="invalid_args", message=f"and {len(errors) - MAX_FINDINGS} more errors", field="$")
        )
    return findings


def declared_facts(tool: DeclaredTool, args: dict[str, Any]) -> ActionFacts:
    """The facts a policy routes on (with the tool, its side effect and risk, which the workflow adds):
    a top-level numeric `amount` when the args hold one, else nothing. A declared tool implies no
    request type, so it is GENERAL. An amount that is no amount (negative, not finite, a boolean,
    a string) states nothing rather than a fact the policy would compare wrongly."""
    amount = args.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        return ActionFacts()
    try:
        value = float(amount)
    except OverflowError:  # an integer past what a float holds
        return ActionFacts()
    if not math.isfinite(value) or value < 0:
        return ActionFacts()
    return ActionFacts(amount=value)

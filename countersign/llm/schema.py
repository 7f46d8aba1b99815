"""The JSON schema a model must answer with, generated from the tool registry.

One object: the request type, the extracted fields, a summary, a rationale, a confidence and exactly one
`action`, a union of `{tool, args}` objects discriminated by the tool's name. It is written for OpenAI's
strict structured outputs (every object closed, every property required, optional values nullable, no
`$ref`) and is also what Anthropic's forced tool call takes as its input schema.

Keywords that strict mode or smaller OpenAI-compatible servers may refuse (lengths, patterns, formats,
bounds) are moved into the description, so the model still reads them; pydantic enforces them when the
answer is parsed, and a violation becomes repair feedback.
"""

import copy
from typing import Any

from countersign.models.enums import RequestType
from countersign.models.proposal import RequestFields
from countersign.models.tools import ToolSpec

SCHEMA_NAME = "countersign_plan"
SCHEMA_DESCRIPTION = "Exactly one proposed action for a business request, for human approval."

_DROPPED = {"title", "default", "examples", "discriminator"}
_DESCRIBED = {
    "minLength": "at least {} characters",
    "maxLength": "at most {} characters",
    "pattern": "matches /{}/",
    "format": "format {}",
    "minimum": ">= {}",
    "maximum": "<= {}",
    "exclusiveMinimum": "> {}",
    "exclusiveMaximum": "< {}",
    "minItems": "at least {} items",
    "maxItems": "at most {} items",
}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline local `$ref`s: some providers do not follow them, and a union must be visible in place."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = copy.deepcopy(defs[ref.removeprefix("#/$defs/")])
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return _resolve(merged, defs)
        return {k: _resolve(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    return node


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key in _DESCRIBED:
            notes.append(_DESCRIBED[key].format(value))
        elif key == "oneOf":  # strict mode knows anyOf only; the branches are disjoint anyway
            out["anyOf"] = _strict(value)
        elif key == "properties":
            out["properties"] = {name: _strict(sub) for name, sub in value.items()}
        else:
            out[key] = _strict(value)
    if "properties" in out:
        out["type"] = "object"
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    if notes:
        out["description"] = "; ".join(filter(None, [out.get("description"), *notes]))
    return out


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A strict-mode version of a pydantic JSON schema: refs inlined, objects closed, all required."""
    resolved = _resolve(schema, schema.get("$defs", {}))
    result: dict[str, Any] = _strict(resolved)
    return result


def action_schema(spec: ToolSpec) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"{spec.name}: {spec.description} Side effect: {spec.side_effect}.",
        "properties": {
            "tool": {"type": "string", "enum": [spec.name]},
            "args": strict_schema(spec.args_schema),
        },
        "required": ["tool", "args"],
        "additionalProperties": False,
    }


def plan_schema(tools: list[ToolSpec]) -> dict[str, Any]:
    """The answer schema for a planner offered `tools` (and only those)."""
    if not tools:
        raise ValueError("a plan schema needs at least one tool")
    properties: dict[str, Any] = {
        "request_type": {
            "type": "string",
            "enum": [t.value for t in RequestType],
            "description": "PROCUREMENT buys goods or services; LEAVE is time off; SUPPORT is something "
            "broken or a customer problem; GENERAL is anything else.",
        },
        "fields": strict_schema(RequestFields.model_json_schema()),
        "summary": {"type": "string", "description": "One or two sentences for the approvers."},
        "rationale": {
            "type": "string",
            "description": "Why this action: what the text says, what is missing, anything suspicious.",
        },
        "action": {
            "anyOf": [action_schema(spec) for spec in tools],
            "description": "Exactly one action, using one of the listed tools.",
        },
        "confidence": {
            "type": "number",
            "description": "0 to 1: how sure you are that this action is what the requester wants.",
        },
    }
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }

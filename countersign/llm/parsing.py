"""Reading a model's answer: JSON, then the plan's shape, then the tool and its args against the registry.

Every problem becomes a `Finding` whose message is fed back to the model on a repair call, so messages
say exactly what is wrong and where. Nothing a model writes is trusted before it passes all three.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from countersign.models.enums import RequestType
from countersign.models.proposal import Finding, RequestFields

# Checks a tool's args against the registry; returns why they do not fit (empty when they do).
ArgsChecker = Callable[[str, dict[str, Any]], list[Finding]]

_FENCE = re.compile(r"^\s*```(?:json)?\s*(?P<body>.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)


class ProposedAction(BaseModel):
    tool: str = Field(min_length=1, max_length=100)
    args: dict[str, Any]


class PlannerOutput(BaseModel):
    """The answer's envelope; `action.args` is checked separately against the chosen tool's model."""

    # Extra keys are ignored, never obeyed: a model told by a request to add `"approved": true`
    # changes nothing, because nothing reads such a key.
    model_config = ConfigDict(extra="ignore")

    request_type: RequestType
    fields: RequestFields
    summary: str = Field(min_length=1, max_length=600)
    rationale: str = Field(min_length=1, max_length=2000)
    action: ProposedAction
    confidence: float = Field(ge=0, le=1)


@dataclass
class ParseResult:
    output: PlannerOutput | None
    findings: list[Finding] = field(default_factory=list)
    # The decoded JSON object, kept to salvage a best-effort reading when repairs run out.
    raw: dict[str, Any] | None = None


def _shape_findings(error: ValidationError) -> list[Finding]:
    findings = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"]) or "answer"
        findings.append(Finding(code="invalid_output", message=f"{where}: {e['msg']}", field=where))
    return findings


def decode(text: str) -> tuple[dict[str, Any] | None, Finding | None]:
    """The JSON object in `text`, tolerating a Markdown code fence around it."""
    fenced = _FENCE.match(text)
    body = fenced.group("body") if fenced else text.strip()
    if not body:
        return None, Finding(code="malformed_json", message="the answer was empty; expected one JSON object")
    try:
        value = json.loads(body)
    except json.JSONDecodeError as error:
        message = f"the answer is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        return None, Finding(code="malformed_json", message=message)
    if not isinstance(value, dict):
        return None, Finding(
            code="malformed_json", message=f"expected one JSON object, got a {type(value).__name__}"
        )
    return value, None


def parse_answer(text: str, offered: set[str], check_args: ArgsChecker) -> ParseResult:
    raw, problem = decode(text)
    if raw is None:
        return ParseResult(output=None, findings=[problem] if problem else [])
    try:
        output = PlannerOutput.model_validate(raw)
    except ValidationError as error:
        return ParseResult(output=None, findings=_shape_findings(error), raw=raw)
    tool = output.action.tool
    if tool not in offered:
        unknown = Finding(
            code="unknown_tool",
            message=f"tool {tool!r} is not one of the offered tools: {', '.join(sorted(offered))}",
            field="action.tool",
        )
        return ParseResult(output=None, findings=[unknown], raw=raw)
    # The registry names fields relative to the args; the model needs the path in its own answer.
    findings = [
        Finding(
            code=f.code,
            message=f"action.args.{f.message}" if f.field else f"action.args: {f.message}",
            field=f"action.args.{f.field}" if f.field else "action.args",
        )
        for f in check_args(tool, output.action.args)
    ]
    return ParseResult(output=None if findings else output, findings=findings, raw=raw)


def salvage_fields(raw: dict[str, Any] | None) -> RequestFields:
    """The extracted fields that do validate, one by one; the rest are left unknown."""
    given = raw.get("fields") if raw else None
    if not isinstance(given, dict):
        return RequestFields()
    kept: dict[str, Any] = {}
    for name in RequestFields.model_fields:
        if name in given:
            try:
                kept[name] = getattr(RequestFields.model_validate({name: given[name]}), name)
            except ValidationError:
                continue
    return RequestFields(**kept)


def salvage_type(raw: dict[str, Any] | None) -> RequestType:
    value = raw.get("request_type") if raw else None
    try:
        return RequestType(str(value))
    except ValueError:
        return RequestType.GENERAL


def salvage_action(raw: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    action = raw.get("action") if raw else None
    if not isinstance(action, dict):
        return "", {}
    tool = action.get("tool")
    args = action.get("args")
    return (str(tool)[:100] if tool is not None else ""), (args if isinstance(args, dict) else {})

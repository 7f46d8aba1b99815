"""Offline deterministic planner: keywords and regular expressions, no network, no randomness.

It makes the whole system runnable without a model provider (tests, demos, air-gapped installs) and
serves as a baseline a model-backed planner must beat. Every choice it makes is written into the
plan's rationale, so an approver can see exactly which words led to the proposal.

The parts: field extraction (llm/rules_extraction.py), classification (llm/rules_classification.py)
and the proposed action's arguments and summary (llm/rules_actions.py); this module weighs the
evidence and makes the plan.
"""

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from countersign.llm.rules_actions import (
    FALLBACK_TOOL,
    KEY_FIELDS,
    PREFERRED_TOOL,
    build_args,
    summary_of,
    valid_email,
)
from countersign.llm.rules_classification import classify
from countersign.llm.rules_context import from_directory
from countersign.llm.rules_extraction import extract_fields, severity_from_wording
from countersign.models.directory import DirectoryLookups
from countersign.models.enums import RequestType
from countersign.models.proposal import Plan, PlanInput, RequestFields
from countersign.models.tools import ToolSpec


@dataclass
class _Evidence:
    """Confidence parts and notes gathered while planning, so the rationale can show its working."""

    parts: list[tuple[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, label: str, delta: float) -> None:
        self.parts.append((label, delta))

    def confidence(self) -> float:
        return round(min(0.95, max(0.05, 0.35 + sum(d for _, d in self.parts))), 2)


def _apply_hints(fields: RequestFields, hints: dict[str, Any], ev: _Evidence) -> RequestFields:
    """The requester's explicit field values win; unknown keys and unusable values are skipped."""
    updates: dict[str, Any] = {}
    for key, value in sorted(hints.items()):
        if key not in RequestFields.model_fields:
            ev.notes.append(f"ignored unknown field hint {key!r}")
            continue
        if key == "currency" and isinstance(value, str):
            value = value.upper()
        try:
            updates[key] = getattr(RequestFields.model_validate({key: value}), key)
        except ValidationError:
            ev.notes.append(f"ignored invalid field hint {key}={value!r}")
    if updates:
        ev.notes.append(f"field hints applied: {', '.join(updates)}")
    return fields.model_copy(update=updates)


def _read_feedback(feedback: list[str], fields: RequestFields, ev: _Evidence) -> bool:
    """Lower confidence for a rejected previous attempt; return True when the tool was unknown."""
    if not feedback:
        return False
    ev.add("previous attempt was flagged", -0.10)
    ev.notes.append(f"previous attempt flagged: {'; '.join(feedback[:3])[:300]}")
    named = [n for n in RequestFields.model_fields if any(re.search(rf"\b{n}\b", f) for f in feedback)]
    unfillable = [n for n in named if getattr(fields, n) is None]
    if unfillable:
        ev.add("feedback names fields the text does not give", -0.15)
        ev.notes.append(f"cannot fill {', '.join(unfillable)} from the request text")
    return any(re.search(r"unknown[_ ]tool|is not one of", f, re.I) for f in feedback)


def _decide_type(request: PlanInput, fields: RequestFields, ev: _Evidence) -> RequestType:
    """Keywords propose a type; the requester's explicit type hint, when given, always wins."""
    rtype, hits = classify(request.request.described(), fields)
    hint = request.request.type
    if hint is not None:
        # A hint is a claim, not evidence: it sets the type but earns confidence only as far as the
        # words of the request bear it out (it once added 0.30 on its own, whatever the text said).
        if hint == rtype and hits:
            ev.add(f"keywords: {', '.join(hits)}", min(0.25, 0.15 + 0.05 * (len(hits) - 1)))
        else:
            ev.add(f"nothing in the text supports the hinted type {hint}", -0.10)
        seen = f" (keywords suggested {rtype}: {', '.join(hits) or 'none'})" if hint != rtype else ""
        ev.notes.append(f"type {hint} given as a hint{seen}")
        return hint
    if hits:
        ev.add(f"keywords: {', '.join(hits)}", min(0.25, 0.15 + 0.05 * (len(hits) - 1)))
        ev.notes.append(f"type {rtype} from keywords: {', '.join(hits)}")
    else:
        ev.add("no type keywords, GENERAL fallback", -0.10)
        ev.notes.append("no type keywords matched, so GENERAL")
    return rtype


def _infer_severity(text: str, fields: RequestFields, ev: _Evidence) -> RequestFields:
    """A support request without an explicit level gets one from its wording, noted as inferred."""
    level = severity_from_wording(text)
    if fields.severity is not None or level is None:
        return fields
    ev.notes.append(f"severity {level} inferred from wording")
    return fields.model_copy(update={"severity": level})


def _preferred_tool(rtype: RequestType, fields: RequestFields, ev: _Evidence) -> str:
    if rtype is not RequestType.GENERAL:
        return PREFERRED_TOOL[rtype]
    if valid_email(fields.email):
        return "send_email"
    if fields.email:
        ev.notes.append(f"{fields.email!r} is not a deliverable address, so no email")
    return FALLBACK_TOOL


def _score_fields(preferred: str, fields: RequestFields, inferred: set[str], ev: _Evidence) -> None:
    for name, bonus, penalty in KEY_FIELDS.get(preferred, []):
        if getattr(fields, name) is not None:
            ev.add(f"{name} found", bonus / 2 if name in inferred else bonus)
        elif penalty:
            ev.add(f"{name} missing", -penalty)


def _choose_tool(preferred: str, tools: list[ToolSpec], unknown_tool: bool, ev: _Evidence) -> str:
    """The preferred tool if offered; else create_task; else whatever is offered first."""
    offered = [t.name for t in tools]
    tool = FALLBACK_TOOL if unknown_tool else preferred
    if tool not in offered:
        tool = FALLBACK_TOOL if FALLBACK_TOOL in offered else offered[0]
    if tool != preferred:
        why = "feedback called the tool unknown" if unknown_tool else f"{preferred} is not offered"
        ev.add(f"{preferred} not used", -0.15)
        ev.notes.append(f"{why}, so proposing {tool}")
    return tool


class RulesPlanner:
    """Keyword/regex planner. Confidence = 0.35 plus evidence, clamped to [0.05, 0.95]:

    - type: +0.15 for the first keyword hit and +0.05 for each further hit (at most +0.25); -0.10 when
      nothing matched and GENERAL is the fallback. An explicit type hint sets the type but adds
      nothing the keywords do not bear out.
    - key fields of the preferred action (`KEY_FIELDS`): e.g. amount +0.20 when found, -0.20
      when missing; a severity inferred from words like "outage" earns half its bonus.
    - -0.15 when the preferred tool is not used, -0.20 more when no arguments can be built.
    - -0.10 when the previous attempt was flagged, -0.15 more when it names fields still missing.
    """

    name: str = "rules"

    async def plan(
        self, request: PlanInput, tools: list[ToolSpec], directory: DirectoryLookups | None = None
    ) -> Plan:
        if not tools:
            raise ValueError("the rules planner needs at least one tool to propose")
        text, requester = request.request.described(), request.requester_name
        ev = _Evidence()
        fields = extract_fields(text, requester)
        fields = _apply_hints(fields, dict(request.request.fields or {}), ev)
        lookups = await directory.mentioned(text) if directory is not None else []
        fields, notes = from_directory(fields, lookups, requester, text)
        ev.notes.extend(notes)
        rtype = _decide_type(request, fields, ev)
        inferred: set[str] = set()
        if rtype is RequestType.SUPPORT:
            before, fields = fields.severity, _infer_severity(text, fields, ev)
            inferred = {"severity"} if before != fields.severity else set()

        unknown_tool = _read_feedback(request.feedback, fields, ev)
        preferred = _preferred_tool(rtype, fields, ev)
        _score_fields(preferred, fields, inferred, ev)
        tool = _choose_tool(preferred, tools, unknown_tool, ev)
        args = build_args(tool, fields, text, requester)
        if args is None:
            args = {}
            ev.add(f"no arguments known for {tool}", -0.20)
            ev.notes.append(f"the rules planner cannot fill arguments for {tool}")

        confidence = ev.confidence()
        found = ", ".join(f"{k}={v}" for k, v in fields.model_dump(exclude_none=True).items())
        missing = [n for n, _, _ in KEY_FIELDS.get(preferred, []) if getattr(fields, n) is None]
        score = ", ".join(f"{label} {delta:+.2f}" for label, delta in ev.parts)
        rationale = (
            f"{'; '.join(ev.notes)}. Action {tool} for a {rtype} request. "
            f"Found: {found or 'nothing'}. Missing: {', '.join(missing) or 'nothing'}. "
            f"Confidence {confidence:.2f} = 0.35 base, {score}."
        )
        return Plan(
            request_type=rtype,
            fields=fields,
            summary=summary_of(rtype, fields, args, tool, text, requester),
            tool=tool,
            args=args,
            confidence=confidence,
            rationale=rationale[:2000],
            planner=self.name,
            lookups=lookups,
        )

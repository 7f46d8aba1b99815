"""A `Planner` over any `ChatModel`: prompt, strict schema, parse, and a bounded number of repairs.

When the answer does not parse or validate, the model is called again with the findings as feedback,
at most `max_repairs` times. If it still fails, the plan returned is a best-effort reading of the last
answer carrying `planning_findings`: validation refuses it, so it goes to reviewers for triage and can
never be executed as proposed.
"""

import logging
import time
from dataclasses import replace

from countersign.llm.base import ChatModel, ChatPrompt, Completion, Repair
from countersign.llm.parsing import (
    ArgsChecker,
    ParseResult,
    parse_answer,
    salvage_action,
    salvage_fields,
    salvage_type,
)
from countersign.llm.prompt import PROMPT_VERSION, repair_message, system_prompt, user_message
from countersign.llm.schema import SCHEMA_DESCRIPTION, SCHEMA_NAME, plan_schema
from countersign.models.proposal import Finding, Plan, PlanInput, PlanProvenance
from countersign.models.tools import ToolSpec

log = logging.getLogger(__name__)


class ModelPlanner:
    def __init__(self, chat: ChatModel, *, check_args: ArgsChecker, max_repairs: int = 2, name: str) -> None:
        if max_repairs < 0:
            raise ValueError("max_repairs cannot be negative")
        self.name = name
        self._chat = chat
        self._check_args = check_args
        self._max_repairs = max_repairs

    async def plan(self, request: PlanInput, tools: list[ToolSpec]) -> Plan:
        prompt = ChatPrompt(
            system=system_prompt(tools),
            user=user_message(request),
            schema=plan_schema(tools),
            schema_name=SCHEMA_NAME,
            schema_description=SCHEMA_DESCRIPTION,
        )
        offered = {t.name for t in tools}
        started = time.monotonic()
        answers: list[Completion] = []
        repairs: list[Repair] = []
        problems: list[str] = []
        while True:
            answer = await self._chat.complete(replace(prompt, repairs=list(repairs)))
            answers.append(answer)
            parsed = self._parse(answer, offered)
            if parsed.output is not None or len(repairs) >= self._max_repairs:
                break
            feedback = repair_message(parsed.findings)
            log.warning(
                "%s: answer %d did not validate, repairing: %s",
                self.name,
                len(answers),
                "; ".join(f.message for f in parsed.findings)[:500],
            )
            repairs.append(Repair(previous=answer, feedback=feedback))
            problems.append("; ".join(f.message for f in parsed.findings))
        provenance = PlanProvenance(
            provider=self.name,
            model=answers[-1].model or self._chat.model,
            prompt_version=PROMPT_VERSION,
            input_tokens=sum(a.input_tokens for a in answers),
            output_tokens=sum(a.output_tokens for a in answers),
            repairs=len(repairs),
            latency_ms=round((time.monotonic() - started) * 1000),
            repair_feedback=problems,
        )
        if parsed.output is None:
            return self._triage(parsed, provenance)
        out = parsed.output
        return Plan(
            request_type=out.request_type,
            fields=out.fields,
            summary=out.summary,
            tool=out.action.tool,
            args=out.action.args,
            confidence=out.confidence,
            rationale=out.rationale,
            planner=self.name,
            provenance=provenance,
        )

    def _parse(self, answer: Completion, offered: set[str]) -> ParseResult:
        if answer.refused:
            refusal = Finding(code="refused", message=f"the model refused: {answer.text[:300]}")
            return ParseResult(output=None, findings=[refusal])
        parsed = parse_answer(answer.text, offered, self._check_args)
        if parsed.output is None and answer.stop_reason in ("length", "max_tokens"):
            cut = Finding(code="truncated", message="the answer was cut off at the output token limit")
            parsed.findings.insert(0, cut)
        return parsed

    def _triage(self, parsed: ParseResult, provenance: PlanProvenance) -> Plan:
        """A best-effort reading of the last answer, blocked for execution by its findings."""
        tool, args = salvage_action(parsed.raw)
        problems = "; ".join(f.message for f in parsed.findings)
        attempts = provenance.repairs + 1
        log.warning(
            "%s: no valid plan after %d answer(s), sending to triage: %s", self.name, attempts, problems
        )
        summary = parsed.raw.get("summary") if parsed.raw else None
        return Plan(
            request_type=salvage_type(parsed.raw),
            fields=salvage_fields(parsed.raw),
            summary=(
                summary[:600]
                if isinstance(summary, str) and summary.strip()
                else "Needs triage: the planner did not produce a valid action for this request."
            ),
            tool=tool,
            args=args,
            confidence=0.0,
            rationale=f"No valid plan after {attempts} answer(s) from {self.name}: {problems}"[:2000],
            planner=self.name,
            provenance=provenance,
            planning_findings=parsed.findings,
        )

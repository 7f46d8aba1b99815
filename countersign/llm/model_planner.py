"""A `Planner` over any `ChatModel`: prompt, strict schema, parse, and a bounded number of repairs.

When the answer does not parse or validate, the model is called again with the findings as feedback,
at most `max_repairs` times. If it still fails, the plan returned is a best-effort reading of the last
answer carrying `planning_findings`: validation refuses it, so it goes to reviewers for triage and can
never be executed as proposed.

With a directory, the records the request mentions go into the prompt, and a model whose adapter can
converse (`LookupChat`) may call read-only lookups before each proposal: at most `max_lookups` calls in
all, repairs included, after which no lookups are offered, so every conversation ends in a proposal.
Every lookup, the mentions' included, is kept on the plan with what it returned.
"""

import logging
import time
from dataclasses import dataclass, field, replace

from countersign.llm.base import ChatModel, ChatPrompt, Completion, Repair
from countersign.llm.lookup_tools import (
    LOOKUP_TOOLS,
    Exchange,
    LookupChat,
    LookupTurn,
    ToolResult,
    budget_spent,
    lookup_json,
    run_lookup,
)
from countersign.llm.parsing import (
    ArgsChecker,
    ParseResult,
    parse_answer,
    salvage_action,
    salvage_fields,
    salvage_type,
)
from countersign.llm.prompt import (
    DIRECTORY_PROMPT_VERSION,
    PROMPT_VERSION,
    repair_message,
    system_prompt,
    user_message,
)
from countersign.llm.schema import SCHEMA_DESCRIPTION, SCHEMA_NAME, plan_schema
from countersign.models.directory import (
    MAX_MENTIONS,
    MENTION_COUNTERPARTY,
    DirectoryLookups,
    Lookup,
    unreadable,
)
from countersign.models.proposal import Finding, Plan, PlanInput, PlanProvenance
from countersign.models.tools import ToolSpec

log = logging.getLogger(__name__)

# With MAX_MENTIONS, keeps a plan's lookups within what `Plan.lookups` holds (50).
MAX_LOOKUPS = 20


@dataclass
class _Lookups:
    """One planning attempt's conversation with lookups: its exchanges, what was looked up, every
    call's completion (for the token counts) and how many lookups are left."""

    chat: LookupChat
    directory: DirectoryLookups
    left: int
    # time.monotonic() after which no call offers lookups: the proposal and its repairs need the rest.
    until: float
    history: list[Exchange] = field(default_factory=list)
    found: list[Lookup] = field(default_factory=list)
    calls: list[Completion] = field(default_factory=list)

    async def answer(self, prompt: ChatPrompt) -> Completion:
        """The model's next proposal, after whatever lookups it makes first (while any are left)."""
        while True:
            offered = LOOKUP_TOOLS if self.left > 0 and time.monotonic() <= self.until else ()
            reply = await self.chat.converse(prompt, self.history, offered)
            self.calls.append(reply.completion)
            if not reply.calls or not offered:
                return reply.completion
            results: list[ToolResult] = []
            for call in reply.calls:
                if self.left <= 0:
                    # Every call must be answered; one past the budget is refused, not run.
                    results.append(budget_spent(call))
                    continue
                self.left -= 1
                found = await run_lookup(self.directory, call.name, call.arguments)
                self.found.append(found)
                results.append(ToolResult(call.id, lookup_json(found), is_error=found.error is not None))
            self.history.append(LookupTurn(reply.calls, results, reply.completion.text))


async def _mentioned(directory: DirectoryLookups, text: str) -> list[Lookup]:
    """The records `text` mentions. A directory should report a failure in its lookups; one that
    raises is recorded the same way, and planning goes on without it."""
    try:
        return (await directory.mentioned(text))[:MAX_MENTIONS]
    except Exception as error:
        log.warning("directory mentions failed: %s", type(error).__name__)
        return [Lookup(tool=MENTION_COUNTERPARTY, query=text[:200], error=unreadable(error))]


class ModelPlanner:
    def __init__(
        self,
        chat: ChatModel,
        *,
        check_args: ArgsChecker,
        max_repairs: int = 2,
        max_lookups: int = 5,
        lookups_within_seconds: float | None = None,
        name: str,
    ) -> None:
        if max_repairs < 0:
            raise ValueError("max_repairs cannot be negative")
        if not 0 <= max_lookups <= MAX_LOOKUPS:
            raise ValueError(f"max_lookups must be between 0 and {MAX_LOOKUPS}")
        self.name = name
        self._chat = chat
        self._check_args = check_args
        self._max_repairs = max_repairs
        self._max_lookups = max_lookups
        # Calls that start later than this into an attempt offer no lookups (None: any call may).
        self._lookups_within = lookups_within_seconds

    async def plan(
        self, request: PlanInput, tools: list[ToolSpec], directory: DirectoryLookups | None = None
    ) -> Plan:
        started = time.monotonic()
        mentions: list[Lookup] | None = None
        session: _Lookups | None = None
        if directory is not None:
            mentions = await _mentioned(directory, request.request.described())
            # A chat that cannot converse (a test double) plans from the mentions alone.
            if isinstance(self._chat, LookupChat) and self._max_lookups > 0:
                until = started + self._lookups_within if self._lookups_within is not None else float("inf")
                session = _Lookups(self._chat, directory, self._max_lookups, until)
        prompt = ChatPrompt(
            system=system_prompt(
                tools, directory=directory is not None, lookups=self._max_lookups if session else 0
            ),
            user=user_message(request, mentions),
            schema=plan_schema(tools),
            schema_name=SCHEMA_NAME,
            schema_description=SCHEMA_DESCRIPTION,
        )
        offered = {t.name for t in tools}
        answers: list[Completion] = []
        repairs: list[Repair] = []
        problems: list[str] = []
        while True:
            if session is not None:
                answer = await session.answer(prompt)
            else:
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
            if session is not None:
                session.history.append(repairs[-1])
            problems.append("; ".join(f.message for f in parsed.findings))
        calls = session.calls if session is not None else answers
        lookups = [*(mentions or []), *(session.found if session is not None else [])]
        provenance = PlanProvenance(
            provider=self.name,
            model=answers[-1].model or self._chat.model,
            prompt_version=PROMPT_VERSION if directory is None else DIRECTORY_PROMPT_VERSION,
            input_tokens=sum(c.input_tokens for c in calls),
            output_tokens=sum(c.output_tokens for c in calls),
            repairs=len(repairs),
            latency_ms=round((time.monotonic() - started) * 1000),
            repair_feedback=problems,
        )
        if parsed.output is None:
            return self._triage(parsed, provenance, lookups)
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
            lookups=lookups,
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

    def _triage(self, parsed: ParseResult, provenance: PlanProvenance, lookups: list[Lookup]) -> Plan:
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
            lookups=lookups,
        )

"""`countersign eval`: run a labelled set of requests through planners and measure what they get right.

A planner is judged on three things a reviewer would otherwise have to correct by hand: the request
type, the facts it extracted (`RequestFields`) and the tool it proposes.

The parts: the labelled set (llm/eval_cases.py), scoring (llm/eval_scoring.py) and the report
(llm/eval_report.py); this module runs the planners over the cases.
"""

import asyncio
import time
from collections.abc import Sequence

from countersign.directory.lookups import RecordSource, TenantDirectory
from countersign.llm.base import Planner
from countersign.llm.eval_cases import EvalCase
from countersign.llm.eval_scoring import Outcome, ProviderReport, score
from countersign.llm.factory import LLMOptions
from countersign.llm.spec import ProviderSpec, SpecError, default_chain, parse_chain
from countersign.models.proposal import PlanInput
from countersign.models.requests import SubmitRequest
from countersign.models.tools import ToolSpec

DEFAULT_CONCURRENCY = 4
# Who submits every case: a name no case mentions, so it is never mistaken for a counterparty.
REQUESTER = "Eval Requester"
EVAL_TENANT = "eval"


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _run_case(
    planner: Planner,
    case: EvalCase,
    tools: list[ToolSpec],
    limit_seconds: float | None,
    directory: RecordSource | None,
) -> Outcome:
    request = PlanInput(request=SubmitRequest(text=case.text), requester_name=REQUESTER, tenant=EVAL_TENANT)
    lookups = TenantDirectory(directory, EVAL_TENANT) if directory is not None else None
    scope = asyncio.timeout(limit_seconds)
    start = time.perf_counter()
    try:
        async with scope:
            plan = await planner.plan(request, tools, lookups)
    # One failing case must not end the run: it is counted wrong and reported by id.
    except Exception as exc:
        # Our own limit is told apart from a TimeoutError the planner raised itself.
        error = f"TimeoutError: no plan within {limit_seconds:g}s" if scope.expired() else _describe(exc)
        return Outcome(case, None, error, (time.perf_counter() - start) * 1000)
    return Outcome(case, plan, None, (time.perf_counter() - start) * 1000)


async def run_planner(
    planner: Planner,
    cases: Sequence[EvalCase],
    tools: list[ToolSpec],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    limit_seconds: float | None = None,
    directory: RecordSource | None = None,
) -> list[Outcome]:
    """Plan every case, at most `concurrency` at once (provider rate limits), in case order.

    `limit_seconds` bounds each case, so a hung provider costs one error, not the whole run. With a
    `directory` (the demo directory the labels of `directory` cases assume) planners may look it up."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    gate = asyncio.Semaphore(concurrency)

    async def one(case: EvalCase) -> Outcome:
        async with gate:
            return await _run_case(planner, case, tools, limit_seconds, directory)

    return list(await asyncio.gather(*(one(c) for c in cases)))


async def evaluate(
    planner: Planner,
    cases: Sequence[EvalCase],
    tools: list[ToolSpec],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    limit_seconds: float | None = None,
    label: str | None = None,
    directory: RecordSource | None = None,
) -> ProviderReport:
    """Run and score one planner; `label` names it in the report (default: the planner's name)."""
    outcomes = await run_planner(
        planner, cases, tools, concurrency=concurrency, limit_seconds=limit_seconds, directory=directory
    )
    return score(label or planner.name, outcomes)


# --- providers --------------------------------------------------------------------------------


def _single(value: str) -> ProviderSpec:
    chain = parse_chain(value)
    if len(chain) != 1:
        raise SpecError(f"{value!r}: one provider per --provider; repeat the option to compare several")
    return chain[0]


def provider_specs(values: Sequence[str], configured: str | None) -> list[ProviderSpec]:
    """The providers to compare: each `--provider` value; without any, the offline baseline plus the
    first provider of the configured chain (`configured`, else the default chain), so a plain
    `countersign eval` shows how the planner in use compares with the rules planner."""
    if values:
        specs = [_single(v) for v in values]
    else:
        specs = [ProviderSpec("rules"), parse_chain(configured or default_chain())[0]]
    return list({s.label: s for s in specs}.values())


def per_case_limit(options: LLMOptions) -> float:
    """A guard against a hung provider: twice the longest a planner may legitimately take (a first
    call, every repair and every directory lookup, each up to the timeout), so a slow but working
    provider is never cut off."""
    return 2 * options.timeout_seconds * (options.max_repairs + 1 + options.max_lookups)


async def evaluate_all(
    planners: Sequence[Planner],
    cases: Sequence[EvalCase],
    tools: list[ToolSpec],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    limit_seconds: float | None = None,
    directory: RecordSource | None = None,
) -> list[ProviderReport]:
    """One provider after another, so one provider's load does not distort another's latency."""
    return [
        await evaluate(
            planner, cases, tools, concurrency=concurrency, limit_seconds=limit_seconds, directory=directory
        )
        for planner in planners
    ]

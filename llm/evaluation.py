"""`countersign eval`: run a labelled set of requests through planners and measure what they get right.

A planner is judged on three things a reviewer would otherwise have to correct by hand: the request
type, the facts it extracted (`RequestFields`) and the tool it proposes. The labelled set is JSON Lines,
one case per line (see `EvalCase`); `llm/eval_requests.jsonl` is the committed set.

Scoring rules, chosen so that a planner is neither punished for formatting nor rewarded for guessing:
- numbers match within 0.5% relative ("52k" read as 52,000.0 is right; 52,500 is not);
- strings match case-insensitively after whitespace is normalised; a counterparty also matches when
  one name contains the other ("Acme" for "Acme Corp");
- a field labelled `null` must come back empty: the planner must not invent it;
- a planner exception is wrong on every check of its case, and is reported with its message.
"""

import asyncio
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator
from rich.console import Console
from rich.table import Table

from llm.base import Planner
from llm.factory import LLMOptions
from llm.spec import ProviderSpec, SpecError, default_chain, parse_chain
from models.enums import RequestType
from models.errors import CountersignError
from models.proposal import Plan, PlanInput, RequestFields
from models.requests import RequestText, SubmitRequest
from models.tools import ToolSpec

DEFAULT_FILE = Path(__file__).with_name("eval_requests.jsonl")
DEFAULT_CONCURRENCY = 4
# Who submits every case: a name no case mentions, so it is never mistaken for a counterparty.
REQUESTER = "Eval Requester"
NUMBER_TOLERANCE = 0.005

LabelValue = int | float | str | None


class EvalFileError(CountersignError, ValueError):
    """The labelled set cannot be used; the message names the file and, when it applies, the line."""


class EvalCase(BaseModel):
    """One labelled request: what a careful human says the planner should have produced."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][\w.-]*$", max_length=64)]
    text: RequestText
    type: RequestType
    tool: str = Field(min_length=1)
    # Only facts the text states; `None` means the planner must leave the field empty.
    fields: dict[str, LabelValue] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)

    @field_validator("fields")
    @classmethod
    def _known_and_valid(cls, value: dict[str, LabelValue]) -> dict[str, LabelValue]:
        """A label the planner could never produce (unknown name, severity 9) is a mistake in the file."""
        try:
            RequestFields.model_validate({k: v for k, v in value.items() if v is not None})
        except ValidationError as error:
            raise ValueError(_problems(error)) from None
        return value


# --- loading ----------------------------------------------------------------------------------


def _problems(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in error.errors())


def _parse_line(line: str, where: str) -> EvalCase:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise EvalFileError(f"{where}: not valid JSON ({error.msg}, column {error.colno})") from None
    try:
        return EvalCase.model_validate(data)
    except ValidationError as error:
        raise EvalFileError(f"{where}: {_problems(error)}") from None


def load_cases(path: Path) -> list[EvalCase]:
    """Every case in `path`, in file order. Blank lines are skipped; anything else wrong is an error."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise EvalFileError(f"cannot read {path}: {error}") from None
    cases: list[EvalCase] = []
    first_seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        case = _parse_line(line, f"{path}, line {number}")
        if case.id in first_seen:
            raise EvalFileError(
                f"{path}, line {number}: duplicate id {case.id!r} (first on line {first_seen[case.id]})"
            )
        first_seen[case.id] = number
        cases.append(case)
    if not cases:
        raise EvalFileError(f"{path}: no cases")
    return cases


def select(cases: Sequence[EvalCase], tags: Iterable[str]) -> list[EvalCase]:
    """The cases carrying any of `tags`; all of them when no tag is given."""
    wanted = set(tags)
    return [c for c in cases if not wanted or wanted & set(c.tags)]


# --- comparing --------------------------------------------------------------------------------


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def field_matches(name: str, expected: LabelValue, actual: Any) -> bool:
    """Whether a planner's `actual` value for field `name` agrees with the label `expected`."""
    if isinstance(actual, str) and not actual.strip():
        actual = None
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, int | float):
        if isinstance(actual, bool) or not isinstance(actual, int | float):
            return False
        return math.isclose(actual, expected, rel_tol=NUMBER_TOLERANCE, abs_tol=0.0)
    want, got = _normal(expected), _normal(str(actual))
    if name == "counterparty":
        return want in got or got in want
    return want == got


# --- running ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one planner did with one case: a plan, or the error it raised instead."""

    case: EvalCase
    plan: Plan | None
    error: str | None
    latency_ms: float


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _run_case(
    planner: Planner, case: EvalCase, tools: list[ToolSpec], limit_seconds: float | None
) -> Outcome:
    request = PlanInput(request=SubmitRequest(text=case.text), requester_name=REQUESTER)
    scope = asyncio.timeout(limit_seconds)
    start = time.perf_counter()
    try:
        async with scope:
            plan = await planner.plan(request, tools)
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
) -> list[Outcome]:
    """Plan every case, at most `concurrency` at once (provider rate limits), in case order.

    `limit_seconds` bounds each case, so a hung provider costs one error, not the whole run."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    gate = asyncio.Semaphore(concurrency)

    async def one(case: EvalCase) -> Outcome:
        async with gate:
            return await _run_case(planner, case, tools, limit_seconds)

    return list(await asyncio.gather(*(one(c) for c in cases)))


# --- scoring ----------------------------------------------------------------------------------


class Score(BaseModel):
    correct: int = 0
    total: int = 0
    accuracy: float | None = None

    @classmethod
    def of(cls, correct: int, total: int) -> "Score":
        return cls(correct=correct, total=total, accuracy=round(correct / total, 4) if total else None)


class CaseError(BaseModel):
    id: str
    message: str


class Miss(BaseModel):
    """A wrong answer worth looking at: which case, what was expected, what came back."""

    id: str
    expected: Any
    got: Any
    field: str | None = None


class Latency(BaseModel):
    mean_ms: float | None
    p95_ms: float | None


class Tokens(BaseModel):
    input: int
    output: int
    total: int


class ProviderReport(BaseModel):
    provider: str
    cases: int
    request_type: Score
    fields: Score
    per_field: dict[str, Score]
    tool: Score
    errors: list[CaseError]
    # Plans whose model output never validated (`planning_findings`): a human must triage them.
    triage: int
    latency: Latency
    # None when no plan carried provenance (the rules planner spends no tokens).
    tokens: Tokens | None
    # Plans with the wrong request type; cases that raised are under `errors` instead.
    misclassified: list[Miss]
    wrong_tool: list[Miss]
    field_misses: list[Miss]


class EvalReport(BaseModel):
    file: str
    tags: list[str]
    cases: int
    providers: list[ProviderReport]


def _p95(values: list[float]) -> float | None:
    """Nearest-rank 95th percentile: a value that was actually observed."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[math.ceil(0.95 * len(ordered)) - 1], 1)


def _tokens(plans: list[Plan]) -> Tokens | None:
    spent = [p.provenance for p in plans if p.provenance is not None]
    if not spent:
        return None
    used_in = sum(p.input_tokens for p in spent)
    used_out = sum(p.output_tokens for p in spent)
    return Tokens(input=used_in, output=used_out, total=used_in + used_out)


@dataclass
class _Tally:
    """Running counts while scoring; `fields` maps a field name to [correct, total]."""

    type_ok: int = 0
    tool_ok: int = 0
    fields: dict[str, list[int]] = field(default_factory=dict)
    misclassified: list[Miss] = field(default_factory=list)
    wrong_tool: list[Miss] = field(default_factory=list)
    field_misses: list[Miss] = field(default_factory=list)

    def add(self, case: EvalCase, plan: Plan | None) -> None:
        """Score one case; without a plan (the planner raised) every check is wrong but not listed
        as a miss, since the error itself is what to look at."""
        if plan is not None:
            self._add_plan(case, plan)
        for name in case.fields:
            self.fields.setdefault(name, [0, 0])[1] += 1

    def _add_plan(self, case: EvalCase, plan: Plan) -> None:
        if plan.request_type == case.type:
            self.type_ok += 1
        else:
            self.misclassified.append(Miss(id=case.id, expected=case.type, got=plan.request_type))
        if plan.tool == case.tool:
            self.tool_ok += 1
        else:
            self.wrong_tool.append(Miss(id=case.id, expected=case.tool, got=plan.tool))
        for name, expected in case.fields.items():
            got = getattr(plan.fields, name)
            if field_matches(name, expected, got):
                self.fields.setdefault(name, [0, 0])[0] += 1
            else:
                self.field_misses.append(Miss(id=case.id, field=name, expected=expected, got=got))


def score(provider: str, outcomes: Sequence[Outcome]) -> ProviderReport:
    """Turn per-case outcomes into one provider's figures."""
    tally = _Tally()
    for outcome in outcomes:
        tally.add(outcome.case, outcome.plan)
    plans = [o.plan for o in outcomes if o.plan is not None]
    latencies = [o.latency_ms for o in outcomes]
    n = len(outcomes)
    return ProviderReport(
        provider=provider,
        cases=n,
        request_type=Score.of(tally.type_ok, n),
        fields=Score.of(sum(c for c, _ in tally.fields.values()), sum(t for _, t in tally.fields.values())),
        per_field={name: Score.of(*tally.fields[name]) for name in sorted(tally.fields)},
        tool=Score.of(tally.tool_ok, n),
        errors=[CaseError(id=o.case.id, message=o.error) for o in outcomes if o.error is not None],
        triage=sum(1 for p in plans if p.planning_findings),
        latency=Latency(
            mean_ms=round(sum(latencies) / n, 1) if n else None,
            p95_ms=_p95(latencies),
        ),
        tokens=_tokens(plans),
        misclassified=tally.misclassified,
        wrong_tool=tally.wrong_tool,
        field_misses=tally.field_misses,
    )


async def evaluate(
    planner: Planner,
    cases: Sequence[EvalCase],
    tools: list[ToolSpec],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    limit_seconds: float | None = None,
    label: str | None = None,
) -> ProviderReport:
    """Run and score one planner; `label` names it in the report (default: the planner's name)."""
    outcomes = await run_planner(planner, cases, tools, concurrency=concurrency, limit_seconds=limit_seconds)
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
    call and every repair, each up to the timeout), so a slow but working provider is never cut off."""
    return 2 * options.timeout_seconds * (options.max_repairs + 1)


async def evaluate_all(
    planners: Sequence[Planner],
    cases: Sequence[EvalCase],
    tools: list[ToolSpec],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    limit_seconds: float | None = None,
) -> list[ProviderReport]:
    """One provider after another, so one provider's load does not distort another's latency."""
    return [
        await evaluate(planner, cases, tools, concurrency=concurrency, limit_seconds=limit_seconds)
        for planner in planners
    ]


# --- rendering --------------------------------------------------------------------------------


def _pct(s: Score) -> str:
    return "-" if s.accuracy is None else f"{s.accuracy:.1%} ({s.correct}/{s.total})"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def _rows(report: EvalReport) -> list[tuple[str, list[str]]]:
    ps = report.providers
    names = sorted({name for p in ps for name in p.per_field})
    rows: list[tuple[str, list[str]]] = [
        ("cases", [str(p.cases) for p in ps]),
        ("request type", [_pct(p.request_type) for p in ps]),
        ("fields (all)", [_pct(p.fields) for p in ps]),
    ]
    rows += [(f"  {n}", [_pct(p.per_field[n]) if n in p.per_field else "-" for p in ps]) for n in names]
    rows += [
        ("tool", [_pct(p.tool) for p in ps]),
        ("errors", [str(len(p.errors)) for p in ps]),
        ("triage", [str(p.triage) for p in ps]),
        ("latency mean", [_ms(p.latency.mean_ms) for p in ps]),
        ("latency p95", [_ms(p.latency.p95_ms) for p in ps]),
        ("tokens in/out", [f"{p.tokens.input:,}/{p.tokens.output:,}" if p.tokens else "-" for p in ps]),
    ]
    return rows


def render(report: EvalReport, console: Console) -> None:
    """The figures as a table, one column per provider, then the cases worth a look."""
    tags = f" tagged {', '.join(report.tags)}" if report.tags else ""
    console.print(
        f"{report.cases} cases{tags} from {report.file}", markup=False, highlight=False, soft_wrap=True
    )
    table = Table(title="Planner evaluation", title_justify="left")
    table.add_column("metric")
    for p in report.providers:
        table.add_column(p.provider, justify="right")
    for label, cells in _rows(report):
        table.add_row(label, *cells)
    console.print(table)
    for p in report.providers:
        if p.misclassified:
            wrong = ", ".join(f"{m.id} ({m.expected}->{m.got})" for m in p.misclassified)
            console.print(
                f"{p.provider} misclassified: {wrong}", markup=False, highlight=False, soft_wrap=True
            )
        for e in p.errors:
            line = f"{p.provider} error on {e.id}: {e.message}"
            console.print(line, markup=False, highlight=False, soft_wrap=True)


def to_json(report: EvalReport) -> str:
    return report.model_dump_json(indent=2)

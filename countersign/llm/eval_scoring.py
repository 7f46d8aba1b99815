"""Scoring the planner evaluation: comparing a plan with its case's labels, and one provider's figures.

Scoring rules, chosen so that a planner is neither punished for formatting nor rewarded for guessing:
- numbers match within 0.5% relative ("52k" read as 52,000.0 is right; 52,500 is not);
- strings match case-insensitively after whitespace is normalised; a counterparty also matches when
  one name contains the other ("Acme" for "Acme Corp");
- a field labelled `null` must come back empty: the planner must not invent it;
- a planner exception is wrong on every check of its case, and is reported with its message.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from countersign.llm.eval_cases import EvalCase, LabelValue
from countersign.models.proposal import Plan

NUMBER_TOLERANCE = 0.005


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


@dataclass(frozen=True)
class Outcome:
    """What one planner did with one case: a plan, or the error it raised instead."""

    case: EvalCase
    plan: Plan | None
    error: str | None
    latency_ms: float


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
    # Whether planners could look up the demo directory (the `directory` cases' labels assume it).
    directory: bool = True
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

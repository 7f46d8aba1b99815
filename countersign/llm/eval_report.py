"""The planner evaluation's report, as a table on the console or as JSON."""

from rich.console import Console
from rich.table import Table

from countersign.llm.eval_scoring import EvalReport, Score


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
        f"{report.cases} cases{tags} from {report.file}, "
        f"{'with the demo directory' if report.directory else 'without a directory'}",
        markup=False,
        highlight=False,
        soft_wrap=True,
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

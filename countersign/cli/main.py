"""`countersign` command line: up, worker, api, mcp, principal, keys, eval, policy-check, audit, ledger,
outbox, dlq, directory."""

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from countersign.cli import principal_channels  # noqa: F401  (adds `principal update` to principal_app)
from countersign.cli.audit import audit_app, ledger_app
from countersign.cli.common import ApiPort, DataDir, TemporalAddress, database_ready, err, talking_to_temporal
from countersign.cli.common import settings_from as _settings
from countersign.cli.database import db_app
from countersign.cli.directory import directory_app
from countersign.cli.keys import keys_app
from countersign.cli.outbox import outbox_app
from countersign.cli.principals import principal_app

if TYPE_CHECKING:
    from countersign.config.settings import Settings
    from countersign.store.audit_store import AuditStore

# Locals stay out of tracebacks: they can hold API keys.
app = typer.Typer(
    help="Countersign: the AI proposes, a human decides.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(principal_app, name="principal")
app.add_typer(audit_app, name="audit")
app.add_typer(ledger_app, name="ledger")
app.add_typer(outbox_app, name="outbox")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(directory_app, name="directory")
dlq_app = typer.Typer(help="Dead letters: failed workflows an ADMIN may retry (POST /workflows/{id}/retry).")
app.add_typer(dlq_app, name="dlq")


# One string per paragraph: the help is reflowed to the terminal, and a docstring's line breaks are kept.
UP_HELP = (
    "Start the whole stack: Temporal dev server (unless --temporal-address), worker and gateway.\n\n"
    "A process that exits (a crash, a kill, the worker's stall watchdog) is started again after 1 s, "
    "doubling to 30 s while it keeps exiting; five exits in a row, each within 10 s of its start, are a "
    "crash loop, which stops everything with exit code 1. Ctrl-C or SIGTERM stops the gateway, then "
    "the worker, then Temporal."
)


@app.command(help=UP_HELP)
def up(
    data_dir: DataDir = None,
    api_port: ApiPort = None,
    temporal_port: Annotated[int | None, typer.Option("--temporal-port")] = None,
    ui_port: Annotated[int | None, typer.Option("--ui-port")] = None,
    mail_port: Annotated[
        int | None,
        typer.Option(
            "--mail-port",
            help="Port of up's own SMTP sink, unless COUNTERSIGN_SMTP_HOST names a server "
            "[COUNTERSIGN_SMTP_SINK_PORT, else 2525]",
        ),
    ] = None,
    temporal_address: TemporalAddress = None,
) -> None:
    from countersign.stack.launcher import run_stack

    settings = _settings(
        data_dir=data_dir,
        api_port=api_port,
        temporal_port=temporal_port,
        ui_port=ui_port,
        smtp_sink_port=mail_port,
        temporal_address=temporal_address,
    )
    raise typer.Exit(run_stack(settings))


@app.command()
def worker(data_dir: DataDir = None, temporal_address: TemporalAddress = None) -> None:
    """Run the worker against a Temporal server (the same as `python worker.py`)."""
    from countersign.worker import main as run

    settings = _settings(data_dir=data_dir, temporal_address=temporal_address)
    database_ready(settings)
    with talking_to_temporal(settings):  # a server that refuses a call: one line, exit 1
        code = run(settings)
    raise typer.Exit(code)


@app.command()
def api(
    data_dir: DataDir = None,
    temporal_address: TemporalAddress = None,
    api_port: ApiPort = None,
) -> None:
    """Run the HTTP gateway (uvicorn on 127.0.0.1) against a Temporal server."""
    import uvicorn

    from countersign.activities.plugins import PluginError, load_plugins
    from countersign.api.main import create_app
    from countersign.config.policy_file import PolicyFileError, load_policy
    from countersign.observability.logs import configure_logging
    from countersign.observability.tracing import API_SERVICE
    from countersign.security.gateway_keys import MissingKey

    settings = _settings(data_dir=data_dir, temporal_address=temporal_address, api_port=api_port)
    try:
        load_policy(settings.policy_file)  # refused here, by line, rather than inside the server's start-up
        settings.gateway_signer()  # and a gateway that could sign nothing never starts
        load_plugins(settings.plugins)  # nor one missing a plugin's tools
    except (PolicyFileError, MissingKey, PluginError) as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(2) from None
    database_ready(settings)
    with talking_to_temporal(settings):
        # Here rather than only in the app's start-up, where uvicorn would log the SDK's traceback.
        asyncio.run(_reach_temporal(settings))
    # Uvicorn's own lines too (log_config=None) go through COUNTERSIGN_LOG_FORMAT and its redaction.
    configure_logging(settings, API_SERVICE)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="info",
        log_config=None,
    )


@app.command()
def mcp(
    api_url: Annotated[
        str,
        typer.Option(
            "--api-url", envvar="COUNTERSIGN_API_URL", help="The gateway to call [COUNTERSIGN_API_URL]"
        ),
    ] = "http://127.0.0.1:8000",
) -> None:
    """Serve the MCP tools over stdio, for an agent host that starts this command; each call goes to the
    gateway with the key in COUNTERSIGN_API_KEY (read from the environment only, never a flag)."""
    import os

    from countersign.mcp_server.stdio import serve_stdio

    key = os.environ.get("COUNTERSIGN_API_KEY", "").strip()
    if not key:
        err.print("error: set COUNTERSIGN_API_KEY to the API key the agent acts with", markup=False)
        raise typer.Exit(2)
    if not api_url.startswith(("http://", "https://")):
        err.print(f"error: COUNTERSIGN_API_URL {api_url!r} is not an http(s) URL", markup=False)
        raise typer.Exit(2)
    asyncio.run(serve_stdio(api_url, key))


async def _reach_temporal(settings: "Settings") -> None:
    from countersign.config.temporal import connect

    await connect(settings.resolved_temporal_address, settings.namespace, tls=settings.temporal_tls())


def main() -> None:
    app()


@app.command("eval")
def eval_command(
    provider: Annotated[
        list[str] | None,
        typer.Option(
            "--provider",
            metavar="SPEC",
            help="One COUNTERSIGN_LLM-style provider (rules, openai:gpt-4.1-mini, ...); repeat to compare. "
            "Default: rules and the configured provider.",
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", metavar="PATH", help="Labelled set, JSON Lines. Default: the built-in set."),
    ] = None,
    json_path: Annotated[
        str | None,
        typer.Option(
            "--json", metavar="PATH", help="Also write the JSON report to PATH; '-': print it instead."
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", metavar="N", min=1, max=64, help="Cases planned at once.")
    ] = 4,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", metavar="TAG", help="Only cases with this tag; repeatable.")
    ] = None,
    directory: Annotated[
        bool,
        typer.Option(
            "--directory/--no-directory",
            help="Plan with the demo directory, which the labels of the `directory` cases assume; "
            "--no-directory measures what planners do without it.",
        ),
    ] = True,
) -> None:
    """Measure planners on a labelled set: request type, field and tool accuracy per provider."""
    from countersign.activities.plugins import load_plugins
    from countersign.directory.demo import demo_records
    from countersign.directory.lookups import StaticRecords
    from countersign.llm import eval_cases, eval_report, eval_scoring
    from countersign.llm import evaluation as ev
    from countersign.llm.factory import build_planner
    from countersign.llm.spec import SpecError

    settings = _settings()
    options = settings.llm_options()
    registry = load_plugins(settings.plugins).tools  # planners are measured on the tools workers offer
    source = file or eval_cases.DEFAULT_FILE
    try:
        specs = ev.provider_specs(provider or [], settings.llm)
        cases = eval_cases.select(eval_cases.load_cases(source), tag or [])
        if not cases:
            raise eval_cases.EvalFileError(f"{source}: no case has tag {', '.join(tag or [])}")
        # Every planner before any runs: a missing key fails fast instead of half-way.
        planners = [build_planner(spec, registry=registry, options=options) for spec in specs]
    except (SpecError, eval_cases.EvalFileError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    names = ", ".join(p.name for p in planners)
    where = "with the demo directory" if directory else "without a directory"
    typer.echo(f"evaluating {names} on {len(cases)} cases, {where}", err=True)
    reports = asyncio.run(
        ev.evaluate_all(
            planners,
            cases,
            registry.specs(),
            concurrency=concurrency,
            limit_seconds=ev.per_case_limit(options),
            directory=StaticRecords(demo_records()) if directory else None,
        )
    )
    report = eval_scoring.EvalReport(
        file=str(source), tags=tag or [], cases=len(cases), directory=directory, providers=reports
    )
    if json_path == "-":
        print(eval_report.to_json(report))
        return
    eval_report.render(report, Console())
    if json_path is not None:
        try:
            Path(json_path).write_text(eval_report.to_json(report) + "\n", encoding="utf-8")
        except OSError as error:
            typer.echo(f"error: cannot write {json_path}: {error}", err=True)
            raise typer.Exit(1) from None


@app.command("policy-check")
def policy_check(
    file: Annotated[
        Path | None,
        typer.Argument(
            metavar="[FILE]", help="Policy YAML. Default: COUNTERSIGN_POLICY_FILE, else the shipped default."
        ),
    ] = None,
) -> None:
    """Check an approval policy file and summarise its rules; problems are listed by line."""
    from rich.markup import escape

    from countersign.activities.plugins import load_plugins
    from countersign.config.policy_file import DEFAULT_POLICY_FILE, PolicyFileError, load_policy
    from countersign.models.policy import StepSpec, format_duration, resolve_timing
    from countersign.workflows.policy import auto_approved_high_risk

    source = file or _settings().policy_file or DEFAULT_POLICY_FILE
    try:
        policy = load_policy(source)
    except PolicyFileError as error:
        # Plain text, not rich: the messages quote the file, whose brackets rich would read as markup.
        for problem in error.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2) from None
    out = Console(soft_wrap=True)

    def step(spec: StepSpec) -> str:  # timings as they apply: the step's own, else the defaults
        timing = resolve_timing(spec, policy.defaults)
        escalate = f", escalates to {timing.escalate_to}" if timing.escalate_to else ""
        sla, deadline = format_duration(timing.sla_seconds), format_duration(timing.deadline_seconds)
        # Several roles read as a count of people from a list: "2 of FINANCE | DIRECTOR | ADMIN".
        who = f"{spec.quorum} of {' | '.join(spec.any_of)}" if spec.any_of else f"{spec.role} x{spec.quorum}"
        return f"{who} {sla}/{deadline}{escalate}"

    out.print(
        f"[bold]{escape(str(source))}[/]: version {escape(str(policy.version))}, "
        f"{len(policy.rules)} rules, {len(policy.extra_steps)} extra steps"
    )
    for number, rule in enumerate(policy.rules, 1):
        auto = " [bold]auto-approves[/] (else its steps)" if rule.auto_approve else ""
        out.print(f"{number}. [bold]{escape(rule.name or '(unnamed)')}[/] when: {escape(rule.when)}{auto}")
        for spec in rule.steps:
            out.print(f"   {step(spec)}")
    for extra in policy.extra_steps:
        out.print(f"+ {escape(extra.name or '(extra step)')} when: {escape(extra.when)}")
        out.print(f"   {step(extra.step)}")
    # Rules that approve with no human, checked against the tools the worker would load (plugins too).
    for warning in auto_approved_high_risk(policy, load_plugins().tools.specs()):
        typer.echo(f"warning: {warning}", err=True)


@dlq_app.command("list")
def dlq_list(
    data_dir: DataDir = None,
    temporal_address: TemporalAddress = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's")] = None,
) -> None:
    """List failed workflows still open for a retry, with why they failed."""
    from rich.markup import escape
    from rich.table import Table
    from sqlalchemy.exc import SQLAlchemyError

    from countersign.api.services.visibility import list_dead_letters
    from countersign.config.temporal import connect
    from countersign.store.audit_store import AuditStore
    from countersign.store.sql import masked_url

    settings = _settings(data_dir=data_dir, temporal_address=temporal_address)

    async def rows() -> list[tuple[str, ...]]:
        client = await connect(
            settings.resolved_temporal_address,
            settings.namespace,
            codec=settings.payload_codec(),
            tls=settings.temporal_tls(),
        )
        found = await list_dead_letters(client, tenant, limit=1000)
        # Why: the reason the workflow recorded when it failed, read from the SQL audit log rather than
        # asked of the workflow, so the list works while no worker runs (when it is most needed). An
        # audit log out of reach leaves the column saying so: the list itself comes from Temporal.
        try:
            async with await AuditStore.open(settings.audit_url) as audit:
                whys = [await _why(audit, r.workflow_id) for r in found]
        except (SQLAlchemyError, OSError) as error:
            where = masked_url(settings.audit_url)
            typer.echo(
                f"warning: the audit log at {where} cannot be read ({error.__class__.__name__})", err=True
            )
            whys = ["(audit log unreachable)"] * len(found)
        return [
            (r.workflow_id, r.tenant or "", str(r.started_at or ""), (r.text or "")[:60], why)
            for r, why in zip(found, whys, strict=True)
        ]

    with talking_to_temporal(settings):
        found = asyncio.run(rows())
    table = Table("workflow", "tenant", "started", "request", "why")
    for row in found:
        table.add_row(*map(escape, row))
    Console(soft_wrap=True).print(table)


async def _why(audit: "AuditStore", workflow_id: str) -> str:
    failed = [event for event in await audit.for_workflow(workflow_id) if event.event == "failed"]
    # Written by an activity just after the failure: a dead letter of a moment ago may not be there yet.
    return failed[-1].detail if failed else "(not in the audit log yet)"

"""`countersign` command line: up, worker, api, principal, eval, policy-check, audit, ledger, dlq."""

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import ValidationError
from rich.console import Console

from countersign.principals import PrincipalStore
from countersign.settings import Settings
from models.enums import Role

# Locals stay out of tracebacks: they can hold API keys.
app = typer.Typer(
    help="Countersign: the AI proposes, a human decides.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
principal_app = typer.Typer(help="Manage principals (reviewers and requesters) and their API keys.")
app.add_typer(principal_app, name="principal")
audit_app = typer.Typer(help="Check and export the SQL audit log (COUNTERSIGN_AUDIT_DATABASE_URL).")
app.add_typer(audit_app, name="audit")
ledger_app = typer.Typer(help="The execution ledger: each approved action's key, attempts and result.")
app.add_typer(ledger_app, name="ledger")
dlq_app = typer.Typer(help="Dead letters: failed workflows an ADMIN may retry (POST /workflows/{id}/retry).")
app.add_typer(dlq_app, name="dlq")
# soft_wrap: an error message is one line, whatever the terminal width, so scripts can grep it.
err = Console(stderr=True, soft_wrap=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Where state is kept [.countersign]")]
TemporalAddress = Annotated[
    str | None,
    typer.Option("--temporal-address", help="HOST:PORT of an existing Temporal server"),
]
ApiPort = Annotated[int | None, typer.Option("--api-port", help="Gateway port [8000]")]


def _settings(**overrides: Any) -> Settings:
    """Flags override COUNTERSIGN_* environment variables, which override the defaults."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        for problem in error.errors():
            name = ".".join(str(p) for p in problem["loc"])
            where = f"setting {name} (COUNTERSIGN_{name.upper()})" if name else "settings"
            err.print(f"[bold red]error:[/] {where}: {problem['msg']}")
        raise typer.Exit(2) from None


@app.command()
def up(
    data_dir: DataDir = None,
    api_port: ApiPort = None,
    temporal_port: Annotated[int | None, typer.Option("--temporal-port")] = None,
    ui_port: Annotated[int | None, typer.Option("--ui-port")] = None,
    temporal_address: TemporalAddress = None,
) -> None:
    """Start the whole stack: Temporal dev server (unless --temporal-address), worker and gateway."""
    from countersign.stack import run_stack

    settings = _settings(
        data_dir=data_dir,
        api_port=api_port,
        temporal_port=temporal_port,
        ui_port=ui_port,
        temporal_address=temporal_address,
    )
    raise typer.Exit(run_stack(settings))


@app.command()
def worker(data_dir: DataDir = None, temporal_address: TemporalAddress = None) -> None:
    """Run the worker against a Temporal server."""
    from countersign.logs import configure_logging
    from countersign.tracing import WORKER_SERVICE
    from countersign.worker import run_worker
    from countersign.worker_watchdog import WorkerStalled
    from llm.spec import SpecError

    settings = _settings(data_dir=data_dir, temporal_address=temporal_address)
    # COUNTERSIGN_LOG_FORMAT: text or JSON lines, with workflow ids; secrets and request texts redacted.
    configure_logging(settings, WORKER_SERVICE)
    try:
        asyncio.run(run_worker(settings))
    except SpecError as error:  # a planner that cannot be built: a missing key, a bad endpoint
        err.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(2) from None
    except WorkerStalled as error:  # its supervisor (compose, systemd, `countersign up`) restarts it
        err.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(3) from None


@app.command()
def api(
    data_dir: DataDir = None,
    temporal_address: TemporalAddress = None,
    api_port: ApiPort = None,
) -> None:
    """Run the HTTP gateway (uvicorn on 127.0.0.1) against a Temporal server."""
    import uvicorn

    from api.main import create_app
    from countersign.logs import configure_logging
    from countersign.policy_file import PolicyFileError, load_policy
    from countersign.tracing import API_SERVICE

    settings = _settings(data_dir=data_dir, temporal_address=temporal_address, api_port=api_port)
    try:
        load_policy(settings.policy_file)  # refused here, by line, rather than inside the server's start-up
    except PolicyFileError as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(2) from None
    # Uvicorn's own lines too (log_config=None) go through COUNTERSIGN_LOG_FORMAT and its redaction.
    configure_logging(settings, API_SERVICE)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="info",
        log_config=None,
    )


def _parse_roles(value: str) -> list[Role]:
    roles = []
    for name in filter(None, (part.strip().upper() for part in value.split(","))):
        try:
            roles.append(Role(name))
        except ValueError:
            raise typer.BadParameter(
                f"unknown role {name!r}; roles are {', '.join(Role)}", param_hint="--roles"
            ) from None
    return roles


@principal_app.command("add")
def principal_add(
    name: Annotated[str, typer.Argument(help="Display name")],
    roles: Annotated[str, typer.Option("--roles", help="Comma-separated roles, e.g. MANAGER,FINANCE")] = "",
    tenant: Annotated[str, typer.Option("--tenant")] = "default",
    email: Annotated[
        str | None, typer.Option("--email", help="Where approval notifications go, e.g. ada@example.com")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a principal; its new API key is printed as the last line of stdout, and never again."""
    settings = _settings(data_dir=data_dir)
    parsed = _parse_roles(roles)

    async def add() -> str:
        async with await PrincipalStore.open(settings.principals_db) as store:
            created = await store.add(name, parsed, tenant, email=email)
        contact = f", email {email}" if email else ""
        err.print(
            f"created {created.principal.id} ({name}, tenant {tenant}, "
            f"roles {','.join(created.principal.roles) or 'none'}{contact}); the key is shown once:"
        )
        return created.api_key

    try:
        key = asyncio.run(add())
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise typer.BadParameter(problems) from None
    print(key)


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
) -> None:
    """Measure planners on a labelled set: request type, field and tool accuracy per provider."""
    from countersign import evaluation as ev
    from llm.factory import build_planner
    from llm.spec import SpecError
    from tools.builtin import build_registry

    settings = _settings()
    options = settings.llm_options()
    registry = build_registry()
    source = file or ev.DEFAULT_FILE
    try:
        specs = ev.provider_specs(provider or [], settings.llm)
        cases = ev.select(ev.load_cases(source), tag or [])
        if not cases:
            raise ev.EvalFileError(f"{source}: no case has tag {', '.join(tag or [])}")
        # Every planner before any runs: a missing key fails fast instead of half-way.
        planners = [build_planner(spec, registry=registry, options=options) for spec in specs]
    except (SpecError, ev.EvalFileError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    names = ", ".join(p.name for p in planners)
    typer.echo(f"evaluating {names} on {len(cases)} cases", err=True)
    reports = asyncio.run(
        ev.evaluate_all(
            planners,
            cases,
            registry.specs(),
            concurrency=concurrency,
            limit_seconds=ev.per_case_limit(options),
        )
    )
    report = ev.EvalReport(file=str(source), tags=tag or [], cases=len(cases), providers=reports)
    if json_path == "-":
        print(ev.to_json(report))
        return
    ev.render(report, Console())
    if json_path is not None:
        try:
            Path(json_path).write_text(ev.to_json(report) + "\n", encoding="utf-8")
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

    from countersign.policy_file import DEFAULT_POLICY_FILE, PolicyFileError, load_policy
    from models.policy import StepSpec, format_duration, resolve_timing

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
        return f"{spec.role} x{spec.quorum} {sla}/{deadline}{escalate}"

    out.print(
        f"[bold]{escape(str(source))}[/]: version {escape(str(policy.version))}, "
        f"{len(policy.rules)} rules, {len(policy.extra_steps)} extra steps"
    )
    for number, rule in enumerate(policy.rules, 1):
        out.print(f"{number}. [bold]{escape(rule.name or '(unnamed)')}[/] when: {escape(rule.when)}")
        for spec in rule.steps:
            out.print(f"   {step(spec)}")
    for extra in policy.extra_steps:
        out.print(f"+ {escape(extra.name or '(extra step)')} when: {escape(extra.when)}")
        out.print(f"   {step(extra.step)}")


def _audit_failure(url: str, error: Exception, what: str = "audit log") -> typer.Exit:
    """A SQL store that cannot be opened or read: one line, its URL without the password, exit 2."""
    from countersign.sql import masked_url

    where = masked_url(url) if "://" in url else "(malformed URL)"
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    err.print(f"error: {what} {where}: {reason}", markup=False)
    return typer.Exit(2)


@audit_app.command("verify")
def audit_verify(
    workflow: Annotated[
        str | None, typer.Option("--workflow", metavar="ID", help="Only this workflow's chain.")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Recompute the audit log's hash chains; exit 1, naming each chain's first broken link, if any is."""
    from rich.markup import escape
    from sqlalchemy.exc import SQLAlchemyError

    from countersign.audit_store import AuditStore
    from countersign.sql import masked_url
    from models.audit import VerifyReport

    url = _settings(data_dir=data_dir).audit_url

    async def verify() -> VerifyReport:
        async with await AuditStore.open(url) as store:
            return await store.verify(workflow)

    try:
        report = asyncio.run(verify())
    except (OSError, ValueError, SQLAlchemyError) as error:
        raise _audit_failure(url, error) from None
    out = Console(soft_wrap=True)
    for problem in report.broken:
        out.print(
            f"[bold red]BROKEN[/] workflow {escape(problem.workflow_id)} at seq {problem.seq}: "
            f"{escape(problem.reason)}"
        )
    verdict = "[bold red]tampered[/]" if report.broken else "[bold green]intact[/]"
    out.print(
        f"{escape(masked_url(url))}: {report.chains} chains, {report.events} events, "
        f"{len(report.broken)} broken: {verdict}"
    )
    if report.broken:
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    fmt: Annotated[Literal["jsonl", "csv"], typer.Option("--format", help="JSON Lines or CSV.")] = "jsonl",
    out: Annotated[Path | None, typer.Option("--out", metavar="FILE", help="Default: stdout.")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's events.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Write every audit event, chain by chain, hashes included: for auditors and archives."""
    import sys

    from sqlalchemy.exc import SQLAlchemyError

    from countersign.audit_store import AuditStore

    url = _settings(data_dir=data_dir).audit_url

    async def export() -> int:
        async with await AuditStore.open(url) as store:
            if out is None:
                return await store.export(fmt, sys.stdout, tenant)
            # newline="": the csv module writes its own line endings.
            with out.open("w", encoding="utf-8", newline="") as file:
                return await store.export(fmt, file, tenant)

    try:
        count = asyncio.run(export())
    except (OSError, ValueError, SQLAlchemyError) as error:
        raise _audit_failure(url, error) from None
    err.print(f"exported {count} audit events" + (f" to {out}" if out else ""), markup=False)


@ledger_app.command("list")
def ledger_list(
    workflow: Annotated[
        str | None, typer.Option("--workflow", metavar="ID", help="Only this workflow's.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="started, succeeded or failed (started: maybe interrupted)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    data_dir: DataDir = None,
) -> None:
    """List executions, newest first: which key ran which tool, how many attempts, and how it ended."""
    from rich.markup import escape
    from rich.table import Table
    from sqlalchemy.exc import SQLAlchemyError

    from countersign.execution_ledger import ExecutionLedger
    from models.tools import LedgerEntry, LedgerStatus

    try:
        wanted = None if status is None else LedgerStatus(status)
    except ValueError:
        raise typer.BadParameter("use started, succeeded or failed", param_hint="--status") from None
    url = _settings(data_dir=data_dir).audit_url

    async def entries() -> list[LedgerEntry]:
        async with await ExecutionLedger.open(url) as ledger:
            return await ledger.entries(workflow_id=workflow, status=wanted, limit=limit)

    try:
        found = asyncio.run(entries())
    except (OSError, ValueError, SQLAlchemyError) as error:
        raise _audit_failure(url, error, "execution ledger") from None
    table = Table("key", "tool", "status", "attempts", "started", "outcome")
    for entry in found:
        # The result once it succeeded; otherwise the last attempt's error, if one failed.
        outcome = json.dumps(entry.result) if entry.result is not None else entry.error
        table.add_row(
            escape(entry.idempotency_key),
            entry.tool,
            entry.status.value,
            str(entry.attempts),
            entry.started_at.isoformat(timespec="seconds"),
            escape((outcome or "")[:80]),
        )
    Console(soft_wrap=True).print(table)


@dlq_app.command("list")
def dlq_list(
    data_dir: DataDir = None,
    temporal_address: TemporalAddress = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's")] = None,
) -> None:
    """List failed workflows still open for a retry, with why they failed."""
    import asyncio

    from rich.table import Table

    from countersign.approvals import list_dead_letters
    from countersign.temporal import connect

    settings = _settings(data_dir=data_dir, temporal_address=temporal_address)

    async def rows() -> list[tuple[str, str, str, str]]:
        client = await connect(
            settings.resolved_temporal_address, settings.namespace, codec=settings.payload_codec()
        )
        found = await list_dead_letters(client, tenant, limit=1000)
        return [(r.workflow_id, r.tenant or "", str(r.started_at or ""), (r.text or "")[:60]) for r in found]

    table = Table("workflow", "tenant", "started", "request")
    for row in asyncio.run(rows()):
        table.add_row(*row)
    Console(soft_wrap=True).print(table)

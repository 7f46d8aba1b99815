"""`countersign up`: supervise the embedded Temporal dev server, the worker and the gateway.

SIGINT or SIGTERM stops them all, gateway first, Temporal last (supervisor.py), so nothing in flight
loses its server. Before anything starts, preflight.py checks what would fail later; the first run on
a data dir makes keys and demo principals (first_run.py).
"""

import asyncio
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from types import FrameType

from rich.console import Console
from rich.markup import escape

from countersign.config.settings import Settings
from countersign.directory.demo import DEMO_TENANT
from countersign.models.directory import DirectoryKind
from countersign.models.principals import NewPrincipal, PrincipalRecord
from countersign.stack.dev_server import READY_TIMEOUT, temporal_child, wait_for_temporal
from countersign.stack.first_run import demo_directory, demo_principals, ensure_keys
from countersign.stack.mail_sink import MailSink
from countersign.stack.preflight import check_ports, planner_chain, policy_summary
from countersign.stack.supervisor import Child, RestartPolicy, StackError, Supervisor
from countersign.store.schema import SchemaAhead
from countersign.store.sql import masked_url
from countersign.store.startup import prepare_database

console = Console()


def _mail(settings: Settings) -> tuple[MailSink | None, dict[str, str], str]:
    """The configured SMTP server, or a local sink: (the sink to stop, the worker's env, a line to print)."""
    if settings.smtp_host is not None:
        return None, {}, f"{settings.smtp_host}:{settings.smtp_port}"
    sink = MailSink(settings.data_dir, port=settings.smtp_sink_port).start()
    env = {"COUNTERSIGN_SMTP_HOST": sink.host, "COUNTERSIGN_SMTP_PORT": str(sink.port)}
    env["COUNTERSIGN_SMTP_STARTTLS"] = "false"
    return sink, env, f"SMTP sink on {sink.host}:{sink.port}, kept in {sink.directory}"


def _wait_for_api(settings: Settings, api: subprocess.Popen[bytes]) -> None:
    url = f"http://{settings.api_host}:{settings.api_port}/healthz"
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise StackError(f"the gateway exited with {api.returncode}; see logs/api.log")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise StackError(f"the gateway did not answer {url} in time")


def _child_args(command: str, settings: Settings) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "countersign",
        command,
        "--data-dir",
        str(settings.data_dir),
        "--temporal-address",
        settings.resolved_temporal_address,
    ]
    return [*args, "--api-port", str(settings.api_port)] if command == "api" else args


def _gateway_env(settings: Settings) -> dict[str, str]:
    """What the gateway must know that `api` takes no flag for: the Web UI's port (`up --ui-port`).
    From it the gateway derives, as `up` does, the Web UI link it gives the inbox (/ui/config) and the
    origins allowed to call /codec, unless COUNTERSIGN_TEMPORAL_UI_URL or _CODEC_CORS_ORIGINS say
    otherwise (the child inherits those)."""
    return {"COUNTERSIGN_UI_PORT": str(settings.ui_port)}


def _print_ready(
    settings: Settings,
    created: list[NewPrincipal],
    existing: list[PrincipalRecord],
    directory: dict[DirectoryKind, int],
    started_server: bool,
    planners: str,
    policy: str,
    mail: str,
    children: list[Child],
) -> None:
    if created:
        console.print("[bold]Demo principals[/] (the keys are shown this once; keep them):")
        for item in created:
            roles = ",".join(item.principal.roles) or "-"
            # soft_wrap: a key cut across lines would be useless, and it is not shown again.
            console.print(f"  {item.principal.name:<16} {roles:<11} {item.api_key}", soft_wrap=True)
    elif existing:
        # Their keys were printed once, by the first `up` on this data dir; a newcomer who missed them
        # gets one from `principal rotate` (audited, as every principal command is).
        data_dir = shlex.quote(str(settings.data_dir))
        console.print(
            "[bold]Demo principals[/] (their keys were shown when they were made; for a new one: "
            f"[bold]countersign principal rotate ID --data-dir {escape(data_dir)}[/]):",
            soft_wrap=True,
        )
        for record in existing:
            roles = ",".join(record.roles) or "-"
            console.print(f"  {record.name:<16} {roles:<11} {record.id}", soft_wrap=True)
    if directory:
        made = ", ".join(f"{count} {kind.value}" for kind, count in directory.items())
        console.print(
            f"[bold]Demo directory[/] of tenant {DEMO_TENANT}: {made} "
            "([bold]countersign directory list counterparties[/]; docs/directory.md)",
            soft_wrap=True,
        )
    base = f"http://{settings.api_host}:{settings.api_port}"
    console.print(f"API docs:        {base}/docs")
    if started_server:
        console.print(f"Temporal Web UI: http://127.0.0.1:{settings.ui_port}")
    console.print(f"Temporal:        {settings.resolved_temporal_address}")
    console.print(f"Planner:         {planners}{' (offline)' if planners == 'rules' else ''}")
    console.print(f"Policy:          {policy}")
    console.print(f"Mail:            {mail}")
    console.print(f"Logs:            {settings.data_dir / 'logs'}")
    processes = ", ".join(f"{child.name} {child.pid}" for child in children)
    console.print(f"Processes:       {processes} (restarted when they exit)")
    console.print("[bold green]Countersign is ready.[/] Ctrl-C stops it.")


def _database_ready(settings: Settings) -> None:
    try:
        asyncio.run(prepare_database(settings.database_url, settings.data_dir))
    except SchemaAhead as error:
        raise StackError(f"database {masked_url(settings.database_url)}: {error}") from None


def run_stack(settings: Settings) -> int:
    started = time.monotonic()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    supervisor = Supervisor(RestartPolicy(), say=lambda line: console.print(escape(line)))
    sink: MailSink | None = None
    logs = settings.data_dir / "logs"
    try:
        planners = planner_chain(settings)
        policy_text = policy_summary(settings)
        check_ports(settings)
        ensure_keys(settings)
        # Before the demo principals are counted: an old data dir's principals are imported first.
        _database_ready(settings)
        server = supervisor.add(temporal_child(settings)) if settings.temporal_address is None else None
        asyncio.run(wait_for_temporal(settings, server.process if server is not None else None))
        created, existing = asyncio.run(demo_principals(settings))
        # With the demo principals, on the first `up` only: a directory emptied later stays empty.
        directory = asyncio.run(demo_directory(settings)) if created else {}
        sink, mail_env, mail = _mail(settings)
        # The worker writes the links in messages: to the gateway `up` starts, on whatever port it has.
        worker_env = {**mail_env, "COUNTERSIGN_PUBLIC_URL": settings.public_url}
        supervisor.add(Child("worker", _child_args("worker", settings), logs / "worker.log", worker_env))
        api = supervisor.add(
            Child("gateway", _child_args("api", settings), logs / "api.log", _gateway_env(settings))
        )
        assert api.process is not None
        _wait_for_api(settings, api.process)
        _print_ready(
            settings,
            created,
            existing,
            directory,
            server is not None,
            planners,
            policy_text,
            mail,
            supervisor.children,
        )
        console.print(f"ready in {time.monotonic() - started:.1f}s")
        while not stopping:
            supervisor.check()
            time.sleep(0.2)
        console.print("stopping…")
        return 0
    except StackError as error:
        console.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
        return 1
    finally:
        supervisor.stop()
        if sink is not None:
            sink.stop()

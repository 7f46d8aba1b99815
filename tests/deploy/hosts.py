"""Countersign's topology on one machine as separate hosts would run it (tests/deploy/test_multi_host.py):
`countersign api` and `countersign worker` processes, each in a directory of its own (its working
directory, its data dir, its log), sharing nothing but the settings they are given, one PostgreSQL and
one Temporal server, reached over TCP.

PostgreSQL: a role and a schema of their own per test. COUNTERSIGN_DATABASE_URL cannot name a schema,
and asyncpg under SQLAlchemy does not take libpq's `?options=-csearch_path%3D...` (asyncpg's connect()
refuses an `options` argument; it has `server_settings`, which a URL cannot carry). So the test makes a
role whose default search_path is its schema (`ALTER ROLE ... SET search_path`): every process that
connects as that role (gateways, workers, the CLI) finds its tables there, as a deployment whose
database role owns one schema would. The machine's PostgreSQL trusts local connections, so the role
needs no password.
"""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from countersign.security import audit_keys, gateway_keys
from tests.chaos.support import free_port

POSTGRES_URL = os.environ.get("COUNTERSIGN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.asynccontextmanager
async def postgres_role_schema() -> AsyncIterator[str]:
    """A URL for a fresh role whose search_path is a fresh schema it owns; both dropped afterwards."""
    name = f"cs_hosts_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE ROLE "{name}" LOGIN')
        await admin.execute(f'CREATE SCHEMA "{name}" AUTHORIZATION "{name}"')
        await admin.execute(f'ALTER ROLE "{name}" SET search_path = "{name}"')
        yield make_url(POSTGRES_URL).set(username=name, password=None).render_as_string(hide_password=False)
    finally:
        # Processes killed without a goodbye may leave sessions behind; the role cannot go while they last.
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name)
        await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
        await admin.close()


@dataclass(frozen=True)
class Keys:
    """Every key a deployment holds, as settings (fresh for the test, so nothing is found elsewhere)."""

    gateway_signing: str
    gateway_public: str
    audit: str
    links: str
    encryption: str

    @classmethod
    def generate(cls) -> "Keys":
        import base64
        import secrets

        signing, public = gateway_keys.generate("hosts-gateway")
        return cls(
            gateway_signing=signing,
            gateway_public=public,
            audit=audit_keys.generate("hosts-audit"),
            links=f"hosts-links:{base64.b64encode(secrets.token_bytes(32)).decode()}",
            encryption=f"hosts-payloads:{base64.b64encode(secrets.token_bytes(32)).decode()}",
        )


def shared_settings(
    *, database_url: str, temporal_address: str, task_queue: str, smtp_port: int, public_url: str, keys: Keys
) -> dict[str, str]:
    """What every host is told, and all it shares: the database, Temporal, the SMTP server, the keys.
    The gateway's private key is not here: it goes to the gateways alone (`gateway_settings`)."""
    return {
        "COUNTERSIGN_DATABASE_URL": database_url,
        "COUNTERSIGN_TEMPORAL_ADDRESS": temporal_address,
        "COUNTERSIGN_TASK_QUEUE": task_queue,
        "COUNTERSIGN_LLM": "rules",
        "COUNTERSIGN_SMTP_HOST": "127.0.0.1",
        "COUNTERSIGN_SMTP_PORT": str(smtp_port),
        "COUNTERSIGN_PUBLIC_URL": public_url,
        "COUNTERSIGN_GATEWAY_PUBLIC_KEYS": keys.gateway_public,
        "COUNTERSIGN_AUDIT_KEYS": keys.audit,
        "COUNTERSIGN_LINK_KEYS": keys.links,
        "COUNTERSIGN_ENCRYPTION_KEYS": keys.encryption,
    }


def gateway_settings(shared: Mapping[str, str], keys: Keys, port: int) -> dict[str, str]:
    return {
        **shared,
        "COUNTERSIGN_GATEWAY_SIGNING_KEYS": keys.gateway_signing,
        "COUNTERSIGN_API_HOST": "127.0.0.1",
        "COUNTERSIGN_API_PORT": str(port),
    }


def host_environment(settings: Mapping[str, str], data_dir: Path) -> dict[str, str]:
    """This process's environment less every COUNTERSIGN_* variable (the suite's session keys among
    them), plus `settings` and the host's own data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTERSIGN_")}
    env.update(settings, COUNTERSIGN_DATA_DIR=str(data_dir))
    return env


@dataclass
class Host:
    """One `countersign <command>` process on a "machine" of its own: `root` is its working directory
    (so no .env of the checkout is read), `root/data` its data dir, `root/host.log` its output."""

    name: str
    root: Path
    command: list[str]
    settings: Mapping[str, str]
    port: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "host.log"

    @property
    def url(self) -> str:
        assert self.port is not None, f"{self.name} serves no HTTP"
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Host":
        self.data_dir.mkdir(parents=True)  # empty: whatever it holds later, the process wrote
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "countersign", *self.command],
                cwd=self.root,
                env=host_environment(self.settings, self.data_dir),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> int:
        """SIGKILL: no shutdown, no goodbye to Temporal or PostgreSQL. The exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        return self.process.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM: a worker lets running activities finish (COUNTERSIGN_WORKER_SHUTDOWN_GRACE_SECONDS)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def state_files(self) -> list[str]:
        """What the process left in its data dir, relative paths: a host that shares nothing leaves
        nothing there that another host would need."""
        return sorted(str(p.relative_to(self.data_dir)) for p in self.data_dir.rglob("*") if p.is_file())


def stop_all(hosts: list[Host]) -> None:
    """Every host told to stop at once, then waited for: their shutdowns overlap."""
    for host in hosts:
        host.terminate()
    for host in hosts:
        host.stop()


def gateway(root: Path, name: str, settings: Mapping[str, str]) -> Host:
    port = int(settings["COUNTERSIGN_API_PORT"])
    return Host(name, root / name, ["api"], settings, port=port)


def worker(root: Path, name: str, settings: Mapping[str, str]) -> Host:
    return Host(name, root / name, ["worker"], settings)


async def until_healthy(host: Host, timeout: float = 300) -> None:
    """GET /healthz answers 200; a process that exits first fails at once, with its last lines."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with httpx.AsyncClient(base_url=host.url, timeout=5) as http:
        while True:
            if not host.running():
                raise AssertionError(f"{host.name} exited before it served:\n{host.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/healthz")).status_code == 200:
                    return
            if loop.time() > deadline:
                raise AssertionError(f"{host.name} not healthy within {timeout}s:\n{host.tail()}")
            await asyncio.sleep(0.2)


def run_cli(args: list[str], root: Path, settings: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`countersign <args>` on an operator's machine of its own (`root`), with the same settings."""
    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "countersign", *args],
        cwd=root,
        env=host_environment(settings, data_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def add_principal_with_cli(
    root: Path, settings: Mapping[str, str], name: str, roles: str, tenant: str
) -> str:
    """`countersign principal add`: the bootstrap of the first ADMIN. Its API key (stdout's last line)."""
    done = run_cli(["principal", "add", name, "--roles", roles, "--tenant", tenant], root, settings)
    assert done.returncode == 0, f"principal add {name}: exit {done.returncode}\n{done.stderr}"
    return done.stdout.strip().splitlines()[-1]


__all__ = [
    "Host",
    "Keys",
    "add_principal_with_cli",
    "free_port",
    "gateway",
    "gateway_settings",
    "postgres_role_schema",
    "run_cli",
    "shared_settings",
    "stop_all",
    "until_healthy",
    "worker",
]

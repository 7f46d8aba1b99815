"""`countersign up` as a user runs it: the whole stack in subprocesses, a worker killed and restarted
under it, stopped and started again on the same data dir, with a request waiting across both."""

import asyncio
import base64
import email
import email.message
import email.policy
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from countersign.config.settings import Settings
from countersign.stack.dev_server import dev_server_args, temporal_binary
from countersign.stack.mail_sink import deliveries
from tests.helpers import outbox_messages

KEY_LINE = re.compile(r"^\s+(demo-[a-z0-9-]+)\s+\S+\s+(cs_\S+)\s*$")
PROCESSES = re.compile(r"^Processes:\s+Temporal dev server (\d+), worker (\d+), gateway (\d+) ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.api_port, self.temporal_port, self.ui_port = free_port(), free_port(), free_port()
        self.smtp_port = free_port()
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self) -> list[str]:
        args = [sys.executable, "-m", "countersign", "up", "--data-dir", str(self.data_dir)]
        args += ["--api-port", str(self.api_port), "--temporal-port", str(self.temporal_port)]
        args += ["--ui-port", str(self.ui_port), "--mail-port", str(self.smtp_port)]
        env = {**os.environ, "COLUMNS": "200"}
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        lines: list[str] = []
        assert self.process.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Countersign is ready" in line:
                self.output = lines
                return lines
        raise AssertionError("stack did not become ready:\n" + "".join(lines))

    def read_until(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """Read `up`'s output up to the first line matching `pattern` (it prints a line per restart)."""
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.output.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line matching {pattern!r}:\n" + "".join(self.output))

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.process = None
        return code


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path / "data")
    yield stack
    if stack.process is not None and stack.process.poll() is None:
        # SIGTERM, so that up stops its children (they run in sessions of their own); SIGKILL would
        # leave them running after a failed test.
        stack.process.terminate()
        try:
            stack.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stack.process.kill()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_up_survives_a_restart_with_a_request_waiting(stack: Stack) -> None:
    lines = stack.start()
    keys = dict(m.groups() for m in map(KEY_LINE.match, lines) if m)
    assert {"demo-requester", "demo-manager", "demo-finance", "demo-admin"} <= set(keys)
    text = "".join(lines)
    assert f"http://127.0.0.1:{stack.api_port}/docs" in text
    assert f"http://127.0.0.1:{stack.ui_port}" in text
    assert (stack.data_dir / "temporal.db").exists()

    def auth(who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys[who]}"}

    # The gateway knows the Web UI's port given to `up` (not 8233): the inbox links there, and the Web UI,
    # from its own origin, may call /codec.
    ui = f"http://127.0.0.1:{stack.ui_port}"
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        config = http.get("/ui/config", headers=auth("demo-manager"))
        assert config.status_code == 200, config.text
        assert config.json()["temporal_ui_url"] == ui
        preflight = http.options(
            "/codec/decode",
            headers={"Origin": ui, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.headers.get("access-control-allow-origin") == ui, preflight.text

    with httpx.Client(base_url=stack.url, timeout=30) as http:
        submitted = http.post(
            "/workflows",
            json={"text": "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"},
            headers=auth("demo-requester"),
        )
        assert submitted.status_code == 201, submitted.text
        workflow_id = submitted.json()["workflow_id"]
        for _ in range(100):
            state = http.get(f"/workflows/{workflow_id}", headers=auth("demo-requester")).json()["state"]
            if state == "WAITING_FOR_APPROVAL":
                break
            time.sleep(0.2)
        assert state == "WAITING_FOR_APPROVAL"

    # The manager's email links to this gateway, on the port given to `up` (not 8000).
    def links_here() -> bool:
        for path in (stack.data_dir / "mailbox").glob("*.eml"):
            mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            body = mail.get_body(("plain",))
            text = body.get_content() if isinstance(body, email.message.EmailMessage) else ""
            if workflow_id in str(mail["Subject"]) and f"{stack.url}/links/" in text:
                return True
        return False

    for _ in range(100):
        if links_here():
            break
        time.sleep(0.2)
    assert links_here(), "no email with links to this gateway"

    # The worker SIGKILLed (an OOM kill, a crash): `up` says so, in its output and the worker's log,
    # starts another, and the gateway answers throughout.
    (processes,) = [m for m in map(PROCESSES.match, lines) if m]
    temporal_pid, worker_pid, gateway_pid = map(int, processes.groups())
    os.kill(worker_pid, signal.SIGKILL)
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        for _ in range(5):  # within the restart's one-second wait
            assert http.get("/healthz").status_code == 200
            time.sleep(0.1)
    stack.read_until(rf"^worker \(pid {worker_pid}\) was killed by SIGKILL after [\d.]+s; restarting in 1s")
    new_pid = int(stack.read_until(r"^worker restarted \(pid (\d+)\)").group(1))
    assert new_pid != worker_pid
    os.kill(new_pid, 0)  # it is running
    for pid in (temporal_pid, gateway_pid):
        os.kill(pid, 0)  # and the others were left alone
    log = (stack.data_dir / "logs" / "worker.log").read_text()
    assert f"countersign up: pid {worker_pid} was killed by SIGKILL after " in log
    assert f"countersign up: started again (pid {new_pid})" in log
    # A request submitted now is planned by the new worker. (The one waiting is approved below, after
    # a restart of the whole stack.)
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        again = http.post(
            "/workflows",
            json={"text": "Follow up with Acme Supplies (orders@acme.example) about the late delivery"},
            headers=auth("demo-requester"),
        )
        assert again.status_code == 201, again.text
        second_id = again.json()["workflow_id"]
        for _ in range(150):
            # 503 while the restarted worker is not polling yet (a loaded machine takes a while).
            seen = http.get(f"/workflows/{second_id}", headers=auth("demo-requester"))
            state = seen.json()["state"] if seen.status_code == 200 else f"HTTP {seen.status_code}"
            if state == "WAITING_FOR_APPROVAL":
                break
            time.sleep(0.2)
        assert state == "WAITING_FOR_APPROVAL"
    assert stack.stop() == 0
    for port in (stack.api_port, stack.temporal_port, stack.ui_port):
        assert not port_open(port), f"port {port} still open after stop"

    again = "".join(stack.start())
    assert "cs_" not in again, "keys are printed on first run only"
    # ... but it says how to get one again, and `principal rotate` gives a demo principal a working key.
    assert f"countersign principal rotate ID --data-dir {stack.data_dir}" in again, again
    manager_id = re.search(r"^\s+demo-manager\s+MANAGER\s+(\S+)\s*$", again, re.MULTILINE)
    assert manager_id is not None, again
    rotated = subprocess.run(
        [
            *(sys.executable, "-m", "countersign", "principal", "rotate", manager_id.group(1)),
            *("--data-dir", str(stack.data_dir)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rotated.returncode == 0, rotated.stderr
    keys["demo-manager"] = rotated.stdout.strip().splitlines()[-1]
    with httpx.Client(base_url=stack.url, timeout=60) as http:
        view = http.get(f"/workflows/{workflow_id}", headers=auth("demo-requester")).json()
        assert view["state"] == "WAITING_FOR_APPROVAL"
        approved = http.post(
            f"/workflows/{workflow_id}/approve?wait_seconds=30",
            json={"decision": "approved", "notes": "after restart", "proposal_version": 1},
            headers=auth("demo-manager"),
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["state"] == "ACTION_EXECUTED"
    # The action's one email, and the demo principals' notifications: pending to the manager (one per
    # waiting request: two), and the outcome to the requester (sent just after the approval's answer).
    deadline = time.monotonic() + 20
    while True:
        messages = [m.text for m in asyncio.run(outbox_messages(stack.data_dir))]
        if len(messages) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # Kept in the database, not in files: the data dir holds no outbox, records or notifications.
    assert not {"outbox", "records.db", "notifications"} & {p.name for p in stack.data_dir.iterdir()}
    assert sum("To: sales@abclogistics.com" in m for m in messages) == 1
    # ... and each went over SMTP to the stack's own sink, once.
    received = deliveries(stack.data_dir)
    assert sum(d["to"] == ["sales@abclogistics.com"] for d in received) == 1
    assert len({d["message_id"] for d in received}) == len(received)
    assert sum("To: demo-manager@example.com" in m for m in messages) == 2
    assert sum("To: demo-requester@example.com" in m for m in messages) == 1

    # The Web UI's and the CLI's query language sees our search attributes.
    listed = subprocess.run(
        [
            temporal_binary(),
            "workflow",
            "list",
            "--address",
            f"127.0.0.1:{stack.temporal_port}",
            "--query",
            "CountersignState='ACTION_EXECUTED'",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert workflow_id in listed.stdout, listed.stdout + listed.stderr
    assert stack.stop() == 0


@pytest.mark.parametrize(
    "busy", ["--temporal-port", "--ui-port", "--api-port", "--mail-port", "COUNTERSIGN_SMTP_SINK_PORT"]
)
def test_up_refuses_a_busy_port_before_it_makes_anything(stack: Stack, busy: str) -> None:
    """Each port `up` needs is checked before it makes keys or the demo principals, whose keys it shows
    only on the run that makes them: a run stopped by a busy port must leave the next run a first run."""
    ports = {
        "--temporal-port": stack.temporal_port,
        "--ui-port": stack.ui_port,
        "--api-port": stack.api_port,
        "--mail-port": stack.smtp_port,
    }
    args = [sys.executable, "-m", "countersign", "up", "--data-dir", str(stack.data_dir)]
    env = {**os.environ, "COLUMNS": "80"}
    for flag, port in ports.items():
        if flag == "--mail-port" and busy == "COUNTERSIGN_SMTP_SINK_PORT":
            env[busy] = str(port)  # the variable still works, and the message names the flag
        else:
            args += [flag, str(port)]
    flag = "--mail-port" if busy == "COUNTERSIGN_SMTP_SINK_PORT" else busy
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[flag]))
        taken.listen()
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    for made in ("audit.db", "keys", "temporal.db", "mailbox"):
        assert not (stack.data_dir / made).exists(), f"{made} was made before the port check"
    # One line, naming the port and the flag that moves it, however narrow the terminal.
    line = rf"^error: port {ports[flag]} \([^)]+\) is in use; pick another with {flag}$"
    assert re.search(line, done.stdout, re.MULTILINE), done.stdout


def test_up_against_an_existing_temporal_server(stack: Stack) -> None:
    """`--temporal-address`: no embedded server; our search attributes are registered on the existing one."""
    server = subprocess.Popen(
        [
            temporal_binary(),
            *("server", "start-dev", "--headless", "--ip", "127.0.0.1"),
            *("--port", str(stack.temporal_port), "--log-level", "error"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        args = [sys.executable, "-m", "countersign", "up", "--data-dir", str(stack.data_dir)]
        args += ["--api-port", str(stack.api_port), "--temporal-address", f"127.0.0.1:{stack.temporal_port}"]
        stack.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert stack.process.stdout is not None
        lines = []
        for line in stack.process.stdout:
            lines.append(line)
            if "Countersign is ready" in line:
                break
        output = "".join(lines)
        assert "Countersign is ready" in output, output
        assert "Temporal Web UI" not in output  # no embedded server, so no UI of ours to point at
        assert not (stack.data_dir / "temporal.db").exists()
        listed = subprocess.run(
            [
                temporal_binary(),
                "operator",
                "search-attribute",
                "list",
                "--address",
                f"127.0.0.1:{stack.temporal_port}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "CountersignAwaitingRole" in listed.stdout, listed.stdout + listed.stderr
        assert stack.stop() == 0
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_web_ui_decodes_through_the_gateway_when_payloads_are_encrypted(tmp_path: Path) -> None:
    key = base64.b64encode(bytes(range(32))).decode()
    plain = dev_server_args(Settings(_env_file=None, data_dir=tmp_path))
    encrypted = dev_server_args(
        Settings(_env_file=None, data_dir=tmp_path, api_port=8123, encryption_keys=f"k1:{key}")
    )
    assert "--ui-codec-endpoint" not in plain
    assert encrypted[encrypted.index("--ui-codec-endpoint") + 1] == "http://127.0.0.1:8123/codec"


EXAMPLE_AGENT = Path(__file__).resolve().parents[2] / "examples" / "refund-agent" / "refund_agent.py"


def test_the_example_agent_refunds_once_a_manager_approves(stack: Stack) -> None:
    """The README's "Approvals for your agent": the decorator example against `countersign up`."""
    lines = stack.start()
    keys = dict(m.groups() for m in map(KEY_LINE.match, lines) if m)
    env = {
        **os.environ,
        "COUNTERSIGN_API_URL": stack.url,
        "COUNTERSIGN_API_KEY": keys["demo-requester"],
        "COUNTERSIGN_ADMIN_KEY": keys["demo-admin"],
    }
    agent = subprocess.Popen(
        [sys.executable, str(EXAMPLE_AGENT), "A-1001", "40", "--timeout", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        manager = {"Authorization": f"Bearer {keys['demo-manager']}"}
        with httpx.Client(base_url=stack.url, timeout=30) as http:
            # The proposal reaches the manager's inbox; nothing has been refunded yet.
            deadline = time.monotonic() + 60
            rows: list[dict[str, object]] = []
            while time.monotonic() < deadline and not rows:
                inbox = http.get("/approvals/inbox", headers=manager).json()["items"]
                rows = [row for row in inbox if row["kind"] == "request"]
                time.sleep(0.3)
            (row,) = rows
            workflow_id = str(row["workflow_id"])
            view = http.get(f"/workflows/{workflow_id}", headers=manager).json()
            assert (view["proposal"]["tool"], view["proposal"]["args"]) == (
                "refund_payment",
                {"order_id": "A-1001", "amount": 40.0},
            )
            assert view["proposal"]["summary"] == "Refund 40.00 for order A-1001"
            approved = http.post(
                f"/workflows/{workflow_id}/approve",
                json={"decision": "approved", "proposal_version": 1},
                headers=manager,
            )
            assert approved.status_code == 200, approved.text
            output, _ = agent.communicate(timeout=120)
            assert agent.returncode == 0, output
            assert "refunding 40.00 on A-1001" in output
            assert "refunded: {'refund_id': 'rf-A-1001'" in output
            final = http.get(f"/workflows/{workflow_id}", params={"wait_seconds": 30}, headers=manager).json()
            assert final["state"] == "ACTION_EXECUTED" and final["execution"] == "caller"
            assert final["result"]["result"]["refund_id"] == "rf-A-1001"
            assert ("action_executed", "CALLER") in [(e["event"], e["actor_kind"]) for e in final["audit"]]
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()

"""`countersign audit anchor` and `countersign audit verify --anchors`, through Typer's CliRunner, with
the session's audit key in the environment (tests/conftest.py) as the CLI finds it."""

import asyncio
import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner, Result

from countersign.cli.main import app
from countersign.models.audit import AuditAnchor
from countersign.store.audit_anchors import Anchors
from tests.countersign.test_audit_cli import fill
from tests.helpers import TEST_TRUST


@pytest.fixture(autouse=True)
def _default_audit_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COUNTERSIGN_AUDIT_DATABASE_URL", raising=False)


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400", **(env or {})})


def intruder(data_dir: Path, statement: str) -> None:
    with sqlite3.connect(data_dir / "audit.db") as db:
        db.execute(statement)
    db.close()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """wf-1 (6 events, tenant acme) and wf-2 (3 events, tenant globex)."""
    asyncio.run(fill(tmp_path))
    return tmp_path


def test_anchors_in_a_file_find_truncated_and_deleted_chains(log: Path) -> None:
    anchors = log / "elsewhere" / "anchors.jsonl"
    anchors.parent.mkdir()
    for _ in range(2):
        done = run("audit", "anchor", "--out", str(anchors), "--data-dir", str(log))
        assert done.exit_code == 0, done.output
        assert "anchored 2 chains at " in done.stderr and str(anchors) in done.stderr
        public = TEST_TRUST.audit.anchor_public_key("test-audit")  # what to publish, to pin it
        assert f"signed with audit key test-audit (anchor public key {public})" in done.stderr
    lines = anchors.read_text().splitlines()
    assert len(lines) == 2  # appended, one JSON line each
    anchor = AuditAnchor.model_validate_json(lines[0])
    assert {name: head.seq for name, head in anchor.chains.items()} == {"wf-1": 5, "wf-2": 2}

    clean = run("audit", "verify", "--anchors", str(anchors), "--data-dir", str(log))
    assert clean.exit_code == 0, clean.output
    assert "2 chains, 9 events, 0 broken; 2 anchors, 0 not valid: intact" in clean.stdout

    intruder(log, "DELETE FROM audit_events WHERE workflow_id = 'wf-1' AND seq >= 4")
    intruder(log, "DELETE FROM audit_events WHERE workflow_id = 'wf-2'")
    # What anchors add: without them, what is left is a valid log.
    alone = run("audit", "verify", "--data-dir", str(log))
    assert alone.exit_code == 0 and "1 chains, 4 events, 0 broken: intact" in alone.stdout
    found = run("audit", "verify", "--anchors", str(anchors), "--data-dir", str(log))
    assert found.exit_code == 1, found.output
    out = found.stdout
    assert "BROKEN workflow wf-1 at seq 4: chain truncated: the anchor of " in out
    assert "holds it up to seq 5, the log ends at seq 3" in out
    assert "BROKEN workflow wf-2 at seq 0: chain deleted: the anchor of " in out
    assert "1 chains, 4 events, 2 broken; 2 anchors, 0 not valid: tampered" in out


def test_an_edited_anchor_is_reported(log: Path) -> None:
    anchors = log / "anchors.jsonl"
    assert run("audit", "anchor", "--out", str(anchors), "--data-dir", str(log)).exit_code == 0
    # The intruder trims the log and the anchor alike.
    intruder(log, "DELETE FROM audit_events WHERE workflow_id = 'wf-2' AND seq = 2")
    with sqlite3.connect(log / "audit.db") as db:
        (link,) = db.execute(
            "SELECT hash FROM audit_events WHERE workflow_id = 'wf-2' AND seq = 1"
        ).fetchone()
    db.close()
    anchor = json.loads(anchors.read_text())
    anchor["chains"]["wf-2"] = {"link": link, "seq": 1}
    anchors.write_text(json.dumps(anchor) + "\n")
    done = run("audit", "verify", "--anchors", str(anchors), "--data-dir", str(log))
    assert done.exit_code == 1, done.output
    assert (
        f"BROKEN anchor at line 1 of {anchors}: its signature does not verify: the anchor was changed or "
        "forged" in done.stdout
    )
    assert "2 chains, 8 events, 0 broken; 1 anchors, 1 not valid: tampered" in done.stdout


def test_anchor_to_stdout_leaves_a_broken_chain_out(log: Path) -> None:
    intruder(log, "UPDATE audit_events SET actor = 'mallory' WHERE workflow_id = 'wf-1' AND seq = 3")
    done = run("audit", "anchor", "--data-dir", str(log))
    assert done.exit_code == 1
    anchor = AuditAnchor.model_validate_json(done.stdout)
    assert list(anchor.chains) == ["wf-2"]
    assert "BROKEN workflow wf-1 at seq 3: " in done.stderr and "(left out of the anchor)" in done.stderr
    assert "anchored 1 chains at " in done.stderr and " to stdout" in done.stderr
    # What was printed is a valid anchor.
    assert Anchors.read(done.stdout.splitlines(), TEST_TRUST.audit).problems == []


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, bytes]]] = []
    status: ClassVar[int] = 201

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("Handler", (Receiver,), {"received": [], "status": 201})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", handler
    server.shutdown()
    server.server_close()


def test_anchor_posts_to_a_url(log: Path, receiver: tuple[str, type[Receiver]]) -> None:
    base, handler = receiver
    done = run("audit", "anchor", "--url", f"{base}/anchors", "--data-dir", str(log))
    assert done.exit_code == 0, done.output
    [(path, kind, body)] = handler.received
    assert (path, kind) == ("/anchors", "application/json")
    anchors = Anchors.read([body.decode()], TEST_TRUST.audit)
    assert anchors.problems == [] and set(anchors.valid[0][1].chains) == {"wf-1", "wf-2"}
    assert f"to {base}/anchors" in done.stderr
    # An anchor store that does not take it: said, and exit 2.
    handler.status = 503
    refused = run("audit", "anchor", "--url", f"{base}/anchors", "--data-dir", str(log))
    assert refused.exit_code == 2
    assert f"error: anchor URL {base}/anchors: Server error '503 Service Unavailable'" in refused.stderr


def test_verify_and_anchor_need_the_audit_key(log: Path) -> None:
    keyless = {"COUNTERSIGN_AUDIT_KEYS": None}
    for command in ("verify", "anchor"):
        done = run("audit", command, "--data-dir", str(log), env=keyless)
        assert done.exit_code == 2
        assert "error: the audit log has no key: set COUNTERSIGN_AUDIT_KEYS" in done.stderr
    # Export reads only: no key needed, and every row names its key.
    exported = run("audit", "export", "--data-dir", str(log), env=keyless)
    assert exported.exit_code == 0
    assert {json.loads(line)["key_id"] for line in exported.stdout.splitlines()} == {"test-audit"}
    missing = run("audit", "verify", "--anchors", str(log / "nowhere.jsonl"), "--data-dir", str(log))
    assert missing.exit_code == 2 and "error: anchors " in missing.stderr

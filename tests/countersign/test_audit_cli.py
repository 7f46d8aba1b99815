"""`countersign audit verify` and `countersign audit export`, run as a user runs them: in a subprocess."""

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from countersign.models.audit import StoredAuditEvent
from countersign.store.audit_store import AuditStore
from countersign.store.execution_ledger import ExecutionLedger
from tests.countersign.test_cli import countersign
from tests.helpers import TEST_TRUST
from tests.store.test_audit_store import EVENTS, batch


@pytest.fixture(autouse=True)
def _default_audit_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own COUNTERSIGN_AUDIT_DATABASE_URL must not redirect these tests (or subprocesses)."""
    monkeypatch.delenv("COUNTERSIGN_AUDIT_DATABASE_URL", raising=False)


async def fill(data_dir: Path) -> None:
    # The session's audit key: the one the CLI finds in the environment (tests/conftest.py).
    async with await AuditStore.open(f"sqlite:///{data_dir / 'audit.db'}", keyring=TEST_TRUST.audit) as store:
        await store.append(batch(0, EVENTS, workflow_id="wf-1"))
        await store.append(batch(0, EVENTS[:3], workflow_id="wf-2", tenant="globex"))


async def test_verify_passes_a_clean_log_and_names_a_tampered_link(tmp_path: Path) -> None:
    await fill(tmp_path)
    clean = countersign("audit", "verify", "--data-dir", str(tmp_path))
    assert clean.returncode == 0, clean.stderr
    assert "2 chains, 9 events, 0 broken" in clean.stdout

    with sqlite3.connect(tmp_path / "audit.db") as db:
        db.execute("UPDATE audit_events SET actor = 'mallory' WHERE workflow_id = 'wf-1' AND seq = 4")
    db.close()
    tampered = countersign("audit", "verify", "--data-dir", str(tmp_path))
    assert tampered.returncode == 1, tampered.stderr
    assert "BROKEN workflow wf-1 at seq 4" in tampered.stdout
    assert "1 broken" in tampered.stdout and "Traceback" not in tampered.stderr
    # The other chain, checked alone, is intact.
    only = countersign("audit", "verify", "--workflow", "wf-2", "--data-dir", str(tmp_path))
    assert only.returncode == 0 and "1 chains, 3 events, 0 broken" in only.stdout


async def test_export_jsonl_to_a_file_and_csv_to_stdout(tmp_path: Path) -> None:
    await fill(tmp_path)
    out = tmp_path / "audit.jsonl"
    done = countersign("audit", "export", "--format", "jsonl", "--out", str(out), "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "exported 9 audit events" in done.stderr
    exported = [StoredAuditEvent.model_validate_json(line) for line in out.read_text().splitlines()]
    assert [(e.workflow_id, e.seq) for e in exported] == [("wf-1", n) for n in range(6)] + [
        ("wf-2", n) for n in range(3)
    ]

    table = countersign(
        "audit", "export", "--format", "csv", "--tenant", "globex", "--data-dir", str(tmp_path)
    )
    assert table.returncode == 0, table.stderr
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert [(r["workflow_id"], r["seq"], r["tenant"]) for r in rows] == [
        ("wf-2", str(n), "globex") for n in range(3)
    ]
    assert json.loads(rows[1]["data"]) == EVENTS[1].data and rows[0]["data"] == ""

    refused = countersign("audit", "export", "--format", "xml", "--data-dir", str(tmp_path))
    assert refused.returncode == 2


def test_an_unreachable_database_is_reported_without_its_password(tmp_path: Path) -> None:
    url = "postgresql://audit:s3cret-pw@127.0.0.1:9/countersign"  # nothing listens on port 9
    done = countersign("audit", "verify", env={"COUNTERSIGN_AUDIT_DATABASE_URL": url})
    assert done.returncode == 2
    assert "postgresql://audit:***@127.0.0.1:9/countersign" in done.stderr
    assert "s3cret-pw" not in done.stderr + done.stdout and "Traceback" not in done.stderr


async def test_ledger_list_shows_attempts_and_outcomes(tmp_path: Path) -> None:
    async with await ExecutionLedger.open(f"sqlite:///{tmp_path / 'audit.db'}") as ledger:

        async def begin(key: str) -> int:
            taken = await ledger.begin(
                key=key,
                workflow_id=key[:5],
                tool="send_email",
                args_sha256="0" * 64,
                owner="worker-1",
                ttl=timedelta(seconds=20),
            )
            return taken.fence

        a, b = await begin("req-a:v1"), await begin("req-b:v1")
        await ledger.succeed("req-a:v1", a, {"message_id": "<m1@x>"}, datetime.now(UTC))
        await ledger.fail("req-b:v1", b, "OSError: connection refused")
        await begin("req-b:v1")

    wide = {"COLUMNS": "200"}  # one table row per line
    listed = countersign("ledger", "list", "--data-dir", str(tmp_path), env=wide)
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if "req-" in line]
    assert len(rows) == 2
    assert any("req-a:v1" in r and "succeeded" in r and "m1@x" in r for r in rows)
    # Retried after a failure: started again, and the last error still shown.
    assert any("req-b:v1" in r and "started" in r and " 2 " in r and "connection refused" in r for r in rows)

    succeeded = countersign("ledger", "list", "--status", "succeeded", "--data-dir", str(tmp_path), env=wide)
    assert "req-a:v1" in succeeded.stdout and "req-b:v1" not in succeeded.stdout
    wrong = countersign("ledger", "list", "--status", "done", "--data-dir", str(tmp_path))
    assert wrong.returncode == 2 and "started, succeeded or failed" in wrong.stderr

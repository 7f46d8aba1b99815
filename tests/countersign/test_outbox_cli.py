"""`countersign outbox list` and `countersign outbox show`, run as a user runs them: in a subprocess, on
the data dir's default database."""

import re
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from countersign.store.sql import default_url
from countersign.store.tool_effects import ToolEffects
from countersign.tools.args import SendEmailArgs
from countersign.tools.builtin import send_email
from countersign.tools.registry import ToolContext
from tests.countersign.test_cli import countersign


@pytest.fixture(autouse=True)
def _default_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own COUNTERSIGN_DATABASE_URL must not redirect these tests (or subprocesses)."""
    monkeypatch.delenv("COUNTERSIGN_DATABASE_URL", raising=False)
    monkeypatch.delenv("COUNTERSIGN_AUDIT_DATABASE_URL", raising=False)


async def test_list_shows_what_was_kept_and_sent_and_show_prints_the_message(tmp_path: Path) -> None:
    effects = ToolEffects(default_url(tmp_path))
    try:
        for n, key in enumerate(("req-a:v1", "req-b:v1")):
            args = SendEmailArgs(to=f"pat{n}@example.com", subject=f"Pricing {n}", body="Hello Pat.\n")
            await send_email(args, ToolContext(data_dir=tmp_path, idempotency_key=key, effects=effects))
        await (await effects.outbox()).mark_sent("req-a:v1")
    finally:
        await effects.close()

    listed = countersign("outbox", "list", "--data-dir", str(tmp_path), env={"COLUMNS": "200"})
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if "req-" in line]
    # Newest first; kept (both) and sent (the first only) show when.
    assert "req-b:v1" in rows[0] and "req-a:v1" in rows[1]
    assert "pat0@example.com" in rows[1] and "Pricing 0" in rows[1]
    moments = [len(re.findall(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", row)) for row in rows]
    assert moments == [1, 2]

    shown = countersign("outbox", "show", "req-b:v1", "--data-dir", str(tmp_path))
    assert shown.returncode == 0, shown.stderr
    message = message_from_bytes(shown.stdout.encode(), policy=policy.default)
    assert message["To"] == "pat1@example.com" and message["X-Countersign-Idempotency-Key"] == "req-b:v1"

    missing = countersign("outbox", "show", "req-c:v1", "--data-dir", str(tmp_path))
    assert missing.returncode == 1 and "req-c:v1" in missing.stderr

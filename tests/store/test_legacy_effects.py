"""Importing a data dir as the release before issue 21 left it (tests/store/legacy_effects_writer.py holds
that release's writing code): the outbox with its sent marks, records.db, the notification records and
the Teams channel's posted marks reach the database, nothing is lost, a retried send of a sent key
sends nothing, records are found by their key; twice, or by two processes at once, imports once; the
files are set aside."""

import asyncio
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest

from countersign.activities.teams_channel import posted_mark
from countersign.models.notifications import Notification, NotificationKind
from countersign.stack.mail_sink import MailSink, deliveries
from countersign.store.delivery_marks import DeliveryMarks
from countersign.store.legacy.effects_files import LegacyEffectsError, import_effects
from countersign.store.notification_log import NotificationLog
from countersign.store.outbox import OutboxStore
from countersign.store.tool_effects import ToolEffects
from countersign.store.tool_records import ToolRecordStore
from countersign.tools.args import CreateTaskArgs, SendEmailArgs
from countersign.tools.builtin import build_email, create_task, send_email
from countersign.tools.effects import canonical_args_json, record_id
from countersign.tools.integrations import Integrations
from countersign.tools.registry import ToolContext
from countersign.tools.smtp import SmtpConfig
from tests.conftest import Location
from tests.store import legacy_effects_writer as old

SENT = "req-default-sent:v1"
UNSENT = "req-default-unsent:v1"
DIGEST = "digest:p-ann:0123456789abcdef0123456789abcdef"
TASK = "req-default-task:v1"
HOOK = "req-default-hook:v1"
EMAIL = SendEmailArgs(to="pat@example.com", subject="Pricing", body="Hello Pat.\n")
TASK_ARGS = CreateTaskArgs(title="Call ABC Logistics", assignee="sam")
TEAMS_HOOK = "https://corp.webhook.office.com/webhookb2/managers-secret"


@dataclass
class OldDataDir:
    path: Path
    emails: dict[str, bytes]
    notes: list[dict[str, object]]


def notification(n: int) -> Notification:
    return Notification(
        key=f"req-default-task:n{n}",
        workflow_id="req-default-task",
        tenant="default",
        kind=NotificationKind.PENDING if n == 1 else NotificationKind.OUTCOME,
        subject="task create_task for Riley [req-default-task]",
        body="Step 1 of 1 waits for MANAGER.",
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> OldDataDir:
    """A data dir as the old worker left it: two actions' emails (one accepted by the server), a digest
    (it carries no args digest), a write cut short, two records and two notification records."""
    path = tmp_path / "data"
    emails = {}
    for key in (SENT, UNSENT):
        written = old.write_message(path, key, build_email(EMAIL, key))
        emails[key] = written.read_bytes()
    old.mark_sent(old.outbox_path(path, SENT))
    digest = build_email(EMAIL, DIGEST)
    del digest["X-Countersign-Args-SHA256"]
    emails[DIGEST] = old.write_message(path, DIGEST, digest).read_bytes()
    (path / "outbox" / ".0123.eml.part").write_bytes(b"From: half a mess")
    old.insert_record(
        path,
        tool="create_task",
        key=TASK,
        record_id=record_id("TASK", TASK),
        args_json=canonical_args_json(TASK_ARGS),
    )
    old.insert_record(path, tool="post_webhook", key=HOOK, record_id="HOOK-1A2B3C4D:200", args_json="{}")
    notes = []
    for n in (1, 2):
        recipients = [{"id": "p-mgr", "name": "Morgan", "email": "morgan@corp.example"}]
        old.write_notification(path, notification(n).model_dump(mode="json"), recipients)
        notes.append({**notification(n).model_dump(mode="json"), "recipients": recipients})
    (path / "notifications" / "half.tmp").write_text("{")
    old.mark_teams_post(path, "req-default-task:n1", TEAMS_HOOK)
    return OldDataDir(path, emails, notes)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[MailSink]:
    with MailSink(tmp_path / "sink") as running:
        yield running


async def test_everything_is_imported_and_acts_as_before(
    data_dir: OldDataDir, location: Location, sink: MailSink, tmp_path: Path
) -> None:
    assert await import_effects(data_dir.path, location.url, schema=location.schema) == 8
    # Set aside, whole, so nothing reads them again.
    for name in ("outbox", "records.db", "notifications", "teams"):
        assert not (data_dir.path / name).exists()
        assert (data_dir.path / f"{name}.imported").exists()
    assert (data_dir.path / "outbox.imported" / ".0123.eml.part").exists()

    async with await OutboxStore.open(location.url, schema=location.schema) as outbox:
        stored = {m.key: m for m in await outbox.messages()}
        assert {key: m.raw for key, m in stored.items()} == data_dir.emails
        assert stored[SENT].sent_at is not None
        assert stored[UNSENT].sent_at is None and stored[DIGEST].sent_at is None
    async with await NotificationLog.open(location.url, schema=location.schema) as log:
        assert await log.records() == data_dir.notes
    # The card the old worker posted is marked: a retried delivery does not post it again.
    async with await DeliveryMarks.open(location.url, schema=location.schema) as marks:
        assert await marks.marked("teams", posted_mark("req-default-task:n1", TEAMS_HOOK))
        assert not await marks.marked("teams", posted_mark("req-default-task:n2", TEAMS_HOOK))

    effects = ToolEffects(location.url, schema=location.schema)
    smtp = Integrations(smtp=SmtpConfig(host="127.0.0.1", port=sink.port))
    try:
        # A worker on another host (its own, empty data dir) retries both sends.
        other_host = tmp_path / "other-host"

        def ctx(key: str) -> ToolContext:
            return ToolContext(data_dir=other_host, idempotency_key=key, effects=effects, integrations=smtp)

        again = await send_email(EMAIL, ctx(SENT))
        assert again.replayed is True and deliveries(tmp_path / "sink") == []
        first = await send_email(EMAIL, ctx(UNSENT))
        assert first.replayed is False
        [delivered] = deliveries(tmp_path / "sink")
        # The message the old worker kept, not a new one: its Message-ID, its Date, its body.
        received = message_from_bytes((sink.directory / str(delivered["file"])).read_bytes(), policy=default)
        kept = message_from_bytes(data_dir.emails[UNSENT], policy=default)
        for header in ("Message-ID", "Date", "X-Countersign-Idempotency-Key"):
            assert received[header] == kept[header]
        assert received.get_content().splitlines() == kept.get_content().splitlines()
        # The records: found by their key.
        task = await create_task(TASK_ARGS, ctx(TASK))
        assert task.replayed is True and task.result.task_id == record_id("TASK", TASK)
        records = await effects.records()
        assert await records.find(tool="post_webhook", key=HOOK, args_json="{}") == "HOOK-1A2B3C4D:200"
        assert not other_host.exists()
    finally:
        await effects.close()


async def test_importing_twice_or_at_once_imports_once(data_dir: OldDataDir, location: Location) -> None:
    counts = await asyncio.gather(
        *(import_effects(data_dir.path, location.url, schema=location.schema) for _ in range(3))
    )
    assert sum(counts) == 8
    assert await import_effects(data_dir.path, location.url, schema=location.schema) == 0
    async with await ToolRecordStore.open(location.url, schema=location.schema) as records:
        assert [r["idempotency_key"] for r in await records.records()] == [TASK, HOOK]
    async with await OutboxStore.open(location.url, schema=location.schema) as outbox:
        assert len(await outbox.messages()) == 3
    assert sorted(p.name for p in data_dir.path.iterdir()) == [
        "notifications.imported",
        "outbox.imported",
        "records.db.imported",
        "teams.imported",
    ]


async def test_a_mark_written_after_an_import_is_added_by_the_next(
    data_dir: OldDataDir, location: Location
) -> None:
    """An old worker that was still running marked a message sent after the first import: the sources
    brought back and imported again, the mark is added (never taken away), nothing else changes."""
    assert await import_effects(data_dir.path, location.url, schema=location.schema) == 8
    shutil.copytree(data_dir.path / "outbox.imported", data_dir.path / "outbox")
    old.mark_sent(old.outbox_path(data_dir.path, UNSENT))
    assert await import_effects(data_dir.path, location.url, schema=location.schema) == 0
    async with await OutboxStore.open(location.url, schema=location.schema) as outbox:
        assert await outbox.was_sent(UNSENT) and await outbox.was_sent(SENT)
    assert (data_dir.path / "outbox.imported.2").is_dir()


async def test_a_message_countersign_did_not_write_stops_the_import_and_loses_nothing(
    data_dir: OldDataDir, location: Location
) -> None:
    stray = data_dir.path / "outbox" / "stray.eml"
    stray.write_bytes(b"From: someone\r\nSubject: not ours\r\n\r\nhello\r\n")
    with pytest.raises(LegacyEffectsError, match=r"stray\.eml"):
        await import_effects(data_dir.path, location.url, schema=location.schema)
    assert (data_dir.path / "outbox").is_dir() and stray.exists()
    stray.unlink()
    assert await import_effects(data_dir.path, location.url, schema=location.schema) == 8


async def test_an_empty_data_dir_imports_nothing(tmp_path: Path, location: Location) -> None:
    assert await import_effects(tmp_path / "nothing", location.url, schema=location.schema) == 0
    assert not (tmp_path / "nothing").exists()

"""How the release before issue 21 wrote the tools' and notifications' state into the data dir, copied
here unchanged in substance (tools/effects.py, activities/notify.py and activities/teams_channel.py as
they were), so the legacy import is tested against files exactly as that release left them:
`<data_dir>/outbox/<sha256(key)>.eml` with a `.<sha256(key)>.sent` mark beside each message the SMTP
server accepted, `<data_dir>/records.db` (table `records`), `<data_dir>/notifications/<sha256(note
key)[:32]>.json`, and the Teams channel's `<data_dir>/teams/<sha256(note key, newline, webhook
URL)[:32]>.posted`."""

import contextlib
import hashlib
import json
import os
import sqlite3
import tempfile
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

OUTBOX_DIR = "outbox"
RECORDS_DB = "records.db"
NOTIFICATIONS_DIR = "notifications"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    idempotency_key TEXT PRIMARY KEY,
    tool TEXT NOT NULL,
    record_id TEXT NOT NULL,
    args_json TEXT NOT NULL,
    created_at TEXT NOT NULL
)
"""


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def outbox_path(data_dir: Path, key: str) -> Path:
    return data_dir / OUTBOX_DIR / f"{key_digest(key)}.eml"


def write_message(data_dir: Path, key: str, message: EmailMessage) -> Path:
    """The old `_write_message_sync`: a temp file hard-linked into place, first writer wins."""
    final = outbox_path(data_dir, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=".", suffix=".eml.part")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(message.as_bytes())
        with contextlib.suppress(FileExistsError):
            os.link(tmp_name, final)
    finally:
        os.unlink(tmp_name)
    return final


def mark_sent(path: Path) -> None:
    """The old `mark_sent`: `.<stem>.sent` beside the message, holding the moment as ISO 8601."""
    marker = path.with_name(f".{path.stem}.sent")
    marker.write_bytes(datetime.now(UTC).isoformat().encode())


def insert_record(data_dir: Path, *, tool: str, key: str, record_id: str, args_json: str) -> None:
    """The old `insert_record`: one row in records.db's `records` table, first writer wins."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(data_dir / RECORDS_DB)) as db:
        db.execute(_SCHEMA)
        db.execute(
            "INSERT INTO records (idempotency_key, tool, record_id, args_json, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(idempotency_key) DO NOTHING",
            (key, tool, record_id, args_json, datetime.now(UTC).isoformat()),
        )
        db.commit()


def write_notification(data_dir: Path, note: dict[str, Any], recipients: list[dict[str, Any]]) -> Path:
    """The old `OutboxChannel._write`: the note's JSON (model_dump(mode="json")) with its recipients
    (id, name, email), indented, under `notifications/<sha256(key)[:32]>.json`."""
    directory = data_dir / NOTIFICATIONS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{hashlib.sha256(note['key'].encode()).hexdigest()[:32]}.json"
    if final.exists():
        return final
    record = {**note, "recipients": recipients}
    partial = final.with_suffix(".tmp")
    partial.write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(partial, final)
    return final


def mark_teams_post(data_dir: Path, key: str, url: str) -> Path:
    """The old `TeamsChannel._mark`: an empty marker per notification and webhook, once Teams took it."""
    directory = data_dir / "teams"
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(f"{key}\n{url}".encode()).hexdigest()[:32]
    marker = directory / f"{digest}.posted"
    partial = marker.with_suffix(".tmp")
    partial.write_text("")
    os.replace(partial, marker)
    return marker

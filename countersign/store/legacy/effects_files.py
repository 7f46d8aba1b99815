"""Import the tools' and notifications' state that the release before issue 21 kept in the data dir into
Countersign's database, so that an upgraded worker, on this host or another, finds what the old one did:

- `<data_dir>/outbox/<sha256(key)>.eml`, each message under the key in its X-Countersign-Idempotency-Key
  header, marked sent when `.<sha256(key)>.sent` lies beside it (what keeps a retried send from sending
  twice) -> store/outbox.py;
- `<data_dir>/records.db`, table `records` -> store/tool_records.py;
- `<data_dir>/notifications/*.json`, the record of who was told what -> store/notification_log.py;
- `<data_dir>/teams/<digest>.posted`, a card posted to a Teams webhook -> store/delivery_marks.py.

Each row is inserted unless its key is there and a sent mark is only ever added, so the import is safe to
run twice and by two processes at once; each source is renamed (`outbox.imported`, ...) only after all of
it is in, so a crash halfway leaves it to be imported again, and nothing reads it afterwards. Run it with
the old release's processes stopped (they would keep writing files nobody reads). A message without its
key header was not written by Countersign: it stops the import with the file's name, and nothing of the
outbox is renamed.
"""

import asyncio
import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

from countersign.store.delivery_marks import DeliveryMarks
from countersign.store.notification_log import NotificationLog
from countersign.store.outbox import OutboxStore
from countersign.store.tool_records import ToolRecordStore
from countersign.tools.effects import IDEMPOTENCY_HEADER

OUTBOX_DIR = "outbox"
RECORDS_DB = "records.db"
NOTIFICATIONS_DIR = "notifications"
TEAMS_DIR = "teams"
IMPORTED_SUFFIX = ".imported"


class LegacyEffectsError(ValueError):
    """A file in the data dir that the old release did not write as it should be; the message names it."""


@dataclass(frozen=True)
class _Message:
    key: str
    raw: bytes
    created_at: datetime
    sent_at: datetime | None


async def import_effects(data_dir: Path, url: str, *, schema: str | None = None) -> int:
    """Import `data_dir`'s outbox, records.db and notification records into the database at `url`;
    returns how many rows were added (0 when there is nothing left to import)."""
    added = 0
    outbox = data_dir / OUTBOX_DIR
    if await asyncio.to_thread(outbox.is_dir):
        added += await _import_outbox(outbox, url, schema)
    records = data_dir / RECORDS_DB
    if await asyncio.to_thread(records.is_file):
        added += await _import_records(records, url, schema)
    notifications = data_dir / NOTIFICATIONS_DIR
    if await asyncio.to_thread(notifications.is_dir):
        added += await _import_notifications(notifications, url, schema)
    teams = data_dir / TEAMS_DIR
    if await asyncio.to_thread(teams.is_dir):
        added += await _import_teams_marks(teams, url, schema)
    return added


async def _import_outbox(directory: Path, url: str, schema: str | None) -> int:
    try:
        messages = await asyncio.to_thread(lambda: list(_read_outbox(directory)))
    except FileNotFoundError:
        return 0  # another process imported it and renamed it while this one read
    added = 0
    async with await OutboxStore.open(url, schema=schema) as store:
        for message in messages:
            added += await store.restore(
                message.key, message.raw, created_at=message.created_at, sent_at=message.sent_at
            )
    await asyncio.to_thread(_set_aside, directory)
    return added


def _read_outbox(directory: Path) -> Iterator[_Message]:
    # Dot files are the old writer's temp files (`.x.eml.part`: a write cut short, never linked into
    # place, so never an intent) and its sent marks (read with their message).
    for path in sorted(directory.glob("[!.]*.eml")):
        raw = path.read_bytes()
        headers = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
        key = headers[IDEMPOTENCY_HEADER]
        if not key:
            raise LegacyEffectsError(
                f"{path} has no {IDEMPOTENCY_HEADER} header, so Countersign did not write it: move it out "
                f"of {directory} and import again"
            )
        mark = path.with_name(f".{path.stem}.sent")
        yield _Message(
            key=str(key),
            raw=raw,
            created_at=_modified(path),
            sent_at=_sent_at(mark) if mark.exists() else None,
        )


def _sent_at(mark: Path) -> datetime:
    """The moment the old release wrote in the mark (ISO 8601), or the mark's own time."""
    try:
        moment = datetime.fromisoformat(mark.read_text().strip())
    except ValueError:
        return _modified(mark)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _modified(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


async def _import_records(path: Path, url: str, schema: str | None) -> int:
    try:
        rows = await asyncio.to_thread(_read_records, path)
    except FileNotFoundError:
        return 0  # another process imported it and renamed it while this one read
    added = 0
    async with await ToolRecordStore.open(url, schema=schema) as store:
        for key, tool, record_id, args_json, created_at in rows:
            added += await store.restore(
                key=key,
                tool=tool,
                record_id=record_id,
                args_json=args_json,
                created_at=_parse_moment(created_at, path),
            )
    await asyncio.to_thread(_set_aside, path)
    return added


def _read_records(path: Path) -> list[tuple[str, str, str, str, str]]:
    # mode=rw: never create an empty database where another process just renamed the file away.
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True)
    except sqlite3.OperationalError:
        if not path.exists():
            raise FileNotFoundError(path) from None
        raise
    with contextlib.closing(db):
        try:
            return db.execute(
                "SELECT idempotency_key, tool, record_id, args_json, created_at FROM records"
            ).fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return []  # created by the old release and never written to
            raise


def _parse_moment(text: str, source: Path) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise LegacyEffectsError(f"{source}: {text!r} is not a moment (ISO 8601)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _import_notifications(directory: Path, url: str, schema: str | None) -> int:
    try:
        records = await asyncio.to_thread(_read_notifications, directory)
    except FileNotFoundError:
        return 0  # another process imported it and renamed it while this one read
    added = 0
    async with await NotificationLog.open(url, schema=schema) as log:
        for path, record, created_at in records:
            try:
                added += await log.restore(record, created_at)
            except ValueError as error:
                raise LegacyEffectsError(f"{path}: {error}") from None
    await asyncio.to_thread(_set_aside, directory)
    return added


def _read_notifications(directory: Path) -> list[tuple[Path, dict[str, object], datetime]]:
    # `*.tmp` are the old writer's partial files, replaced into place only when whole.
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise LegacyEffectsError(f"{path} is not JSON: {error}") from None
        if not isinstance(record, dict):
            raise LegacyEffectsError(f"{path} is not a notification record")
        found.append((path, record, _modified(path)))
    return found


async def _import_teams_marks(directory: Path, url: str, schema: str | None) -> int:
    def read() -> list[tuple[str, float]]:
        # `*.tmp` are the old writer's partial files, replaced into place only when whole.
        return [(path.stem, path.stat().st_mtime) for path in sorted(directory.glob("*.posted"))]

    try:
        found = await asyncio.to_thread(read)
    except FileNotFoundError:
        return 0  # another process imported it and renamed it while this one read
    added = 0
    async with await DeliveryMarks.open(url, schema=schema) as marks:
        for mark, at in found:
            added += await marks.mark("teams", mark, at)
    await asyncio.to_thread(_set_aside, directory)
    return added


def _set_aside(source: Path) -> None:
    """Rename `source` to `<name>.imported` (`.imported.2`, ... when an earlier import left one), so it is
    not read again and is kept for whoever wants to look. Gone already: another process set it aside."""
    for n in range(1, 1000):
        target = source.with_name(source.name + IMPORTED_SUFFIX + ("" if n == 1 else f".{n}"))
        if target.exists():
            continue
        try:
            os.rename(source, target)
        except FileNotFoundError:
            return
        except OSError:
            if target.exists():  # taken between the look and the rename: try the next name
                continue
            raise
        return
    raise LegacyEffectsError(f"{source}: no free name to set it aside as imported")

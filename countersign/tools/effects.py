"""Durable, idempotent storage for the built-in tools: an outbox of .eml files and a SQLite table.

Both stores are keyed by the idempotency key and written with an atomic "create if absent" step,
so a second call with the same key (a retry, a concurrent duplicate, a re-run after a crash) finds
the first call's effect instead of repeating it. Reusing a key with different arguments is a bug
upstream and raises `ValueError` rather than silently answering with the old effect.
"""

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import aiosqlite
from pydantic import BaseModel

OUTBOX_DIR = "outbox"
RECORDS_DB = "records.db"
IDEMPOTENCY_HEADER = "X-Countersign-Idempotency-Key"
# A digest of the canonical args: a key reused with other args is caught without parsing the body.
ARGS_DIGEST_HEADER = "X-Countersign-Args-SHA256"

# Long enough for concurrent writers to queue up instead of failing with "database is locked".
_SQLITE_TIMEOUT_S = 30.0

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
    """The sha256 hex digest of an idempotency key: a stable, filesystem-safe name for it."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def record_id(prefix: str, key: str) -> str:
    """A readable id derived from the key alone, e.g. `TASK-1A2B3C4D`, so a retry reproduces it."""
    return f"{prefix}-{key_digest(key)[:8].upper()}"


def canonical_args_json(args: BaseModel) -> str:
    """Args as JSON with sorted keys and no whitespace, so equal args compare equal as strings."""
    return json.dumps(args.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def _conflict(key: str, what: str) -> ValueError:
    return ValueError(
        f"idempotency key {key!r} was already used with different {what}; "
        "a key must identify exactly one tool call"
    )


# --- SQLite records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredRecord:
    record_id: str
    replayed: bool


async def insert_record(
    data_dir: Path, *, tool: str, key: str, record_id: str, args_json: str
) -> StoredRecord:
    """Insert a row for `key` unless one exists; return the stored id and whether it existed."""
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    # No WAL: concurrent first calls switching a fresh database to WAL fail at once with "database
    # is locked", busy timeout or not (seen in the tests). The default rollback journal suffices.
    # isolation_level=None: we issue BEGIN ourselves, so insert and read-back share one transaction.
    async with aiosqlite.connect(
        data_dir / RECORDS_DB, timeout=_SQLITE_TIMEOUT_S, isolation_level=None
    ) as db:
        await db.execute(_SCHEMA)
        # IMMEDIATE takes the write lock up front, so concurrent callers serialise here rather than
        # deadlocking on a read-to-write lock upgrade.
        await db.execute("BEGIN IMMEDIATE")
        # No explicit ROLLBACK on error: closing the connection discards an uncommitted transaction.
        inserted = await db.execute(
            "INSERT INTO records (idempotency_key, tool, record_id, args_json, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(idempotency_key) DO NOTHING",
            (key, tool, record_id, args_json, datetime.now(UTC).isoformat()),
        )
        async with db.execute(
            "SELECT tool, record_id, args_json FROM records WHERE idempotency_key = ?", (key,)
        ) as cursor:
            row = await cursor.fetchone()
        await db.execute("COMMIT")
    assert row is not None  # the insert or an earlier call put it there, inside this transaction
    # DO NOTHING reports 0 rows: the key was already there, so this call is a replay.
    return StoredRecord(record_id=_same_call(row, key, tool, args_json), replayed=inserted.rowcount == 0)


def _same_call(row: Any, key: str, tool: str, args_json: str) -> str:
    """The stored record id, when the stored row is the same call; a key reused otherwise is refused."""
    stored_tool, stored_id, stored_args = row
    if stored_tool != tool:
        raise _conflict(key, f"tool ({stored_tool!r}, now {tool!r})")
    if stored_args != args_json:
        raise _conflict(key, "args")
    return str(stored_id)


async def find_record(data_dir: Path, *, tool: str, key: str, args_json: str) -> str | None:
    """The record id an earlier call stored for `key`, or None; read-only, for tools that must check
    before acting (and record only after the other side accepted)."""
    path = data_dir / RECORDS_DB
    if not await asyncio.to_thread(path.exists):
        return None
    uri = f"{(await asyncio.to_thread(path.resolve)).as_uri()}?mode=ro"
    async with aiosqlite.connect(uri, uri=True, timeout=_SQLITE_TIMEOUT_S) as db:
        try:
            async with db.execute(
                "SELECT tool, record_id, args_json FROM records WHERE idempotency_key = ?", (key,)
            ) as cursor:
                row = await cursor.fetchone()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return None
            raise
    return None if row is None else _same_call(row, key, tool, args_json)


def list_records(data_dir: Path) -> list[dict[str, Any]]:
    """All tool records, oldest first, as dicts with `args` decoded; [] if none were ever recorded.

    Synchronous and read-only (opens the database with mode=ro), for the CLI; async callers can
    wrap it in `asyncio.to_thread`. Keys: idempotency_key, tool, record_id, args, created_at.
    """
    path = data_dir / RECORDS_DB
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT idempotency_key, tool, record_id, args_json, created_at FROM records"
            " ORDER BY created_at, idempotency_key"
        ).fetchall()
    return [
        {
            "idempotency_key": key,
            "tool": tool,
            "record_id": rid,
            "args": json.loads(args_json),
            "created_at": created_at,
        }
        for key, tool, rid, args_json, created_at in rows
    ]


# --- Outbox --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredMessage:
    message_id: str
    path: Path
    replayed: bool


def outbox_path(data_dir: Path, key: str) -> Path:
    # A hex digest, never the key itself: keys contain ':' and may contain '/', which must not reach
    # the filesystem. The key stays readable in the message's own header.
    return data_dir / OUTBOX_DIR / f"{key_digest(key)}.eml"


def _write_message_sync(data_dir: Path, key: str, message: EmailMessage) -> StoredMessage:
    final = outbox_path(data_dir, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Write the whole message to a temp file in the same directory, then hard-link it into place:
    # the link either creates the final name with complete content, or fails because it exists.
    # The leading dot and `.part` suffix keep temp files out of `list_outbox`.
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=".", suffix=".eml.part")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(message.as_bytes())
            tmp.flush()
            os.fsync(tmp.fileno())
        try:
            os.link(tmp_name, final)
        except FileExistsError:
            return _read_existing(final, key, message)
        _fsync_dir(final.parent)
    finally:
        os.unlink(tmp_name)
    return StoredMessage(message_id=str(message["Message-ID"]), path=final, replayed=False)


def _read_existing(final: Path, key: str, message: EmailMessage) -> StoredMessage:
    with final.open("rb") as f:
        existing = BytesParser(policy=policy.default).parse(f, headersonly=True)
    if existing[IDEMPOTENCY_HEADER] != key:
        raise _conflict(key, "key (digest collision in the outbox)")
    if existing[ARGS_DIGEST_HEADER] != message[ARGS_DIGEST_HEADER]:
        raise _conflict(key, "email args")
    return StoredMessage(message_id=str(existing["Message-ID"]), path=final, replayed=True)


def _fsync_dir(directory: Path) -> None:
    # Makes the new directory entry durable, so a crash after returning cannot lose the message.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def write_message(data_dir: Path, key: str, message: EmailMessage) -> StoredMessage:
    """Put `message` in the outbox under `key` unless one is already there (I/O off the loop)."""
    return await asyncio.to_thread(_write_message_sync, data_dir, key, message)


def _sent_marker(path: Path) -> Path:
    return path.with_name(f".{path.stem}.sent")


async def was_sent(path: Path) -> bool:
    """Whether the outbox message at `path` was already accepted by the SMTP server."""
    return await asyncio.to_thread(_sent_marker(path).exists)


async def mark_sent(path: Path) -> None:
    """Record that the SMTP server accepted the message at `path` (durably, before reporting success).

    A worker killed after the server's 250 and before this mark sends the message again on retry (SMTP
    has no idempotency; the copy carries the same Message-ID). The mark is written at once, in the
    event loop, rather than after a hop to a thread: a killed process's write survives in the OS's
    cache, so that window is one small write. The fsyncs, against a machine crash, follow."""
    marker = _sent_marker(path)
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, datetime.now(UTC).isoformat().encode())
    finally:
        os.close(fd)

    def sync() -> None:
        fd = os.open(marker, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(marker.parent)

    await asyncio.to_thread(sync)


async def read_message(path: Path) -> EmailMessage:
    def read() -> EmailMessage:
        with path.open("rb") as f:
            parsed = BytesParser(policy=policy.default).parse(f)
        assert isinstance(parsed, EmailMessage)
        return parsed

    return await asyncio.to_thread(read)


def list_outbox(data_dir: Path) -> list[Path]:
    """Paths of the outbox's .eml files, oldest first; [] if there is no outbox. Synchronous."""
    outbox = data_dir / OUTBOX_DIR
    if not outbox.is_dir():
        return []
    return sorted(outbox.glob("[!.]*.eml"), key=lambda p: (p.stat().st_mtime_ns, p.name))

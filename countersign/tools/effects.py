"""What the built-in tools keep so that a key acts once: an outbox of messages with their "sent" marks,
and a table of records. Both live in Countersign's one SQL database (store/outbox.py,
store/tool_records.py), so a retry on any worker, on any host, finds what an earlier attempt did.

This module is the tools' side of that contract: the Protocols a handler sees through
`ToolContext.effects` (the worker passes the SQL stores, `countersign.store.tool_effects`), and the
pure helpers both sides share. Both stores are keyed by the idempotency key and written with an atomic
"insert if absent" step, so a second call with the same key (a retry, a concurrent duplicate, a re-run
after a crash) finds the first call's effect instead of repeating it. Reusing a key with different
arguments is a bug upstream and raises `ValueError` rather than silently answering with the old effect.
"""

import hashlib
import json
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from pydantic import BaseModel

IDEMPOTENCY_HEADER = "X-Countersign-Idempotency-Key"
# A digest of the canonical args: a key reused with other args is caught without parsing the body.
ARGS_DIGEST_HEADER = "X-Countersign-Args-SHA256"


def key_digest(key: str) -> str:
    """The sha256 hex digest of an idempotency key: a stable, opaque name for it."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def message_name(key: str) -> str:
    """The name a message is known by in results (`<sha256 of the key>.eml`): it says which message
    without carrying the key, and is the file name an exported copy gets."""
    return f"{key_digest(key)}.eml"


def record_id(prefix: str, key: str) -> str:
    """A readable id derived from the key alone, e.g. `TASK-1A2B3C4D`, so a retry reproduces it."""
    return f"{prefix}-{key_digest(key)[:8].upper()}"


def canonical_args_json(args: BaseModel) -> str:
    """Args as JSON with sorted keys and no whitespace, so equal args compare equal as strings."""
    return json.dumps(args.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def key_conflict(key: str, what: str) -> ValueError:
    return ValueError(
        f"idempotency key {key!r} was already used with different {what}; "
        "a key must identify exactly one tool call"
    )


def same_call(key: str, tool: str, args_json: str, *, stored_tool: str, stored_args: str) -> None:
    """Nothing when the stored call under `key` is this call; a key reused otherwise is refused."""
    if stored_tool != tool:
        raise key_conflict(key, f"tool ({stored_tool!r}, now {tool!r})")
    if stored_args != args_json:
        raise key_conflict(key, "args")


@dataclass(frozen=True)
class StoredRecord:
    record_id: str
    replayed: bool


@dataclass(frozen=True)
class StoredMessage:
    message_id: str
    # `message_name(key)`: what results show instead of the key.
    name: str
    replayed: bool


class ToolRecords(Protocol):
    """One row per idempotency key: what a tool did under it."""

    async def insert(self, *, tool: str, key: str, record_id: str, args_json: str) -> StoredRecord:
        """Insert a row for `key` unless one exists; return the stored id and whether it existed.
        Raises ValueError when the stored row is another call (another tool or other args)."""
        ...

    async def find(self, *, tool: str, key: str, args_json: str) -> str | None:
        """The record id an earlier call stored for `key`, or None; read-only, for tools that must
        check before acting (and record only after the other side accepted)."""
        ...


class Outbox(Protocol):
    """One message per idempotency key (the intent, kept before it is sent), and whether the SMTP
    server accepted it (the result)."""

    async def keep(self, key: str, message: EmailMessage) -> StoredMessage:
        """Keep `message` under `key` unless a message is already there: then that one stands
        (`replayed`), and a different `ARGS_DIGEST_HEADER` raises ValueError."""
        ...

    async def message(self, key: str) -> EmailMessage | None:
        """The message kept under `key` (its stored bytes, parsed), or None."""
        ...

    async def was_sent(self, key: str) -> bool:
        """Whether the SMTP server already accepted the message kept under `key`."""
        ...

    async def mark_sent(self, key: str) -> None:
        """Record that the SMTP server accepted the message kept under `key`."""
        ...


class Effects(Protocol):
    """Where the built-in tools keep what they did; each store is opened when first asked for."""

    async def outbox(self) -> Outbox: ...

    async def records(self) -> ToolRecords: ...

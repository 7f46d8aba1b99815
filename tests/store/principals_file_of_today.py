"""A `principals.db` written the way the release before the one SQL database writes it: its tables made
by that release's own code (store/legacy/principals_file_layout.py, moved there unchanged), its rows by
the statements that release's store ran, copied verbatim from its store/principals/*.py.

Synchronous (sqlite3), like a file left in a data dir: nothing of today's store touches it.
"""

import hashlib
import json
import secrets
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosqlite

from countersign.store.legacy.principals_file_layout import prepare

# The release's statements, verbatim.
_ADD_PRINCIPAL = (
    "INSERT INTO principals (id, name, roles, tenant, email, source, created_at, slack_user_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
ADD_KEY = "INSERT INTO api_keys (key_hash, principal_id, prefix, created_at) VALUES (?, ?, ?, ?)"
_SIGN_IN = (
    "INSERT INTO principals (id, name, roles, tenant, email, source, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
_REVOKE_WORKING = (
    "UPDATE api_keys SET revoked_at = ?1 "
    "WHERE principal_id = ?2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1)"
)
_EXPIRE_WORKING = (
    "UPDATE api_keys SET expires_at = min(coalesce(expires_at, ?1), ?1) "
    "WHERE principal_id = ?2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?3)"
)
_SET_DELEGATION = (
    "INSERT OR REPLACE INTO delegations "
    "(delegator_id, delegate_id, tenant, starts_at, ends_at, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_LOG = (
    "INSERT INTO delegation_log (at, action, delegator_id, delegate_id, tenant, starts_at, ends_at, reason) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_DISABLE = "UPDATE principals SET disabled_at = ? WHERE id = ? AND disabled_at IS NULL"


def instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class FileOfToday:
    """The file, and what a caller would have been given: each principal's keys, newest last."""

    path: Path
    keys: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    async def create(cls, path: Path) -> "FileOfToday":
        """The file with its tables, as that release's store made it on first opening."""
        async with aiosqlite.connect(path) as db:
            await prepare(db)
        return cls(path)

    def _run(self, statement: str, *params: object) -> None:
        with sqlite3.connect(self.path) as db:
            db.execute(statement, params)
        db.close()

    def add(
        self,
        principal_id: str,
        name: str,
        roles: list[str],
        tenant: str,
        at: datetime,
        email: str | None = None,
        slack: str | None = None,
    ) -> str:
        key = f"cs_{secrets.token_urlsafe(32)}"
        with sqlite3.connect(self.path) as db:
            db.execute(
                _ADD_PRINCIPAL,
                (principal_id, name, json.dumps(sorted(roles)), tenant, email, "api-key", instant(at), slack),
            )
            db.execute(ADD_KEY, (_digest(key), principal_id, key[:10], instant(at)))
        db.close()
        self.keys[principal_id] = [key]
        return key

    def rotate(self, principal_id: str, at: datetime, grace: timedelta | None = None) -> str:
        key = f"cs_{secrets.token_urlsafe(32)}"
        with sqlite3.connect(self.path) as db:
            if grace is None:
                db.execute(_REVOKE_WORKING, (instant(at), principal_id))
            else:
                db.execute(_EXPIRE_WORKING, (instant(at + grace), principal_id, instant(at)))
            db.execute(ADD_KEY, (_digest(key), principal_id, key[:10], instant(at)))
        db.close()
        self.keys[principal_id].append(key)
        return key

    def revoke(self, principal_id: str, at: datetime) -> None:
        self._run(_REVOKE_WORKING, instant(at), principal_id)

    def disable(self, principal_id: str, at: datetime) -> None:
        self._run(_DISABLE, instant(at), principal_id)

    def sign_in(self, principal_id: str, name: str, roles: list[str], tenant: str, at: datetime) -> None:
        self._run(_SIGN_IN, principal_id, name, json.dumps(sorted(roles)), tenant, None, "jwt", instant(at))

    def prefer(self, principal_id: str, delivery: str, quiet_hours: str, timezone: str) -> None:
        self._run(
            "UPDATE principals SET delivery = ?, quiet_hours = ?, timezone = ? WHERE id = ?",
            delivery,
            quiet_hours,
            timezone,
            principal_id,
        )

    def delegate(
        self, delegator: str, delegate: str, tenant: str, at: datetime, days: int, reason: str
    ) -> None:
        row = (delegator, delegate, tenant, instant(at), instant(at + timedelta(days=days)), reason)
        with sqlite3.connect(self.path) as db:
            db.execute(_SET_DELEGATION, (*row, instant(at)))
            db.execute(_LOG, (instant(at), "set", *row))
        db.close()

    def clear(self, delegator: str, tenant: str, at: datetime) -> None:
        with sqlite3.connect(self.path) as db:
            if db.execute("DELETE FROM delegations WHERE delegator_id = ?", (delegator,)).rowcount:
                db.execute(_LOG, (instant(at), "cleared", delegator, None, tenant, None, None, None))
        db.close()

    def rows(self, table: str, columns: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.path) as db:
            found = db.execute(f"SELECT {columns} FROM {table}").fetchall()
        db.close()
        return sorted(found, key=repr)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()

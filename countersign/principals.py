"""Principals, their API keys and their out-of-office delegations, kept in `<data-dir>/principals.db`.

Keys are stored as SHA-256 digests. API keys are 256-bit random tokens, so a plain digest is enough:
there is nothing to brute-force that a slow hash would protect, and lookups stay one indexed read.

Principals who sign in with a JWT (countersign/tokens.py) are not in this store: they have no email on
file, are no one's recipients, and can neither delegate nor be delegated to.
"""

import hashlib
import json
import secrets
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
from pydantic import EmailStr, TypeAdapter

from countersign.errors import Invalid, NotFound
from models.enums import Role
from models.principals import (
    MAX_DELEGATION_DAYS,
    DelegateRequest,
    Delegation,
    DelegationEvent,
    NewPrincipal,
    Principal,
    Recipient,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS principals (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    roles TEXT NOT NULL,
    tenant TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    email TEXT
);
-- One row per delegator: setting a new delegation replaces the previous one.
CREATE TABLE IF NOT EXISTS delegations (
    delegator_id TEXT PRIMARY KEY,
    delegate_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS delegations_by_delegate ON delegations (delegate_id, tenant);
-- Append-only: every delegation set or ended, with who and why, outlives its replacement.
CREATE TABLE IF NOT EXISTS delegation_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    delegator_id TEXT NOT NULL,
    delegate_id TEXT,
    tenant TEXT NOT NULL,
    starts_at TEXT,
    ends_at TEXT,
    reason TEXT
);
"""

# Columns added after a database may already exist: (name, definition) for ALTER TABLE ... ADD COLUMN.
_ADDED_COLUMNS = [("email", "TEXT")]

# Literal statements only: nothing from outside is ever spliced into SQL.
_PRINCIPAL_BY_KEY = "SELECT id, name, roles, tenant, email FROM principals WHERE key_hash = ?"
_PRINCIPAL_BY_ID = "SELECT id, name, roles, tenant, email FROM principals WHERE id = ?"
_PRINCIPALS_OF_TENANT = (
    "SELECT id, name, roles, tenant, email FROM principals WHERE tenant = ? ORDER BY name, id"
)
_SET_DELEGATION = (
    "INSERT OR REPLACE INTO delegations "
    "(delegator_id, delegate_id, tenant, starts_at, ends_at, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_LOG = (
    "INSERT INTO delegation_log (at, action, delegator_id, delegate_id, tenant, starts_at, ends_at, reason) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_LOG_OF = (
    "SELECT at, action, delegator_id, delegate_id, tenant, starts_at, ends_at, reason "
    "FROM delegation_log WHERE delegator_id = ? ORDER BY seq"
)
_DELEGATION_OF = (
    "SELECT delegator_id, delegate_id, tenant, starts_at, ends_at, reason, created_at "
    "FROM delegations WHERE delegator_id = ?"
)
_DELEGATORS_FOR = (
    "SELECT p.id, p.name, p.roles, p.tenant, p.email "
    "FROM delegations d JOIN principals p ON p.id = d.delegator_id "
    "WHERE d.delegate_id = ? AND d.tenant = ? AND p.tenant = d.tenant "
    "AND d.starts_at <= ? AND d.ends_at > ? ORDER BY p.name, p.id"
)
_email = TypeAdapter(EmailStr)


def _digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def _instant(moment: datetime) -> str:
    """UTC, fixed width, so that SQLite compares instants as strings correctly."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no place here: pass an aware one")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _principal(row: Iterable[Any]) -> Principal:
    id_, name, roles, tenant, _ = row
    return Principal(id=id_, name=name, roles=json.loads(roles), tenant=tenant)


def _recipient(row: Iterable[Any]) -> Recipient:
    id_, name, roles, tenant, email = row
    return Recipient(id=id_, name=name, email=email, roles=json.loads(roles), tenant=tenant)


def _delegation(row: Iterable[Any]) -> Delegation:
    delegator_id, delegate_id, tenant, starts_at, ends_at, reason, created_at = row
    return Delegation(
        delegator_id=delegator_id,
        delegate_id=delegate_id,
        tenant=tenant,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        created_at=created_at,
    )


class PrincipalStore:
    """One open connection for the store's lifetime: the gateway authenticates every request here."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> "PrincipalStore":
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
        try:
            await db.executescript(_SCHEMA)
            await _add_missing_columns(db)
            await db.commit()
        except BaseException:
            await db.close()
            raise
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> "PrincipalStore":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def add(
        self, name: str, roles: list[Role], tenant: str = "default", email: str | None = None
    ) -> NewPrincipal:
        """Raises pydantic's ValidationError for a bad name, tenant or email."""
        principal = Principal(
            id=f"p-{secrets.token_hex(5)}", name=name, roles=sorted(set(roles)), tenant=tenant
        )
        address = None if email is None else _email.validate_python(email)
        api_key = f"cs_{secrets.token_urlsafe(32)}"
        await self._db.execute(
            "INSERT INTO principals (id, name, roles, tenant, key_hash, email) VALUES (?, ?, ?, ?, ?, ?)",
            (principal.id, name, json.dumps(principal.roles), tenant, _digest(api_key), address),
        )
        await self._db.commit()
        return NewPrincipal(principal=principal, api_key=api_key)

    async def authenticate(self, api_key: str) -> Principal | None:
        row = await self._one(_PRINCIPAL_BY_KEY, _digest(api_key))
        return None if row is None else _principal(row)

    async def get(self, principal_id: str) -> Principal | None:
        row = await self._one(_PRINCIPAL_BY_ID, principal_id)
        return None if row is None else _principal(row)

    async def recipient(self, principal_id: str) -> Recipient | None:
        row = await self._one(_PRINCIPAL_BY_ID, principal_id)
        return None if row is None else _recipient(row)

    async def recipients(self, tenant: str, roles: list[Role]) -> list[Recipient]:
        """The principals of `tenant` holding any of `roles`, by name."""
        wanted = set(roles)
        if not wanted:
            return []
        cursor = await self._db.execute(_PRINCIPALS_OF_TENANT, (tenant,))
        everyone = [_recipient(row) for row in await cursor.fetchall()]
        return [r for r in everyone if wanted.intersection(r.roles)]

    async def count(self) -> int:
        row = await self._one("SELECT count(*) FROM principals")
        return int(row[0]) if row else 0

    async def set_delegate(self, delegator: Principal, body: DelegateRequest, now: datetime) -> Delegation:
        """Delegate `delegator`'s roles to `body.delegate_id` for a period, replacing any earlier delegation.

        Raises Invalid for a delegation to oneself, a period that is over or reaches more than
        MAX_DELEGATION_DAYS ahead, or a delegator unknown to this store; NotFound for a delegate that is
        not a principal of the delegator's tenant (another tenant's principals are not disclosed).
        """
        if body.delegate_id == delegator.id:
            raise Invalid("you cannot delegate to yourself")
        if body.until <= now:
            raise Invalid("until must be in the future")
        if body.until > now + timedelta(days=MAX_DELEGATION_DAYS):
            raise Invalid(f"until must be at most {MAX_DELEGATION_DAYS} days away")
        stored = await self.get(delegator.id)
        if stored is None or stored.tenant != delegator.tenant:
            raise Invalid(
                f"{delegator.id} is not a principal of this store; only principals created with "
                "`countersign principal add` can delegate"
            )
        delegate = await self.get(body.delegate_id)
        if delegate is None or delegate.tenant != delegator.tenant:
            raise NotFound(f"no principal {body.delegate_id} in tenant {delegator.tenant}")
        # A start in the past grants nothing more than a start now.
        starts_at = max(body.starts_at or now, now)
        delegation = Delegation(
            delegator_id=delegator.id,
            delegate_id=delegate.id,
            tenant=delegator.tenant,
            starts_at=starts_at.astimezone(UTC),
            ends_at=body.until.astimezone(UTC),
            reason=body.reason,
            created_at=now.astimezone(UTC),
        )
        row = (
            delegation.delegator_id,
            delegation.delegate_id,
            delegation.tenant,
            _instant(delegation.starts_at),
            _instant(delegation.ends_at),
            delegation.reason,
        )
        await self._db.execute(_SET_DELEGATION, (*row, _instant(delegation.created_at)))
        await self._db.execute(_LOG, (_instant(now), "set", *row))
        await self._db.commit()
        return delegation

    async def clear_delegate(self, delegator: Principal, now: datetime) -> bool:
        """End `delegator`'s delegation; False when there was none."""
        cursor = await self._db.execute("DELETE FROM delegations WHERE delegator_id = ?", (delegator.id,))
        if cursor.rowcount > 0:
            log = (_instant(now), "cleared", delegator.id, None, delegator.tenant, None, None, None)
            await self._db.execute(_LOG, log)
        await self._db.commit()
        return cursor.rowcount > 0

    async def delegation_log(self, delegator_id: str) -> list[DelegationEvent]:
        """Every delegation `delegator_id` set or ended, oldest first."""
        cursor = await self._db.execute(_LOG_OF, (delegator_id,))
        return [
            DelegationEvent(
                at=row[0],
                action=row[1],
                delegator_id=row[2],
                delegate_id=row[3],
                tenant=row[4],
                starts_at=row[5],
                ends_at=row[6],
                reason=row[7],
            )
            for row in await cursor.fetchall()
        ]

    async def delegation_of(self, delegator_id: str) -> Delegation | None:
        """The stored delegation, whether it has begun, is running or is over (see Delegation.active_at)."""
        row = await self._one(_DELEGATION_OF, delegator_id)
        return None if row is None else _delegation(row)

    async def delegators_for(self, delegate: Principal, now: datetime) -> list[Principal]:
        """Who, in `delegate`'s tenant, delegates to `delegate` at `now`, with their current roles.

        Not transitive: if A delegates to B and B to C, C acts for B only.
        """
        at = _instant(now)
        cursor = await self._db.execute(_DELEGATORS_FOR, (delegate.id, delegate.tenant, at, at))
        return [_principal(row) for row in await cursor.fetchall()]

    async def _one(self, sql: str, *params: Any) -> Any:
        cursor = await self._db.execute(sql, params)
        return await cursor.fetchone()


async def _add_missing_columns(db: aiosqlite.Connection) -> None:
    """Bring a database made by an earlier version up to the current principals table."""
    cursor = await db.execute("PRAGMA table_info(principals)")
    present = {row[1] for row in await cursor.fetchall()}
    for name, definition in _ADDED_COLUMNS:
        if name not in present:
            try:
                await db.execute(f"ALTER TABLE principals ADD COLUMN {name} {definition}")
            except sqlite3.OperationalError as error:
                if "duplicate column" not in str(error):  # another process migrated it just now
                    raise

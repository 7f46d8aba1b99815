"""Principals and their API keys, kept in `<data-dir>/principals.db`. Keys are stored as SHA-256 digests.

API keys are 256-bit random tokens, so a plain digest is enough: there is nothing to brute-force that a
slow hash would protect, and lookups stay one indexed read.
"""

import hashlib
import json
import secrets
from pathlib import Path

import aiosqlite

from models.enums import Role
from models.principals import NewPrincipal, Principal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS principals (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    roles TEXT NOT NULL,
    tenant TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
)
"""


def _digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class PrincipalStore:
    """One open connection for the store's lifetime: the gateway authenticates every request here."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> "PrincipalStore":
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
        await db.execute(_SCHEMA)
        await db.commit()
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> "PrincipalStore":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def add(self, name: str, roles: list[Role], tenant: str = "default") -> NewPrincipal:
        principal = Principal(
            id=f"p-{secrets.token_hex(5)}", name=name, roles=sorted(set(roles)), tenant=tenant
        )
        api_key = f"cs_{secrets.token_urlsafe(32)}"
        await self._db.execute(
            "INSERT INTO principals (id, name, roles, tenant, key_hash) VALUES (?, ?, ?, ?, ?)",
            (principal.id, name, json.dumps(principal.roles), tenant, _digest(api_key)),
        )
        await self._db.commit()
        return NewPrincipal(principal=principal, api_key=api_key)

    async def authenticate(self, api_key: str) -> Principal | None:
        cursor = await self._db.execute(
            "SELECT id, name, roles, tenant FROM principals WHERE key_hash = ?", (_digest(api_key),)
        )
        row = await cursor.fetchone()
        if row is None:
            return None
        return Principal(id=row[0], name=row[1], roles=json.loads(row[2]), tenant=row[3])

    async def count(self) -> int:
        cursor = await self._db.execute("SELECT count(*) FROM principals")
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

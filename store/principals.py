"""Principals, their API keys and their out-of-office delegations, kept in `<data-dir>/principals.db`.

Keys are stored as SHA-256 digests. API keys are 256-bit random tokens, so a plain digest is enough:
there is nothing to brute-force that a slow hash would protect, and lookups stay one indexed read.

A principal made by `countersign principal add` has API keys in a table of their own (`api_keys`):
several at once during a rotation's grace period, each with when it was made, when it stops working
(`expires_at`, set by a rotation with a grace period) and when it was revoked, and its first few
characters (`prefix`) so that an administrator can tell keys apart without ever seeing one. Revoked and
expired rows stay, for history. A disabled principal signs in neither with a key nor with a token.

Principals who sign in with a JWT (api/tokens.py) are recorded here on their first request
(`sign_in`) and updated when their token says something new, so they have an email on file, receive
notifications, and can delegate and be delegated to like anyone else. They have no API key: their
roles and tenant are the identity provider's to say, and are as of their latest request.
"""

import asyncio
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
from pydantic import EmailStr, TypeAdapter, ValidationError

from models.enums import Role
from models.errors import CountersignError, Invalid, NotFound
from models.principals import (
    MAX_DELEGATION_DAYS,
    ApiKeyRecord,
    DelegateRequest,
    Delegation,
    DelegationEvent,
    KeyState,
    NewPrincipal,
    Principal,
    PrincipalRecord,
    Recipient,
    RotatedKey,
    is_reserved_tenant,
)

# `source`: 'api-key' for `countersign principal add`, 'jwt' for a token's subject (sign_in). The table
# once held each principal's one key digest (`key_hash`); `_move_keys_out` brings such a database here.
_PRINCIPALS_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    roles TEXT NOT NULL,
    tenant TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    email TEXT,
    source TEXT NOT NULL DEFAULT 'api-key',
    disabled_at TEXT
)
"""
_SCHEMA = (
    _PRINCIPALS_TABLE.format(table="principals")
    + """;
-- Keys by their digest: authenticating is one primary-key read joined to the principal's row.
-- Times are fixed-width UTC text (_instant), so that `expires_at > now` compares as time does.
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL,
    prefix TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_by_principal ON api_keys (principal_id);
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
)
# After any migration: an index made on the old principals table would go with it.
_INDEXES = "CREATE INDEX IF NOT EXISTS principals_by_tenant ON principals (tenant);"

# Columns added after a database may already exist: (name, definition) for ALTER TABLE ... ADD COLUMN.
_ADDED_COLUMNS = [("email", "TEXT")]

# Literal statements only: nothing from outside is ever spliced into SQL.
_PRINCIPAL_BY_KEY = (
    "SELECT p.id, p.name, p.roles, p.tenant, p.email, k.prefix "
    "FROM api_keys k JOIN principals p ON p.id = k.principal_id "
    "WHERE k.key_hash = ? AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > ?) "
    "AND p.disabled_at IS NULL"
)
_KEY_BY_DIGEST = (
    "SELECT k.revoked_at, k.expires_at, p.disabled_at, p.tenant "
    "FROM api_keys k LEFT JOIN principals p ON p.id = k.principal_id WHERE k.key_hash = ?"
)
_PRINCIPAL_BY_ID = (
    "SELECT id, name, roles, tenant, email FROM principals WHERE id = ? AND disabled_at IS NULL"
)
_PRINCIPALS_OF_TENANT = (
    "SELECT id, name, roles, tenant, email FROM principals "
    "WHERE tenant = ? AND disabled_at IS NULL ORDER BY name, id"
)
_SIGN_IN = "SELECT name, roles, tenant, email, source, disabled_at FROM principals WHERE id = ?"
_RECORD = (
    "SELECT id, name, roles, tenant, email, source, created_at, disabled_at FROM principals WHERE id = ?"
)
_RECORDS = (
    "SELECT id, name, roles, tenant, email, source, created_at, disabled_at FROM principals "
    "ORDER BY tenant, name, id"
)
_RECORDS_OF_TENANT = (
    "SELECT id, name, roles, tenant, email, source, created_at, disabled_at FROM principals "
    "WHERE tenant = ? ORDER BY name, id"
)
_KEYS_OF = (
    "SELECT principal_id, prefix, created_at, expires_at, revoked_at FROM api_keys "
    "WHERE principal_id = ? ORDER BY created_at, rowid"
)
_ALL_KEYS = (
    "SELECT principal_id, prefix, created_at, expires_at, revoked_at FROM api_keys "
    "ORDER BY principal_id, created_at, rowid"
)
_KEYS_OF_TENANT = (
    "SELECT k.principal_id, k.prefix, k.created_at, k.expires_at, k.revoked_at "
    "FROM api_keys k JOIN principals p ON p.id = k.principal_id WHERE p.tenant = ? "
    "ORDER BY k.principal_id, k.created_at, k.rowid"
)
_ADD_KEY = "INSERT INTO api_keys (key_hash, principal_id, prefix, created_at) VALUES (?, ?, ?, ?)"
# Both on the keys that still work at `now` (the same test as _PRINCIPAL_BY_KEY's).
_REVOKE_WORKING = (
    "UPDATE api_keys SET revoked_at = ?1 "
    "WHERE principal_id = ?2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1)"
)
# A second rotation within a grace period never lengthens the first one's.
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
_LOG_OF = (
    "SELECT at, action, delegator_id, delegate_id, tenant, starts_at, ends_at, reason "
    "FROM delegation_log WHERE delegator_id = ? ORDER BY seq"
)
_DELEGATION_OF = (
    "SELECT delegator_id, delegate_id, tenant, starts_at, ends_at, reason, created_at "
    "FROM delegations WHERE delegator_id = ?"
)
# A disabled delegator lends nothing: its roles are not for anyone to use while it is disabled.
_DELEGATORS_FOR = (
    "SELECT p.id, p.name, p.roles, p.tenant, p.email "
    "FROM delegations d JOIN principals p ON p.id = d.delegator_id "
    "WHERE d.delegate_id = ? AND d.tenant = ? AND p.tenant = d.tenant AND p.disabled_at IS NULL "
    "AND d.starts_at <= ? AND d.ends_at > ? ORDER BY p.name, p.id"
)
_email = TypeAdapter(EmailStr)
API_KEY_SOURCE, JWT_SOURCE = "api-key", "jwt"
# `cs_` and 7 characters of the key's 43: 42 of its 256 bits, enough to tell a principal's keys apart
# and far too few to help guess the rest.
PREFIX_LENGTH = 10

Clock = Callable[[], datetime]


class SignInRefused(CountersignError):
    """Why a token's subject may not sign in, fit to show to its bearer."""


def _digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def _new_key() -> tuple[str, str]:
    api_key = f"cs_{secrets.token_urlsafe(32)}"
    return api_key, api_key[:PREFIX_LENGTH]


def _instant(moment: datetime) -> str:
    """UTC, fixed width, so that SQLite compares instants as strings correctly."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no place here: pass an aware one")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _principal(row: Iterable[Any]) -> Principal | None:
    """None for a row no Principal can be made of: a tenant stored before its name was reserved."""
    id_, name, roles, tenant, _ = row
    try:
        return Principal(id=id_, name=name, roles=json.loads(roles), tenant=tenant)
    except ValidationError:
        return None


def _recipient(row: Iterable[Any]) -> Recipient | None:
    id_, name, roles, tenant, email = row
    try:
        return Recipient(id=id_, name=name, email=email, roles=json.loads(roles), tenant=tenant)
    except ValidationError:
        return None


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


def _key_record(row: Iterable[Any], now: datetime) -> ApiKeyRecord:
    _, prefix, created_at, expires_at, revoked_at = row
    expires, revoked = _moment(expires_at), _moment(revoked_at)
    state: KeyState
    if revoked is not None:
        state = "revoked"
    elif expires is None:
        state = "active"
    else:
        state = "grace" if expires > now else "expired"
    created = _moment(created_at)
    assert created is not None  # NOT NULL
    return ApiKeyRecord(
        prefix=prefix, created_at=created, expires_at=expires, revoked_at=revoked, state=state
    )


def _record(row: Iterable[Any], keys: list[ApiKeyRecord]) -> PrincipalRecord:
    id_, name, roles, tenant, email, source, created_at, disabled_at = row
    return PrincipalRecord(
        id=id_,
        name=name,
        tenant=tenant,
        roles=json.loads(roles),
        email=email,
        source=source,
        created_at=_moment(created_at),
        disabled_at=_moment(disabled_at),
        keys=keys,
    )


def _roles_text(roles: Iterable[Role]) -> str:
    return json.dumps(sorted(set(roles)))


class PrincipalStore:
    """One open connection for the store's lifetime: the gateway authenticates every request here.

    `clock` gives "now" for keys' expiry and the times recorded; tests pass their own.
    """

    def __init__(self, db: aiosqlite.Connection, clock: Clock | None = None) -> None:
        self._db = db
        self._clock = clock or (lambda: datetime.now(UTC))
        # One connection, shared by every request's coroutine: each read and each transaction takes
        # its turn. So one's transaction never begins inside, or commits half of, another's; and no
        # read's statement is open (holding SQLite's shared lock) when this connection's BEGIN
        # IMMEDIATE asks for the write lock while another connection commits: SQLite refuses that
        # at once as a deadlock ("database is locked") instead of waiting out the busy timeout.
        self._turn = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, clock: Clock | None = None) -> "PrincipalStore":
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
        try:
            await db.executescript(_SCHEMA)
            await _migrate(db)
            await db.executescript(_INDEXES)
            await db.commit()
        except BaseException:
            await db.close()
            raise
        return cls(db, clock)

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> "PrincipalStore":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the store's clock must give aware datetimes")
        return now

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        async with self._turn:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                await self._db.rollback()
                raise
            await self._db.commit()

    # ---- API-key principals --------------------------------------------------------------------

    async def add(
        self, name: str, roles: list[Role], tenant: str = "default", email: str | None = None
    ) -> NewPrincipal:
        """Raises pydantic's ValidationError for a bad name, tenant (a reserved one too) or email."""
        principal = Principal(
            id=f"p-{secrets.token_hex(5)}", name=name, roles=sorted(set(roles)), tenant=tenant
        )
        address = None if email is None else _email.validate_python(email)
        api_key, prefix = _new_key()
        now = _instant(self._now())
        async with self._transaction():
            await self._db.execute(
                "INSERT INTO principals (id, name, roles, tenant, email, source, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (principal.id, name, _roles_text(principal.roles), tenant, address, API_KEY_SOURCE, now),
            )
            await self._db.execute(_ADD_KEY, (_digest(api_key), principal.id, prefix, now))
        return NewPrincipal(principal=principal, api_key=api_key)

    async def authenticate(self, api_key: str) -> Principal | None:
        """The principal of a working key: not revoked, not past its grace, its principal not disabled.

        One indexed read. A key made before prefixes were kept gets its prefix on its first use here:
        the only time the store sees the key itself.
        """
        digest = _digest(api_key)
        row = await self._one(_PRINCIPAL_BY_KEY, digest, _instant(self._now()))
        if row is None:
            return None
        if row[5] is None:
            async with self._transaction():
                await self._db.execute(
                    "UPDATE api_keys SET prefix = ? WHERE key_hash = ? AND prefix IS NULL",
                    (api_key[:PREFIX_LENGTH], digest),
                )
        return _principal(row[:5])

    async def key_problem(self, api_key: str) -> str:
        """Why `authenticate` refused this key, fit to show to its bearer (who holds the key already)."""
        row = await self._one(_KEY_BY_DIGEST, _digest(api_key))
        if row is None:
            return "a valid API key is required: Authorization: Bearer <key>"
        revoked_at, expires_at, disabled_at, tenant = row
        if revoked_at is not None:
            return "this API key has been revoked"
        if expires_at is not None and expires_at <= _instant(self._now()):
            return "this API key has expired: it was replaced by a newer key"
        if disabled_at is not None:
            return "this API key's principal is disabled"
        if tenant is not None and is_reserved_tenant(tenant):
            return f"this API key's principal has the reserved tenant {tenant!r} and cannot sign in"
        return "a valid API key is required: Authorization: Bearer <key>"

    # ---- token principals ----------------------------------------------------------------------

    async def sign_in(self, principal: Principal, email: str | None) -> None:
        """Record a token's principal: inserted on its first request, updated when its name, roles,
        tenant or email changed, untouched (one indexed read, no write) otherwise.

        Raises SignInRefused when the principal is disabled, or when its id is an API-key principal's:
        a token never takes over a principal `countersign principal add` made, in any tenant.
        """
        row = await self._one(_SIGN_IN, principal.id)
        if row is None:
            async with self._transaction():
                cursor = await self._db.execute(
                    "INSERT INTO principals (id, name, roles, tenant, email, source, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    (
                        principal.id,
                        principal.name,
                        _roles_text(principal.roles),
                        principal.tenant,
                        email,
                        JWT_SOURCE,
                        _instant(self._now()),
                    ),
                )
            if cursor.rowcount == 1:
                return
            row = await self._one(_SIGN_IN, principal.id)  # another request recorded it just now
            if row is None:
                raise SignInRefused(f"principal {principal.id} could not be recorded; try again")
        name, roles, tenant, stored_email, source, disabled_at = row
        if source != JWT_SOURCE:
            if tenant != principal.tenant:
                raise SignInRefused(
                    "token claim 'sub' names a principal of another tenant; it cannot sign in here"
                )
            raise SignInRefused("token claim 'sub' names a principal that signs in with an API key")
        if disabled_at is not None:
            raise SignInRefused(f"principal {principal.id} is disabled")
        stored = (name, sorted(json.loads(roles)), tenant, stored_email)
        if stored == (principal.name, sorted(principal.roles), principal.tenant, email):
            return
        async with self._transaction():
            await self._db.execute(
                "UPDATE principals SET name = ?, roles = ?, tenant = ?, email = ? "
                "WHERE id = ? AND source = ? AND disabled_at IS NULL",
                (
                    principal.name,
                    _roles_text(principal.roles),
                    principal.tenant,
                    email,
                    principal.id,
                    JWT_SOURCE,
                ),
            )

    # ---- administration (countersign principal ...) ---------------------------------------------

    async def records(self, tenant: str | None = None) -> list[PrincipalRecord]:
        """Every principal (or a tenant's), with its keys' prefixes and states: never a key."""
        now = self._now()
        if tenant is None:
            rows = await self._all(_RECORDS)
            key_rows = await self._all(_ALL_KEYS)
        else:
            rows = await self._all(_RECORDS_OF_TENANT, tenant)
            key_rows = await self._all(_KEYS_OF_TENANT, tenant)
        keys: dict[str, list[ApiKeyRecord]] = {}
        for key in key_rows:
            keys.setdefault(key[0], []).append(_key_record(key, now))
        return [_record(row, keys.get(row[0], [])) for row in rows]

    async def record(self, principal_id: str) -> PrincipalRecord:
        """Raises NotFound."""
        row = await self._one(_RECORD, principal_id)
        if row is None:
            raise NotFound(f"no principal {principal_id}")
        now = self._now()
        return _record(row, [_key_record(key, now) for key in await self._all(_KEYS_OF, principal_id)])

    async def set_disabled(self, principal_id: str, disabled: bool) -> bool:
        """Disable (or enable) a principal; False when it already was. Raises NotFound.

        Disabled, it signs in neither with a key nor with a token, receives no notifications, cannot be
        delegated to and lends its roles to no delegate. Its keys are left as they are.
        """
        await self.record(principal_id)
        async with self._transaction():
            if disabled:
                cursor = await self._db.execute(
                    "UPDATE principals SET disabled_at = ? WHERE id = ? AND disabled_at IS NULL",
                    (_instant(self._now()), principal_id),
                )
            else:
                cursor = await self._db.execute(
                    "UPDATE principals SET disabled_at = NULL WHERE id = ? AND disabled_at IS NOT NULL",
                    (principal_id,),
                )
        return cursor.rowcount > 0

    async def revoke(self, principal_id: str) -> int:
        """Revoke every key of the principal, at once, those on a grace period too; how many were.

        The principal stays, for history; `rotate` gives it a new key. Raises NotFound, or Invalid for
        a token principal (it has no key: disable it instead).
        """
        # Even a principal of a reserved tenant: shutting it out is what it needs.
        await self._key_principal(principal_id, reserved_ok=True)
        async with self._transaction():
            now = _instant(self._now())
            cursor = await self._db.execute(_REVOKE_WORKING, (now, principal_id))
        return cursor.rowcount

    async def rotate(self, principal_id: str, grace: timedelta | None = None) -> RotatedKey:
        """A new key for the principal. Its working keys stop now (no `grace`) or when `grace` is over
        (never later than an earlier rotation already said). Raises NotFound, or Invalid for a token
        principal or a negative grace."""
        if grace is not None and grace < timedelta(0):
            raise Invalid("the grace period cannot be negative")
        record = await self._key_principal(principal_id)
        now = self._now()
        until = now + grace if grace else None
        api_key, prefix = _new_key()
        async with self._transaction():
            if until is None:
                cursor = await self._db.execute(_REVOKE_WORKING, (_instant(now), principal_id))
            else:
                cursor = await self._db.execute(
                    _EXPIRE_WORKING, (_instant(until), principal_id, _instant(now))
                )
            await self._db.execute(_ADD_KEY, (_digest(api_key), principal_id, prefix, _instant(now)))
        principal = Principal(id=record.id, name=record.name, roles=record.roles, tenant=record.tenant)
        return RotatedKey(
            principal=principal,
            api_key=api_key,
            prefix=prefix,
            replaced=cursor.rowcount,
            old_keys_until=until if cursor.rowcount else None,
        )

    async def set_roles(self, principal_id: str, roles: Iterable[Role]) -> tuple[list[Role], list[Role]]:
        """Replace the principal's roles: (before, after), with no write when they are the same.
        Raises NotFound, or Invalid for a token principal (its roles are its token's)."""
        record = await self._key_principal(principal_id)
        before, after = sorted(set(record.roles)), sorted(set(roles))
        if after != before:
            async with self._transaction():
                await self._db.execute(
                    "UPDATE principals SET roles = ? WHERE id = ?", (_roles_text(after), principal_id)
                )
        return before, after

    async def _key_principal(self, principal_id: str, reserved_ok: bool = False) -> PrincipalRecord:
        """An API-key principal's record; Invalid for a token principal, and (unless `reserved_ok`)
        for one whose tenant is reserved, which must get no new key or role."""
        record = await self.record(principal_id)
        if record.source != API_KEY_SOURCE:
            raise Invalid(
                f"{principal_id} signs in with a token: it has no API key, and its roles come from its "
                "identity provider (disable it to shut it out)"
            )
        if reserved_ok:
            return record
        try:
            Principal(id=record.id, name=record.name, roles=record.roles, tenant=record.tenant)
        except ValidationError:
            raise Invalid(
                f"{principal_id} has the reserved tenant {record.tenant!r}: it cannot be given keys or "
                "roles; disable it, and add a principal in a tenant of its own instead"
            ) from None
        return record

    # ---- reading -------------------------------------------------------------------------------

    async def get(self, principal_id: str) -> Principal | None:
        """The principal, when it is not disabled."""
        row = await self._one(_PRINCIPAL_BY_ID, principal_id)
        return None if row is None else _principal(row)

    async def recipient(self, principal_id: str) -> Recipient | None:
        row = await self._one(_PRINCIPAL_BY_ID, principal_id)
        return None if row is None else _recipient(row)

    async def recipients(self, tenant: str, roles: list[Role]) -> list[Recipient]:
        """The principals of `tenant` holding any of `roles`, by name; disabled ones are left out."""
        wanted = set(roles)
        if not wanted:
            return []
        everyone = [
            r for r in map(_recipient, await self._all(_PRINCIPALS_OF_TENANT, tenant)) if r is not None
        ]
        return [r for r in everyone if wanted.intersection(r.roles)]

    async def count(self) -> int:
        row = await self._one("SELECT count(*) FROM principals")
        return int(row[0]) if row else 0

    # ---- delegation ----------------------------------------------------------------------------

    async def set_delegate(self, delegator: Principal, body: DelegateRequest, now: datetime) -> Delegation:
        """Delegate `delegator`'s roles to `body.delegate_id` for a period, replacing any earlier delegation.

        Raises Invalid for a delegation to oneself, a period that is over or reaches more than
        MAX_DELEGATION_DAYS ahead, or a delegator unknown to this store; NotFound for a delegate that is
        not an enabled principal of the delegator's tenant (another tenant's are not disclosed).
        """
        if body.delegate_id == delegator.id:
            raise Invalid("you cannot delegate to yourself")
        if body.until <= now:
            raise Invalid("until must be in the future")
        if body.until > now + timedelta(days=MAX_DELEGATION_DAYS):
            raise Invalid(f"until must be at most {MAX_DELEGATION_DAYS} days away")
        # Every principal that can authenticate is stored (API-key ones by `principal add`, token ones
        # by sign_in), and the roles lent are the stored ones: a caller not found here lends nothing.
        stored = await self.get(delegator.id)
        if stored is None or stored.tenant != delegator.tenant:
            raise Invalid(f"{delegator.id} is not a principal of this store; it cannot delegate")
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
        async with self._transaction():
            await self._db.execute(_SET_DELEGATION, (*row, _instant(delegation.created_at)))
            await self._db.execute(_LOG, (_instant(now), "set", *row))
        return delegation

    async def clear_delegate(self, delegator: Principal, now: datetime) -> bool:
        """End `delegator`'s delegation; False when there was none."""
        async with self._transaction():
            cursor = await self._db.execute("DELETE FROM delegations WHERE delegator_id = ?", (delegator.id,))
            if cursor.rowcount > 0:
                log = (_instant(now), "cleared", delegator.id, None, delegator.tenant, None, None, None)
                await self._db.execute(_LOG, log)
        return cursor.rowcount > 0

    async def delegation_log(self, delegator_id: str) -> list[DelegationEvent]:
        """Every delegation `delegator_id` set or ended, oldest first."""
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
            for row in await self._all(_LOG_OF, delegator_id)
        ]

    async def delegation_of(self, delegator_id: str) -> Delegation | None:
        """The stored delegation, whether it has begun, is running or is over (see Delegation.active_at)."""
        row = await self._one(_DELEGATION_OF, delegator_id)
        return None if row is None else _delegation(row)

    async def delegators_for(self, delegate: Principal, now: datetime) -> list[Principal]:
        """Who, in `delegate`'s tenant, delegates to `delegate` at `now`, with their current roles.

        Not transitive: if A delegates to B and B to C, C acts for B only. Disabled delegators lend
        nothing.
        """
        at = _instant(now)
        rows = await self._all(_DELEGATORS_FOR, delegate.id, delegate.tenant, at, at)
        return [p for p in map(_principal, rows) if p is not None]

    async def _one(self, sql: str, *params: Any) -> Any:
        """The first row, read in this connection's turn (outside a transaction only)."""
        async with self._turn, self._db.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def _all(self, sql: str, *params: Any) -> list[Any]:
        """Every row, read in this connection's turn (outside a transaction only)."""
        async with self._turn, self._db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())


async def _columns(db: aiosqlite.Connection, table: str) -> set[str]:
    cursor = await db.execute("SELECT name FROM pragma_table_info(?)", (table,))
    return {row[0] for row in await cursor.fetchall()}


async def _missing_columns(db: aiosqlite.Connection) -> bool:
    present = await _columns(db, "principals")
    return any(name not in present for name, _ in _ADDED_COLUMNS)


async def _migrate(db: aiosqlite.Connection) -> None:
    """Bring a database made by an earlier version up to the current tables, in one transaction.

    BEGIN IMMEDIATE takes the write lock before looking: the gateway, the worker and the CLI may all
    open an old database at once, and whoever comes second finds the work done.
    """
    if "key_hash" not in await _columns(db, "principals") and not await _missing_columns(db):
        return  # the common case: nothing to do, and no write lock taken to find that out
    await db.execute("BEGIN IMMEDIATE")
    try:
        present = await _columns(db, "principals")
        for name, definition in _ADDED_COLUMNS:
            if name not in present:
                # Literal names from _ADDED_COLUMNS only.
                await db.execute(f"ALTER TABLE principals ADD COLUMN {name} {definition}")
        if "key_hash" in present:
            await _move_keys_out(db)
        await db.commit()
    except BaseException:
        await db.rollback()
        raise


async def _move_keys_out(db: aiosqlite.Connection) -> None:
    """From one key digest per principals row to the api_keys table, every key still working.

    SQLite cannot drop a NOT NULL UNIQUE column, so the table is rebuilt (SQLite's documented way:
    make the new table, copy, drop the old, rename the new). Key prefixes are unknown until each key is
    next used. The key's creation time is the principal's: the only one there is.
    """
    await db.execute("DROP TABLE IF EXISTS principals_new")
    await db.execute(_PRINCIPALS_TABLE.format(table="principals_new"))
    await db.execute(
        "INSERT OR IGNORE INTO api_keys (key_hash, principal_id, prefix, created_at) "
        "SELECT key_hash, id, NULL, "
        "coalesce(strftime('%Y-%m-%dT%H:%M:%S.000000Z', created_at), created_at) FROM principals"
    )
    await db.execute(
        "INSERT INTO principals_new (id, name, roles, tenant, created_at, email, source) "
        "SELECT id, name, roles, tenant, created_at, email, 'api-key' FROM principals"
    )
    await db.execute("DROP TABLE principals")
    await db.execute("ALTER TABLE principals_new RENAME TO principals")

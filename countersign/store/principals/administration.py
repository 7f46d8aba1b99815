"""Administration (`countersign principal ...`): listing principals with their keys, disabling one,
revoking and rotating its keys, replacing its roles.
"""

from collections.abc import Iterable
from datetime import timedelta

from pydantic import ValidationError

from countersign.models.enums import Role
from countersign.models.errors import Invalid, NotFound
from countersign.models.principals import ApiKeyRecord, Principal, PrincipalRecord, RotatedKey
from countersign.store.principals.api_keys import ADD_KEY, key_digest, new_key
from countersign.store.principals.connection import PrincipalConnection
from countersign.store.principals.rows import (
    API_KEY_SOURCE,
    instant_text,
    key_record_of_row,
    record_of_row,
    roles_text,
)

_RECORD = (
    "SELECT id, name, roles, tenant, email, source, created_at, disabled_at, "
    "slack_user_id, delivery, quiet_hours, timezone FROM principals WHERE id = ?"
)
_RECORDS = (
    "SELECT id, name, roles, tenant, email, source, created_at, disabled_at, "
    "slack_user_id, delivery, quiet_hours, timezone FROM principals "
    "ORDER BY tenant, name, id"
)
_RECORDS_OF_TENANT = (
    "SELECT id, name, roles, tenant, email, source, created_at, disabled_at, "
    "slack_user_id, delivery, quiet_hours, timezone FROM principals "
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


class PrincipalAdministration(PrincipalConnection):
    """What `countersign principal ...` does; never shows a key, only its prefix."""

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
            keys.setdefault(key[0], []).append(key_record_of_row(key, now))
        return [record_of_row(row, keys.get(row[0], [])) for row in rows]

    async def record(self, principal_id: str) -> PrincipalRecord:
        """Raises NotFound."""
        row = await self._one(_RECORD, principal_id)
        if row is None:
            raise NotFound(f"no principal {principal_id}")
        now = self._now()
        return record_of_row(
            row, [key_record_of_row(key, now) for key in await self._all(_KEYS_OF, principal_id)]
        )

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
                    (instant_text(self._now()), principal_id),
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
            now = instant_text(self._now())
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
        api_key, prefix = new_key()
        async with self._transaction():
            if until is None:
                cursor = await self._db.execute(_REVOKE_WORKING, (instant_text(now), principal_id))
            else:
                cursor = await self._db.execute(
                    _EXPIRE_WORKING, (instant_text(until), principal_id, instant_text(now))
                )
            await self._db.execute(ADD_KEY, (key_digest(api_key), principal_id, prefix, instant_text(now)))
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
                    "UPDATE principals SET roles = ? WHERE id = ?", (roles_text(after), principal_id)
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

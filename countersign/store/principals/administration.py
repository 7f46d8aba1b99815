"""Administration (`countersign principal ...`, `POST /principals`): listing principals with their keys,
disabling one, revoking and rotating its keys, replacing its roles.
"""

from collections.abc import Iterable
from datetime import timedelta

import sqlalchemy as sa
from pydantic import ValidationError

from countersign.models.enums import Role
from countersign.models.errors import Invalid, NotFound
from countersign.models.principals import ApiKeyRecord, Principal, PrincipalRecord, RotatedKey
from countersign.store.principals.api_keys import add_key, new_key, working
from countersign.store.principals.connection import PrincipalConnection
from countersign.store.principals.rows import (
    API_KEY_SOURCE,
    instant_text,
    key_record_of_row,
    record_of_row,
    roles_text,
)
from countersign.store.principals.schema import api_keys, principals

_p, _k = principals.c, api_keys.c
_RECORD = sa.select(
    _p.id,
    _p.name,
    _p.roles,
    _p.tenant,
    _p.email,
    _p.source,
    _p.created_at,
    _p.disabled_at,
    _p.slack_user_id,
    _p.delivery,
    _p.quiet_hours,
    _p.timezone,
)
_KEYS = sa.select(_k.principal_id, _k.prefix, _k.created_at, _k.expires_at, _k.revoked_at)


class PrincipalAdministration(PrincipalConnection):
    """What `countersign principal ...` does; never shows a key, only its prefix."""

    async def records(self, tenant: str | None = None) -> list[PrincipalRecord]:
        """Every principal (or a tenant's), with its keys' prefixes and states: never a key."""
        now = self._now()
        if tenant is None:
            rows = await self._all(_RECORD.order_by(_p.tenant, _p.name, _p.id))
            key_rows = await self._all(_KEYS.order_by(_k.principal_id, _k.created_at, _k.seq))
        else:
            rows = await self._all(_RECORD.where(_p.tenant == tenant).order_by(_p.name, _p.id))
            key_rows = await self._all(
                _KEYS.select_from(api_keys.join(principals, _p.id == _k.principal_id))
                .where(_p.tenant == tenant)
                .order_by(_k.principal_id, _k.created_at, _k.seq)
            )
        keys: dict[str, list[ApiKeyRecord]] = {}
        for key in key_rows:
            keys.setdefault(key.principal_id, []).append(key_record_of_row(key, now))
        return [record_of_row(row, keys.get(row.id, [])) for row in rows]

    async def record(self, principal_id: str) -> PrincipalRecord:
        """Raises NotFound."""
        row = await self._one(_RECORD.where(_p.id == principal_id))
        if row is None:
            raise NotFound(f"no principal {principal_id}")
        now = self._now()
        key_rows = await self._all(
            _KEYS.where(_k.principal_id == principal_id).order_by(_k.created_at, _k.seq)
        )
        return record_of_row(row, [key_record_of_row(key, now) for key in key_rows])

    async def set_disabled(self, principal_id: str, disabled: bool) -> bool:
        """Disable (or enable) a principal; False when it already was. Raises NotFound.

        Disabled, it signs in neither with a key nor with a token, receives no notifications, cannot be
        delegated to and lends its roles to no delegate. Its keys are left as they are.
        """
        await self.record(principal_id)
        change = sa.update(principals).where(_p.id == principal_id)
        if disabled:
            change = change.where(_p.disabled_at.is_(None)).values(disabled_at=instant_text(self._now()))
        else:
            change = change.where(_p.disabled_at.is_not(None)).values(disabled_at=None)
        async with self._transaction() as conn:
            changed = (await conn.execute(change)).rowcount
        return changed > 0

    async def revoke(self, principal_id: str) -> int:
        """Revoke every key of the principal, at once, those on a grace period too; how many were.

        The principal stays, for history; `rotate` gives it a new key. Raises NotFound, or Invalid for
        a token principal (it has no key: disable it instead).
        """
        # Even a principal of a reserved tenant: shutting it out is what it needs.
        await self._key_principal(principal_id, reserved_ok=True)
        async with self._transaction() as conn:
            # After a rotation running beside it: its new key is revoked too.
            await self._lock_principal(conn, principal_id)
            now = instant_text(self._now())
            revoked = await conn.execute(
                sa.update(api_keys)
                .where(_k.principal_id == principal_id, working(now))
                .values(revoked_at=now)
            )
        return revoked.rowcount

    async def rotate(self, principal_id: str, grace: timedelta | None = None) -> RotatedKey:
        """A new key for the principal. Its working keys stop now (no `grace`) or when `grace` is over
        (never later than an earlier rotation already said). Raises NotFound, or Invalid for a token
        principal or a negative grace.

        Two rotations at once take turns on the principal's row: the second replaces the first's new key
        too, so that no rotation leaves a key working that another rotation was to replace."""
        if grace is not None and grace < timedelta(0):
            raise Invalid("the grace period cannot be negative")
        record = await self._key_principal(principal_id)
        now = self._now()
        until = now + grace if grace else None
        api_key, prefix = new_key()
        replace = sa.update(api_keys).where(_k.principal_id == principal_id, working(instant_text(now)))
        if until is None:
            replace = replace.values(revoked_at=instant_text(now))
        else:
            # A second rotation within a grace period never lengthens the first one's.
            end = instant_text(until)
            replace = replace.values(
                expires_at=sa.case(
                    (_k.expires_at.is_(None), end), (_k.expires_at < end, _k.expires_at), else_=end
                )
            )
        async with self._transaction() as conn:
            await self._lock_principal(conn, principal_id)
            replaced = (await conn.execute(replace)).rowcount
            await conn.execute(add_key(api_key, principal_id, prefix, instant_text(now)))
        principal = Principal(id=record.id, name=record.name, roles=record.roles, tenant=record.tenant)
        return RotatedKey(
            principal=principal,
            api_key=api_key,
            prefix=prefix,
            replaced=replaced,
            old_keys_until=until if replaced else None,
        )

    async def set_roles(self, principal_id: str, roles: Iterable[Role]) -> tuple[list[Role], list[Role]]:
        """Replace the principal's roles: (before, after), with no write when they are the same.
        Raises NotFound, or Invalid for a token principal (its roles are its token's)."""
        record = await self._key_principal(principal_id)
        before, after = sorted(set(record.roles)), sorted(set(roles))
        if after != before:
            async with self._transaction() as conn:
                await conn.execute(
                    sa.update(principals).where(_p.id == principal_id).values(roles=roles_text(after))
                )
        return before, after

    async def discard(self, principal_id: str) -> None:
        """Remove a principal that was just added, and its keys, when its addition could not be
        recorded (api/services/principal_admin.py): a principal no audit event vouches for must not
        work. Not a way to remove principals in use: those are disabled, and kept for history."""
        async with self._transaction() as conn:
            await conn.execute(sa.delete(api_keys).where(_k.principal_id == principal_id))
            await conn.execute(sa.delete(principals).where(_p.id == principal_id))

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

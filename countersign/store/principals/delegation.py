"""Out-of-office delegation: one principal lending its roles to another of its tenant for a while,
with an append-only log of every delegation set or ended.
"""

from datetime import UTC, datetime, timedelta

from countersign.models.errors import Invalid, NotFound
from countersign.models.principals import (
    MAX_DELEGATION_DAYS,
    DelegateRequest,
    Delegation,
    DelegationEvent,
    Principal,
)
from countersign.store.principals.reading import PrincipalReading
from countersign.store.principals.rows import delegation_of_row, instant_text, principal_of_row

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


class Delegations(PrincipalReading):
    """Built on reading: a delegation is only set between enabled principals of this store."""

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
            instant_text(delegation.starts_at),
            instant_text(delegation.ends_at),
            delegation.reason,
        )
        async with self._transaction():
            await self._db.execute(_SET_DELEGATION, (*row, instant_text(delegation.created_at)))
            await self._db.execute(_LOG, (instant_text(now), "set", *row))
        return delegation

    async def clear_delegate(self, delegator: Principal, now: datetime) -> bool:
        """End `delegator`'s delegation; False when there was none."""
        async with self._transaction():
            cursor = await self._db.execute("DELETE FROM delegations WHERE delegator_id = ?", (delegator.id,))
            if cursor.rowcount > 0:
                log = (instant_text(now), "cleared", delegator.id, None, delegator.tenant, None, None, None)
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
        return None if row is None else delegation_of_row(row)

    async def delegators_for(self, delegate: Principal, now: datetime) -> list[Principal]:
        """Who, in `delegate`'s tenant, delegates to `delegate` at `now`, with their current roles.

        Not transitive: if A delegates to B and B to C, C acts for B only. Disabled delegators lend
        nothing.
        """
        at = instant_text(now)
        rows = await self._all(_DELEGATORS_FOR, delegate.id, delegate.tenant, at, at)
        return [p for p in map(principal_of_row, rows) if p is not None]

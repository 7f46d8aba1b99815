"""Out-of-office delegation: one principal lending its roles to another of its tenant for a while,
with an append-only log of every delegation set or ended.
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

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
from countersign.store.principals.schema import delegation_log, delegations, principals

_d, _l, _p = delegations.c, delegation_log.c, principals.c
_DELEGATION = sa.select(
    _d.delegator_id, _d.delegate_id, _d.tenant, _d.starts_at, _d.ends_at, _d.reason, _d.created_at
)
_LOG = sa.select(
    _l.at, _l.action, _l.delegator_id, _l.delegate_id, _l.tenant, _l.starts_at, _l.ends_at, _l.reason
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
        row = {
            "delegator_id": delegation.delegator_id,
            "delegate_id": delegation.delegate_id,
            "tenant": delegation.tenant,
            "starts_at": instant_text(delegation.starts_at),
            "ends_at": instant_text(delegation.ends_at),
            "reason": delegation.reason,
        }
        created = instant_text(delegation.created_at)
        replace = (
            self._insert(delegations)
            .values(**row, created_at=created)
            .on_conflict_do_update(index_elements=[_d.delegator_id], set_={**row, "created_at": created})
        )
        async with self._transaction() as conn:
            await conn.execute(replace)
            await conn.execute(sa.insert(delegation_log).values(**row, at=instant_text(now), action="set"))
        return delegation

    async def clear_delegate(self, delegator: Principal, now: datetime) -> bool:
        """End `delegator`'s delegation; False when there was none."""
        async with self._transaction() as conn:
            cleared = await conn.execute(sa.delete(delegations).where(_d.delegator_id == delegator.id))
            if cleared.rowcount > 0:
                await conn.execute(
                    sa.insert(delegation_log).values(
                        at=instant_text(now),
                        action="cleared",
                        delegator_id=delegator.id,
                        tenant=delegator.tenant,
                    )
                )
        return cleared.rowcount > 0

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
            for row in await self._all(_LOG.where(_l.delegator_id == delegator_id).order_by(_l.seq))
        ]

    async def delegation_of(self, delegator_id: str) -> Delegation | None:
        """The stored delegation, whether it has begun, is running or is over (see Delegation.active_at)."""
        row = await self._one(_DELEGATION.where(_d.delegator_id == delegator_id))
        return None if row is None else delegation_of_row(row)

    async def delegators_for(self, delegate: Principal, now: datetime) -> list[Principal]:
        """Who, in `delegate`'s tenant, delegates to `delegate` at `now`, with their current roles.

        Not transitive: if A delegates to B and B to C, C acts for B only. Disabled delegators lend
        nothing.
        """
        at = instant_text(now)
        # A disabled delegator lends nothing: its roles are not for anyone to use while it is disabled.
        rows = await self._all(
            sa.select(_p.id, _p.name, _p.roles, _p.tenant, _p.email)
            .select_from(delegations.join(principals, _p.id == _d.delegator_id))
            .where(
                _d.delegate_id == delegate.id,
                _d.tenant == delegate.tenant,
                _p.tenant == _d.tenant,
                _p.disabled_at.is_(None),
                _d.starts_at <= at,
                _d.ends_at > at,
            )
            .order_by(_p.name, _p.id)
        )
        return [p for p in map(principal_of_row, rows) if p is not None]

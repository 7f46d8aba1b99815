"""Reading enabled principals: one by id, and the recipients of a tenant's notifications."""

import sqlalchemy as sa

from countersign.models.enums import Role
from countersign.models.principals import Principal, Recipient
from countersign.store.principals.connection import PrincipalConnection
from countersign.store.principals.rows import principal_of_row, recipient_of_row
from countersign.store.principals.schema import principals

_p = principals.c
_PRINCIPAL = sa.select(_p.id, _p.name, _p.roles, _p.tenant, _p.email)
_RECIPIENT = sa.select(
    _p.id, _p.name, _p.roles, _p.tenant, _p.email, _p.slack_user_id, _p.delivery, _p.quiet_hours, _p.timezone
)


class PrincipalReading(PrincipalConnection):
    """Enabled principals only: a disabled one is neither returned nor notified."""

    async def get(self, principal_id: str) -> Principal | None:
        """The principal, when it is not disabled."""
        row = await self._one(_PRINCIPAL.where(_p.id == principal_id, _p.disabled_at.is_(None)))
        return None if row is None else principal_of_row(row)

    async def recipient(self, principal_id: str) -> Recipient | None:
        row = await self._one(_RECIPIENT.where(_p.id == principal_id, _p.disabled_at.is_(None)))
        return None if row is None else recipient_of_row(row)

    async def recipients(self, tenant: str, roles: list[Role]) -> list[Recipient]:
        """The principals of `tenant` holding any of `roles`, by name; disabled ones are left out."""
        wanted = set(roles)
        if not wanted:
            return []
        rows = await self._all(
            _RECIPIENT.where(_p.tenant == tenant, _p.disabled_at.is_(None)).order_by(_p.name, _p.id)
        )
        everyone = [r for r in map(recipient_of_row, rows) if r is not None]
        return [r for r in everyone if wanted.intersection(r.roles)]

    async def count(self) -> int:
        row = await self._one(sa.select(sa.func.count()).select_from(principals))
        return int(row[0]) if row else 0

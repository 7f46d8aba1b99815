"""Reading enabled principals: one by id, and the recipients of a tenant's notifications."""

from countersign.models.enums import Role
from countersign.models.principals import Principal, Recipient
from countersign.store.principals.connection import PrincipalConnection
from countersign.store.principals.rows import principal_of_row, recipient_of_row

_PRINCIPAL_BY_ID = (
    "SELECT id, name, roles, tenant, email FROM principals WHERE id = ? AND disabled_at IS NULL"
)
_RECIPIENT_BY_ID = (
    "SELECT id, name, roles, tenant, email, slack_user_id, delivery, quiet_hours, timezone "
    "FROM principals WHERE id = ? AND disabled_at IS NULL"
)
_PRINCIPALS_OF_TENANT = (
    "SELECT id, name, roles, tenant, email, slack_user_id, delivery, quiet_hours, timezone "
    "FROM principals WHERE tenant = ? AND disabled_at IS NULL ORDER BY name, id"
)


class PrincipalReading(PrincipalConnection):
    """Enabled principals only: a disabled one is neither returned nor notified."""

    async def get(self, principal_id: str) -> Principal | None:
        """The principal, when it is not disabled."""
        row = await self._one(_PRINCIPAL_BY_ID, principal_id)
        return None if row is None else principal_of_row(row)

    async def recipient(self, principal_id: str) -> Recipient | None:
        row = await self._one(_RECIPIENT_BY_ID, principal_id)
        return None if row is None else recipient_of_row(row)

    async def recipients(self, tenant: str, roles: list[Role]) -> list[Recipient]:
        """The principals of `tenant` holding any of `roles`, by name; disabled ones are left out."""
        wanted = set(roles)
        if not wanted:
            return []
        everyone = [
            r for r in map(recipient_of_row, await self._all(_PRINCIPALS_OF_TENANT, tenant)) if r is not None
        ]
        return [r for r in everyone if wanted.intersection(r.roles)]

    async def count(self) -> int:
        row = await self._one("SELECT count(*) FROM principals")
        return int(row[0]) if row else 0

"""Adding principals and listing them: `countersign principal add` (cli/principals.py) and a tenant's
ADMIN through the API (`POST /principals`, `GET /principals`) add one the same way, and record the
same `principal_added` event in the tenant's admin audit chain (store/admin_audit.py).

Through the API the tenant is the ADMIN's own, the actor is the ADMIN, and OPERATOR is not granted:
it reads every tenant's metrics, which no tenant's ADMIN may hand out. A principal whose addition
could not be audited is removed again (its key never shown), so that none works without its record.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from countersign.models.decisions import Refusal
from countersign.models.enums import Role
from countersign.models.errors import Forbidden, Invalid
from countersign.models.principal_admin import AddPrincipalRequest, PrincipalList, PrincipalSummary
from countersign.models.principals import NewPrincipal, Principal, PrincipalRecord
from countersign.store.admin_audit import AdminAudit, Data
from countersign.store.principals import PrincipalStore

EVENT = "principal_added"
# Roles that reach beyond a tenant: granted by whoever holds the database (the CLI), never by an ADMIN.
_BEYOND_A_TENANT = frozenset({Role.OPERATOR})


def roles_text(roles: Iterable[Role]) -> str:
    return ",".join(roles) or "none"


@dataclass(frozen=True)
class Added:
    created: NewPrincipal  # with its key, to show once
    record: PrincipalRecord  # as stored, with its key's prefix


async def add_principal(
    store: PrincipalStore,
    name: str,
    roles: list[Role],
    tenant: str,
    *,
    email: str | None = None,
    slack_user_id: str | None = None,
    principal_id: str | None = None,
) -> Added:
    """Add it with its first key. Raises pydantic's ValidationError for a bad value, PrincipalExists
    (409) for an id on file, and Invalid for a Slack member id another principal has."""
    try:
        created = await store.add(
            name, roles, tenant, email=email, slack_user_id=slack_user_id, principal_id=principal_id
        )
    except ValueError as error:  # a Slack member id another principal has (bad values are pydantic's)
        if isinstance(error, ValidationError):
            raise
        raise Invalid(str(error)) from None
    return Added(created, await store.record(created.principal.id))


def added_event(record: PrincipalRecord) -> tuple[str, str, Data]:
    """The audit event of an addition: (event, detail, data). Never the key: its prefix."""
    return (
        EVENT,
        f"added {record.id} ({record.name}) with roles {roles_text(record.roles)}",
        {
            "name": record.name,
            "roles": ",".join(record.roles),
            "key_prefix": record.keys[0].prefix,
            "slack_user_id": record.slack_user_id,
        },
    )


def summary(record: PrincipalRecord) -> PrincipalSummary:
    return PrincipalSummary(
        id=record.id,
        name=record.name,
        tenant=record.tenant,
        roles=record.roles,
        email=record.email,
        slack_user_id=record.slack_user_id,
        source=record.source,
        status=record.status,
        created_at=record.created_at,
        disabled_at=record.disabled_at,
        working_keys=sum(key.state in ("active", "grace") for key in record.keys),
    )


def _admin_only(principal: Principal, doing: str) -> None:
    if Role.ADMIN not in principal.roles:
        raise Forbidden(f"only an ADMIN may {doing}", Refusal.NOT_ALLOWED)


class PrincipalAdminService:
    """A tenant's ADMIN adding and listing the principals of its own tenant."""

    def __init__(self, store: PrincipalStore, audit: AdminAudit) -> None:
        self._store = store
        self._audit = audit

    async def add(self, admin: Principal, body: AddPrincipalRequest) -> NewPrincipal:
        _admin_only(admin, "add principals")
        beyond = sorted(_BEYOND_A_TENANT.intersection(body.roles))
        if beyond:
            raise Forbidden(
                f"{', '.join(beyond)} reaches beyond a tenant: only `countersign principal add` grants it",
                Refusal.NOT_ALLOWED,
            )
        added = await add_principal(
            self._store, body.name, body.roles, admin.tenant, email=body.email, principal_id=body.id
        )
        event, detail, data = added_event(added.record)
        try:
            await self._audit.record(admin.tenant, event, added.record.id, detail, data, by=admin)
        except Exception:
            await self._store.discard(added.record.id)
            raise
        return added.created

    async def list(self, admin: Principal) -> PrincipalList:
        """The ADMIN's tenant's principals, disabled ones included, with no key material."""
        _admin_only(admin, "list principals")
        return PrincipalList(items=[summary(record) for record in await self._store.records(admin.tenant)])

"""What the first `countersign up` on a data dir makes: a gateway signing key, an audit key, one
demo principal per role (whose API keys are shown once), and a demo directory for their tenant."""

from sqlalchemy.exc import SQLAlchemyError

from countersign.api.services.directory import imported_event
from countersign.config.settings import Settings
from countersign.directory.demo import DEMO_TENANT, demo_records
from countersign.models.directory import DirectoryKind
from countersign.models.enums import Role
from countersign.models.principals import NewPrincipal, PrincipalRecord
from countersign.security import audit_keys, gateway_keys
from countersign.stack.supervisor import StackError
from countersign.store.admin_audit import ACTOR, AdminAudit
from countersign.store.audit_store import AuditStore
from countersign.store.directory import DirectoryStore
from countersign.store.principals import PrincipalStore


async def demo_principals(settings: Settings) -> tuple[list[NewPrincipal], list[PrincipalRecord]]:
    """On first run only: one demo principal per role, plus a requester with no role, each recorded in
    the tenant's admin audit as `countersign principal add` records one (the audit log opened first,
    so principals it could not record are never made). Later: ([], the demo principals made then), so
    `up` can say how to get one of them a key again."""
    try:
        async with (
            await AuditStore.open(settings.audit_url, keyring=settings.audit_keyring()) as audit_store,
            await PrincipalStore.open(settings.database_url) as store,
        ):
            if await store.count():
                existing = [r for r in await store.records() if r.name.startswith("demo-")]
                return [], existing
            audit = AdminAudit(audit_store)
            # Addresses at example.com: notifications to them are real messages in the outbox to open.
            wanted: list[tuple[str, list[Role]]] = [("demo-requester", [])]
            wanted += [(f"demo-{role.value.lower().replace('_', '-')}", [role]) for role in Role]
            created = []
            for name, roles in wanted:
                made = await store.add(name, roles, email=f"{name}@example.com")
                record = await store.record(made.principal.id)
                await audit.record(
                    record.tenant,
                    "principal_added",
                    record.id,
                    f"added {record.id} ({record.name}) with roles {','.join(roles) or '-'}: a demo "
                    "principal of the first `countersign up`",
                    {"name": record.name, "roles": ",".join(roles), "key_prefix": record.keys[0].prefix},
                )
                created.append(made)
            return created, []
    except (SQLAlchemyError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StackError(f"the audit log or the principal store cannot be used: {reason}") from None


async def demo_directory(settings: Settings) -> dict[DirectoryKind, int]:
    """The demo directory (directory/demo.py) for the demo principals' tenant, only while that tenant's
    directory is empty; each kind recorded in the tenant's admin audit as `countersign directory import`
    records one (the audit log opened first). Answers how many records of each kind it added: none when
    the directory had any."""
    try:
        async with (
            await AuditStore.open(settings.audit_url, keyring=settings.audit_keyring()) as audit_store,
            await DirectoryStore.open(settings.database_url) as store,
        ):
            if await store.count(DEMO_TENANT):
                return {}
            audit = AdminAudit(audit_store)
            added = {}
            for kind, records in demo_records().items():
                done = await store.put(DEMO_TENANT, kind, records)
                event, detail, data = imported_event(
                    kind, done, "the demo directory of the first `countersign up`"
                )
                # About no principal: the principal id is the actor's, as the CLI's imports record it.
                await audit.record(DEMO_TENANT, event, ACTOR, detail, data)
                added[kind] = done.added
            return added
    except (SQLAlchemyError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StackError(f"the audit log or the directory cannot be used: {reason}") from None


def ensure_keys(settings: Settings) -> None:
    """First run: a gateway signing key and an audit key in the data dir, unless the settings name
    their own. The gateway and the worker started below read them from there."""
    if settings.gateway_signing_keys is None:
        gateway_keys.ensure_dev_key(settings.data_dir)
    if settings.audit_keys is None:
        audit_keys.ensure_dev_key(settings.data_dir)

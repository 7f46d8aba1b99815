"""What the first `countersign up` on a data dir makes: a gateway signing key, an audit key, and one
demo principal per role (whose API keys are shown once)."""

from countersign.config.settings import Settings
from countersign.models.enums import Role
from countersign.models.principals import NewPrincipal, PrincipalRecord
from countersign.security import audit_keys, gateway_keys
from countersign.store.principals import PrincipalStore


async def demo_principals(settings: Settings) -> tuple[list[NewPrincipal], list[PrincipalRecord]]:
    """On first run only: one demo principal per role, plus a requester with no role. Later: ([], the
    demo principals made then), so `up` can say how to get one of them a key again."""
    async with await PrincipalStore.open(settings.principals_db) as store:
        if await store.count():
            existing = [r for r in await store.records() if r.name.startswith("demo-")]
            return [], existing
        # Addresses at example.com: notifications to them are real messages in the outbox to open.
        created = [await store.add("demo-requester", [], email="demo-requester@example.com")]
        for role in Role:
            name = f"demo-{role.value.lower().replace('_', '-')}"
            created.append(await store.add(name, [role], email=f"{name}@example.com"))
        return created, []


def ensure_keys(settings: Settings) -> None:
    """First run: a gateway signing key and an audit key in the data dir, unless the settings name
    their own. The gateway and the worker started below read them from there."""
    if settings.gateway_signing_keys is None:
        gateway_keys.ensure_dev_key(settings.data_dir)
    if settings.audit_keys is None:
        audit_keys.ensure_dev_key(settings.data_dir)

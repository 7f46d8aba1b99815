"""What the first `countersign up` makes on a data dir: demo principals, each in the tenant's admin
audit like any principal added, and none when that audit cannot be written."""

from pathlib import Path

import pytest

from countersign.config.settings import Settings
from countersign.stack.first_run import demo_principals, ensure_keys
from countersign.stack.supervisor import StackError
from countersign.store.admin_audit import chain_for
from countersign.store.audit_store import AuditStore
from countersign.store.principals import PrincipalStore
from countersign.store.sql import default_url


async def test_demo_principals_are_audited_as_added(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)
    ensure_keys(settings)
    created, existing = await demo_principals(settings)
    assert existing == [] and len(created) >= 9
    async with await AuditStore.open(settings.audit_url, keyring=settings.audit_keyring()) as audit:
        events = await audit.for_workflow(chain_for("default"))
        assert [e.event for e in events] == ["principal_added"] * len(created)
        assert {e.data["name"] for e in events if e.data} == {c.principal.name for c in created}
        assert (await audit.verify()).ok
    # A second `up` makes nothing and records nothing.
    again, existing = await demo_principals(settings)
    assert again == [] and len(existing) == len(created)


async def test_no_demo_principal_is_made_when_the_audit_cannot_record_it(tmp_path: Path) -> None:
    # Nothing listens on port 9: the database cannot be opened (the audit log first), so nothing is created,
    # and nothing falls back to a database in the data dir either.
    settings = Settings(
        _env_file=None, data_dir=tmp_path, audit_database_url="postgresql://someone@127.0.0.1:9/none"
    )
    ensure_keys(settings)
    with pytest.raises(StackError, match="the audit log or the principal store cannot be used"):
        await demo_principals(settings)
    assert not (tmp_path / "audit.db").exists()
    async with await PrincipalStore.open(default_url(tmp_path)) as store:
        assert await store.count() == 0

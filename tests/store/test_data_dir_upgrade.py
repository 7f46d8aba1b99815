"""A data dir made by c7a1849, the release before one database (tests/fixtures): started by this
release, it keeps its principals and keys, its audit log, its tool records and its outbox, on SQLite in
place and with its files imported into PostgreSQL; its files are set aside, and a second start imports
nothing twice."""

import json
import tarfile
from pathlib import Path

from countersign.security.audit_keys import AuditKeyring
from countersign.store.audit_store import AuditStore
from countersign.store.outbox import OutboxStore
from countersign.store.principals import PrincipalStore
from countersign.store.startup import prepare_database
from countersign.store.tool_records import ToolRecordStore
from tests.conftest import Location

FIXTURES = Path(__file__).parent.parent / "fixtures"
MADE_BY = json.loads((FIXTURES / "datadir_c7a1849.json").read_text())


def _unpack(into: Path) -> Path:
    with tarfile.open(FIXTURES / "datadir_c7a1849.tar.gz") as archive:
        archive.extractall(into, filter="data")
    return into


async def test_a_data_dir_of_the_release_before_keeps_everything(tmp_path: Path, location: Location) -> None:
    data_dir = _unpack(tmp_path / "data")
    # SQLite: the data dir's own audit.db is the database, migrated in place. PostgreSQL: a deployment
    # that already kept its audit log there (COUNTERSIGN_AUDIT_DATABASE_URL) and principals in files.
    url = f"sqlite:///{data_dir / 'audit.db'}" if location.schema is None else location.url
    ready = await prepare_database(url, data_dir, schema_name=location.schema)
    assert ready.imported > 0
    for old in ("principals.db", "records.db", "outbox", "notifications"):
        assert not (data_dir / old).exists(), old
        assert (data_dir / f"{old}.imported").exists(), old

    async with await PrincipalStore.open(url, schema=location.schema) as principals:
        for principal_id, key in MADE_BY["keys"].items():
            found = await principals.authenticate(key)
            assert found is not None, principal_id
            assert principal_id in (found.id, found.name)
        grace = await principals.record("p-69f95625dc")
        assert (grace.name, grace.email) == ("Grace Hopper", "grace@example.com")

    async with await ToolRecordStore.open(url, schema=location.schema) as records:
        kept = {row["idempotency_key"]: row for row in await records.records()}
    task = MADE_BY["workflows"]["req-default-e8e0bc2f0c8e"]
    assert kept["req-default-e8e0bc2f0c8e:v1"]["record_id"] == task["task_id"]

    async with await OutboxStore.open(url, schema=location.schema) as outbox:
        messages = await outbox.messages()
        email_key = MADE_BY["workflows"]["req-default-80ab00943ceb"]["idempotency_key"]
        assert len(messages) == MADE_BY["outbox_messages"]
        # Sent before the upgrade: a retry after it must not send again.
        assert await outbox.was_sent(email_key)

    if location.schema is None:  # the audit log was in this file all along: every chain still verifies
        keyring = AuditKeyring.from_text((data_dir / "keys" / "audit.key").read_text().strip())
        async with await AuditStore.open(url, keyring=keyring) as audit:
            report = await audit.verify()
        assert report.ok
        assert report.chains >= len(MADE_BY["workflows"])

    again = await prepare_database(url, data_dir, schema_name=location.schema)
    assert again.imported == 0
    assert again.before == again.revision

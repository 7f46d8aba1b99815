"""`countersign directory import/list` through Typer's CliRunner on SQLite and PostgreSQL: the kind from
the file's name, counts, the audit event, a bad row refusing the whole file, listing and searching."""

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner, Result

from countersign.cli.main import app
from countersign.config.settings import Settings
from countersign.models.audit import StoredAuditEvent
from countersign.models.directory import DirectoryKind, Record
from countersign.models.enums import ActorKind
from countersign.store.admin_audit import chain_for
from countersign.store.audit_store import AuditStore
from countersign.store.directory import DirectoryStore

VENDORS = """\
name,aliases,emails,vendor_id,default_contact
ABC Logistics,ABC Logistics Inc,sales@abclogistics.com; billing@abclogistics.com,V-1001,sales@abclogistics.com
Globex,,,,support@globex.example
"""


def run(tmp_path: Path, url: str, *args: str) -> Result:
    arguments = ["directory", *args, "--data-dir", str(tmp_path)]
    return CliRunner().invoke(app, arguments, env={"COUNTERSIGN_DATABASE_URL": url})


def stored(tmp_path: Path, url: str, tenant: str, kind: DirectoryKind) -> list[Record]:
    async def read() -> list[Record]:
        async with await DirectoryStore.open(url) as store:
            return await store.records(tenant, kind)

    return asyncio.run(read())


def audited(tmp_path: Path, url: str, tenant: str) -> list[StoredAuditEvent]:
    settings = Settings(_env_file=None, data_dir=tmp_path, audit_database_url=url)

    async def read() -> list[StoredAuditEvent]:
        async with await AuditStore.open(url, keyring=settings.audit_keyring()) as store:
            return await store.for_workflow(chain_for(tenant))

    return asyncio.run(read())


def test_import_then_list(tmp_path: Path, database_url: str) -> None:
    file = tmp_path / "acme-counterparties.csv"
    file.write_text(VENDORS, encoding="utf-8")
    result = run(tmp_path, database_url, "import", str(file), "--tenant", "acme")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "imported counterparties into tenant acme: 2 added, 0 updated"
    assert [r.key for r in stored(tmp_path, database_url, "acme", DirectoryKind.COUNTERPARTIES)] == [
        "abc logistics",
        "globex",
    ]
    assert stored(tmp_path, database_url, "default", DirectoryKind.COUNTERPARTIES) == []
    (event,) = audited(tmp_path, database_url, "acme")
    assert (event.event, event.actor, event.actor_kind) == ("directory_imported", "cli", ActorKind.SYSTEM)
    assert event.data is not None
    assert (event.data["kind"], event.data["added"], event.data["source"]) == (
        "counterparties",
        2,
        "acme-counterparties.csv",
    )
    # Any file name, with --kind; the default tenant.
    people = tmp_path / "export.json"
    people.write_text(json.dumps([{"name": "Jane Doe", "email": "jane.doe@example.com"}]), encoding="utf-8")
    result = run(tmp_path, database_url, "import", str(people), "--kind", "people")
    assert result.exit_code == 0, result.output

    listed = run(tmp_path, database_url, "list", "counterparties", "--tenant", "acme", "--json")
    assert listed.exit_code == 0, listed.output
    records = json.loads(listed.stdout)
    assert records[0]["emails"] == ["sales@abclogistics.com", "billing@abclogistics.com"]
    assert records[1] == {
        "name": "Globex",
        "aliases": [],
        "emails": ["support@globex.example"],
        "default_contact": "support@globex.example",
    }
    searched = run(tmp_path, database_url, "list", "counterparties", "--tenant", "acme", "--q", "globx")
    assert searched.exit_code == 0 and "Globex" in searched.stdout
    table = run(tmp_path, database_url, "list", "people")
    assert "Jane Doe" in table.stdout and "jane.doe@example.com" in table.stdout


def test_a_bad_file_imports_nothing(tmp_path: Path, database_url: str) -> None:
    file = tmp_path / "budgets.csv"
    file.write_text("cost_center,currency,remaining\nENG,USD,25000\nFIN,dollars,10\n", encoding="utf-8")
    result = run(tmp_path, database_url, "import", str(file))
    assert result.exit_code == 2
    assert "budgets.csv: nothing was imported; 1 problem:" in result.stderr
    assert "line 3, currency: String should match pattern" in result.stderr
    assert stored(tmp_path, database_url, "default", DirectoryKind.BUDGETS) == []
    unknown = tmp_path / "vendors.csv"
    unknown.write_text(VENDORS, encoding="utf-8")
    result = run(tmp_path, database_url, "import", str(unknown))
    assert result.exit_code == 2 and "cannot tell the kind" in result.output
    result = run(tmp_path, database_url, "import", str(tmp_path / "missing-people.csv"))
    assert result.exit_code == 2 and "No such file" in result.stderr
    assert audited(tmp_path, database_url, "default") == []

"""`countersign principal list/show/disable/enable/revoke/rotate/roles` through Typer's CliRunner: what
each does to the store, what it prints, and the audit event it leaves; with the database on SQLite and
on PostgreSQL."""

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from countersign.cli.main import app
from countersign.config.settings import Settings
from countersign.models.audit import StoredAuditEvent
from countersign.models.enums import ActorKind, Role
from countersign.models.principals import Principal
from countersign.store.admin_audit import chain_for
from countersign.store.audit_store import AuditStore
from countersign.store.principals import PrincipalStore


class Cli:
    """`countersign principal ...` on a data dir, with its database at `url` (COUNTERSIGN_DATABASE_URL)."""

    def __init__(self, data_dir: Path, url: str) -> None:
        self.data_dir = data_dir
        self.env = {"COUNTERSIGN_DATABASE_URL": url}
        self.settings = Settings(_env_file=None, data_dir=data_dir, audit_database_url=url)

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        arguments = ["principal", *args, "--data-dir", str(self.data_dir)]
        return CliRunner().invoke(app, arguments, env={**self.env, **(env or {})})

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.exit_code == 0, result.output
        return result

    def add(self, name: str, *options: str) -> tuple[str, str]:
        """(principal id, key)"""
        result = self.ok("add", name, *options)
        key = result.stdout.strip().splitlines()[-1]
        principal = self.authenticate(key)
        assert principal is not None
        return principal.id, key

    def authenticate(self, key: str) -> Principal | None:
        async def check() -> Principal | None:
            async with await PrincipalStore.open(self.settings.database_url) as store:
                return await store.authenticate(key)

        return asyncio.run(check())

    def audit(self, tenant: str = "default") -> list[StoredAuditEvent]:
        async def read() -> list[StoredAuditEvent]:
            keyring = self.settings.audit_keyring()
            async with await AuditStore.open(self.settings.audit_url, keyring=keyring) as store:
                return await store.for_workflow(chain_for(tenant))

        return asyncio.run(read())

    def last_event(self, tenant: str = "default") -> StoredAuditEvent:
        events = self.audit(tenant)
        assert events, f"no audit event in {chain_for(tenant)}"
        return events[-1]


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Cli:
    return Cli(tmp_path, database_url)


def assert_event(event: StoredAuditEvent, name: str, principal_id: str, **data: Any) -> None:
    assert (event.event, event.actor, event.actor_kind) == (name, "cli", ActorKind.SYSTEM)
    assert event.data is not None and event.data["principal_id"] == principal_id
    assert "os_user" in event.data
    for key, value in data.items():
        assert event.data[key] == value, (key, event.data)


def test_add_is_audited_and_accepts_the_read_only_roles(cli: Cli) -> None:
    principal_id, key = cli.add("Aud", "--roles", "auditor,OPERATOR", "--tenant", "acme")
    principal = cli.authenticate(key)
    assert principal is not None and principal.roles == [Role.AUDITOR, Role.OPERATOR]
    event = cli.last_event("acme")
    assert_event(event, "principal_added", principal_id, roles="AUDITOR,OPERATOR", key_prefix=key[:10])
    assert event.tenant == "acme" and event.workflow_id == "principals@acme"
    assert key not in json.dumps(event.model_dump(mode="json"))


def test_list_and_show_give_everything_but_the_key(cli: Cli) -> None:
    ada_id, ada_key = cli.add("Ada", "--roles", "MANAGER,FINANCE", "--tenant", "acme", "--email", "a@x.org")
    bob_id, bob_key = cli.add("Bob", "--tenant", "globex")
    listing = cli.ok("list")
    assert ada_key not in listing.output and bob_key not in listing.output
    header, *rows = listing.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "TENANT", "ROLES", "EMAIL", "SOURCE", "STATUS", "KEYS"]
    ada_row = [ada_id, "Ada", "acme", "FINANCE,MANAGER", "a@x.org", "api-key", "active", f"{ada_key[:10]}…"]
    assert rows[0].split() == [*ada_row, "active"]
    assert rows[1].split()[:3] == [bob_id, "Bob", "globex"]
    only = cli.ok("list", "--tenant", "globex")
    assert [line.split()[0] for line in only.stdout.splitlines()[1:]] == [bob_id]

    as_json = json.loads(cli.ok("list", "--json").stdout)
    assert [(p["id"], p["status"], p["keys"][0]["prefix"], p["keys"][0]["state"]) for p in as_json] == [
        (ada_id, "active", ada_key[:10], "active"),
        (bob_id, "active", bob_key[:10], "active"),
    ]
    shown = cli.ok("show", ada_id)
    assert ada_key not in shown.output
    assert f"id:      {ada_id}" in shown.stdout and "roles:   FINANCE,MANAGER" in shown.stdout
    assert f"  {ada_key[:10]}… active (made " in shown.stdout
    assert json.loads(cli.ok("show", ada_id, "--json").stdout)["email"] == "a@x.org"
    # Reading changes nothing, so it leaves no event beyond the two additions.
    assert [e.event for e in cli.audit("acme") + cli.audit("globex")] == ["principal_added"] * 2


def test_rotate_prints_a_working_key_last(cli: Cli) -> None:
    principal_id, old = cli.add("Ada", "--roles", "MANAGER")
    result = cli.ok("rotate", principal_id)
    new = result.stdout.strip().splitlines()[-1]
    assert new.startswith("cs_") and new != old
    assert cli.authenticate(new) is not None
    assert cli.authenticate(old) is None
    assert "1 old key(s) stopped working now" in result.stderr
    assert_event(
        cli.last_event(), "principal_key_rotated", principal_id, key_prefix=new[:10], keys_replaced=1
    )
    assert cli.last_event().data["old_keys_until"] is None  # type: ignore[index]


def test_rotate_with_a_grace_period_keeps_the_old_key_working(cli: Cli) -> None:
    principal_id, old = cli.add("Ada", "--roles", "MANAGER")
    result = cli.ok("rotate", principal_id, "--grace", "1h30m")
    new = result.stdout.strip().splitlines()[-1]
    assert cli.authenticate(old) is not None and cli.authenticate(new) is not None
    assert "1 old key(s) work until" in result.stderr
    event = cli.last_event()
    assert_event(event, "principal_key_rotated", principal_id, keys_replaced=1)
    assert event.data is not None and isinstance(event.data["old_keys_until"], str)
    state = {
        k["prefix"]: k["state"] for k in json.loads(cli.ok("show", principal_id, "--json").stdout)["keys"]
    }
    assert state == {old[:10]: "grace", new[:10]: "active"}


@pytest.mark.parametrize(("grace", "message"), [("soon", "not a duration"), ("31d", "at most 30 days")])
def test_rotate_refuses_a_bad_grace(cli: Cli, grace: str, message: str) -> None:
    principal_id, old = cli.add("Ada")
    result = cli("rotate", principal_id, "--grace", grace)
    assert result.exit_code == 2 and message in result.output
    assert cli.authenticate(old) is not None
    assert [e.event for e in cli.audit()] == ["principal_added"]


def test_revoke(cli: Cli) -> None:
    principal_id, old = cli.add("Ada", "--roles", "MANAGER")
    second = cli.ok("rotate", principal_id, "--grace", "2d").stdout.strip().splitlines()[-1]
    result = cli.ok("revoke", principal_id)
    assert "revoked 2 key(s)" in result.stderr
    assert cli.authenticate(old) is None and cli.authenticate(second) is None
    assert_event(cli.last_event(), "principal_keys_revoked", principal_id, keys_revoked=2)
    # Still there, for history, and nothing more to revoke.
    assert json.loads(cli.ok("show", principal_id, "--json").stdout)["status"] == "active"
    again = cli.ok("revoke", principal_id)
    assert "nothing changed" in again.stderr
    assert cli.last_event().event == "principal_keys_revoked" and len(cli.audit()) == 3


def test_disable_and_enable(cli: Cli) -> None:
    principal_id, key = cli.add("Ada", "--roles", "MANAGER")
    assert "disabled" in cli.ok("disable", principal_id).stderr
    assert cli.authenticate(key) is None
    assert_event(cli.last_event(), "principal_disabled", principal_id)
    assert "already disabled" in cli.ok("disable", principal_id).stderr
    listing = cli.ok("list").stdout.splitlines()[1].split()
    assert listing[6] == "disabled"
    cli.ok("enable", principal_id)
    assert cli.authenticate(key) is not None
    assert_event(cli.last_event(), "principal_enabled", principal_id)
    assert [e.event for e in cli.audit()] == ["principal_added", "principal_disabled", "principal_enabled"]


def test_roles(cli: Cli) -> None:
    principal_id, key = cli.add("Ada", "--roles", "MANAGER")
    cli.ok("roles", principal_id, "--set", "finance,DIRECTOR")
    assert_event(
        cli.last_event(),
        "principal_roles_changed",
        principal_id,
        roles_before="MANAGER",
        roles_after="DIRECTOR,FINANCE",
    )
    cli.ok("roles", principal_id, "--add", "HR", "--remove", "FINANCE,MANAGER")
    principal = cli.authenticate(key)
    assert principal is not None and principal.roles == [Role.DIRECTOR, Role.HR]
    assert_event(cli.last_event(), "principal_roles_changed", principal_id, roles_after="DIRECTOR,HR")
    assert "nothing changed" in cli.ok("roles", principal_id, "--add", "HR").stderr
    assert len(cli.audit()) == 3
    for args, message in [
        ((), "--set A,B"),
        (("--set", "HR", "--add", "FINANCE"), "without --add"),
        (("--add", "CEO"), "unknown role 'CEO'"),
    ]:
        result = cli("roles", principal_id, *args)
        assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize("command", ["show", "disable", "enable", "revoke", "rotate"])
def test_an_unknown_id_is_exit_1(cli: Cli, command: str) -> None:
    result = cli(command, "p-0000000000")
    assert result.exit_code == 1 and "no principal p-0000000000" in result.stderr
    assert result.stdout == ""


def test_a_token_principal_has_no_key_and_no_roles_to_set(cli: Cli) -> None:
    async def sign_in() -> None:
        async with await PrincipalStore.open(cli.settings.database_url) as store:
            await store.sign_in(Principal(id="u-jay", name="Jay", roles=[Role.MANAGER]), "jay@example.com")

    asyncio.run(sign_in())
    for args in (("rotate", "u-jay"), ("revoke", "u-jay"), ("roles", "u-jay", "--set", "ADMIN")):
        result = cli(*args)
        assert result.exit_code == 2 and "signs in with a token" in result.stderr, result.output
    # But it can be disabled like anyone.
    cli.ok("disable", "u-jay")
    assert_event(cli.last_event(), "principal_disabled", "u-jay")
    shown = json.loads(cli.ok("show", "u-jay", "--json").stdout)
    assert (shown["source"], shown["status"], shown["keys"]) == ("jwt", "disabled", [])


@pytest.mark.parametrize("tenant", ["_builtin", "system", ".x"])
def test_add_refuses_a_reserved_tenant(cli: Cli, tenant: str) -> None:
    result = cli("add", "Mallory", "--roles", "ADMIN", "--tenant", tenant)
    assert result.exit_code == 2 and "reserved" in result.output
    assert "Traceback" not in result.output and result.stdout == ""
    assert json.loads(cli.ok("list", "--json").stdout) == []


def test_nothing_changes_without_an_audit_log_key(cli: Cli) -> None:
    principal_id, key = cli.add("Ada")
    unkeyed = {"COUNTERSIGN_AUDIT_KEYS": ""}
    for args in (("add", "Bob"), ("disable", principal_id), ("rotate", principal_id)):
        result = cli(*args, env=unkeyed)
        assert result.exit_code == 2 and "the audit log has no key" in result.stderr, result.output
        assert result.stdout == ""
    assert cli.authenticate(key) is not None
    assert [p["id"] for p in json.loads(cli.ok("list", "--json").stdout)] == [principal_id]


def test_the_audit_chain_verifies(cli: Cli) -> None:
    principal_id, _ = cli.add("Ada")
    cli.ok("disable", principal_id)
    cli.ok("enable", principal_id)
    verify = ["audit", "verify", "--workflow", chain_for("default"), "--data-dir", str(cli.data_dir)]
    result = CliRunner().invoke(app, verify, env=cli.env)
    assert result.exit_code == 0, result.output
    assert "1 chains, 3 events, 0 broken" in result.output

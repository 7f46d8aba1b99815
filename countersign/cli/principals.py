"""`countersign principal ...`: principals (reviewers and requesters), their API keys and roles.

Every change is recorded in the SQL audit log (store/admin_audit.py, through audited_admin.py). The
audit log is opened, with its key, before anything changes: a command that could not record what it did
does nothing. Should the record still fail after the change (the database went away in between), the
command says so and exits 1, and a new key is printed all the same: withholding it would leave the
principal locked out.
"""

import asyncio
import json
import re
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer

from countersign.api.services.principal_admin import add_principal, added_event
from countersign.api.services.principal_admin import roles_text as _roles_text
from countersign.cli.audited_admin import audit_event, exit_unaudited, run_audited
from countersign.cli.common import DataDir, err
from countersign.cli.common import settings_from as _settings
from countersign.models.channels import ChannelPreferences
from countersign.models.enums import Role
from countersign.models.errors import NotFound
from countersign.models.principals import ApiKeyRecord, PrincipalRecord
from countersign.store.admin_audit import AdminAudit
from countersign.store.principals import PrincipalStore

principal_app = typer.Typer(
    help="Manage principals (reviewers and requesters), their API keys and roles; every change is audited."
)

PrincipalIdArg = Annotated[str, typer.Argument(metavar="ID", help="The principal's id, e.g. p-0123456789")]
JsonFlag = Annotated[bool, typer.Option("--json", help="JSON instead of text (never a key either way).")]
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,30}$")  # as models/principals.py's SlackUserId


def _slack_user(value: str | None) -> str | None:
    if value is not None and not _SLACK_USER.match(value):
        raise typer.BadParameter(
            f"{value!r} is not a Slack member id (U or W, then capitals and digits, e.g. U0123ABCD)"
        )
    return value


SlackUserOption = Annotated[
    str | None,
    typer.Option(
        "--slack-user",
        metavar="U…",
        callback=_slack_user,
        help="The principal's Slack member id (U… or W…): their Slack clicks decide as them.",
    ),
]

# A rotation's grace period: long enough to roll a key out, too short to make the rotation moot.
MAX_GRACE = timedelta(days=30)
_DURATION_PART = re.compile(r"(\d+)([smhd])")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _parse_roles(value: str, option: str = "--roles") -> list[Role]:
    roles = []
    for name in filter(None, (part.strip().upper() for part in value.split(","))):
        try:
            roles.append(Role(name))
        except ValueError:
            raise typer.BadParameter(
                f"unknown role {name!r}; roles are {', '.join(Role)}", param_hint=option
            ) from None
    return roles


def parse_grace(value: str) -> timedelta:
    """`0`, `90s`, `15m`, `1h`, `2d`, or a sum such as `1h30m`; at most MAX_GRACE."""
    text = value.strip().lower()
    if text == "0":
        return timedelta(0)
    if not text or _DURATION_PART.sub("", text):
        raise typer.BadParameter(
            f"{value!r} is not a duration: use e.g. 0, 90s, 15m, 1h, 2d or 1h30m", param_hint="--grace"
        )
    grace = sum(
        (timedelta(**{_UNIT[unit]: int(n)}) for n, unit in _DURATION_PART.findall(text)), timedelta(0)
    )
    if grace > MAX_GRACE:
        raise typer.BadParameter(f"at most {MAX_GRACE.days} days", param_hint="--grace")
    return grace


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _key_text(key: ApiKeyRecord) -> str:
    prefix = f"{key.prefix}…" if key.prefix else "(prefix unknown until next use)"
    if key.state == "grace":
        return f"{prefix} works until {_when(key.expires_at)}"
    if key.state == "expired":
        return f"{prefix} expired {_when(key.expires_at)}"
    if key.state == "revoked":
        return f"{prefix} revoked {_when(key.revoked_at)}"
    return f"{prefix} active"


def preferences_text(preferences: ChannelPreferences) -> str:
    quiet = f", quiet {preferences.quiet_hours}" if preferences.quiet_hours else ""
    return f"{preferences.delivery}{quiet} ({preferences.timezone})"


def _as_json(record: PrincipalRecord) -> dict[str, Any]:
    return {**record.model_dump(mode="json"), "status": record.status}


@principal_app.command("add")
def principal_add(
    name: Annotated[str, typer.Argument(help="Display name")],
    roles: Annotated[
        str, typer.Option("--roles", help=f"Comma-separated roles, e.g. MANAGER,FINANCE ({', '.join(Role)})")
    ] = "",
    tenant: Annotated[str, typer.Option("--tenant")] = "default",
    email: Annotated[
        str | None, typer.Option("--email", help="Where approval notifications go, e.g. ada@example.com")
    ] = None,
    slack_user: SlackUserOption = None,
    data_dir: DataDir = None,
) -> None:
    """Create a principal; its new API key is printed as the last line of stdout, and never again."""
    settings = _settings(data_dir=data_dir)
    parsed = _parse_roles(roles)

    async def add(store: PrincipalStore, audit: AdminAudit) -> tuple[str, str | None]:
        # The gateway's `POST /principals` adds and audits one the same way (api/services/principal_admin.py).
        added = await add_principal(store, name, parsed, tenant, email=email, slack_user_id=slack_user)
        created = added.created
        contact = (f", email {email}" if email else "") + (f", Slack user {slack_user}" if slack_user else "")
        err.print(
            f"created {created.principal.id} ({name}, tenant {tenant}, "
            f"roles {_roles_text(created.principal.roles)}{contact}); the key is shown once:",
            markup=False,
        )
        problem = await audit_event(audit, added.record, *added_event(added.record))
        return created.api_key, problem

    key, problem = run_audited(settings, add)
    print(key)
    exit_unaudited(problem)


@principal_app.command("list")
def principal_list(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's principals.")] = None,
    as_json: JsonFlag = False,
    data_dir: DataDir = None,
) -> None:
    """Every principal: id, name, tenant, roles, email, status and its keys' prefixes and states."""
    settings = _settings(data_dir=data_dir)

    async def read() -> list[PrincipalRecord]:
        async with await PrincipalStore.open(settings.database_url) as store:
            return await store.records(tenant)

    records = asyncio.run(read())
    if as_json:
        print(json.dumps([_as_json(r) for r in records], indent=2))
        return
    header = ("ID", "NAME", "TENANT", "ROLES", "EMAIL", "SOURCE", "STATUS", "KEYS")
    rows = [
        (
            r.id,
            r.name,
            r.tenant,
            _roles_text(r.roles),
            r.email or "-",
            r.source,
            r.status,
            "; ".join(map(_key_text, r.keys)) or "-",
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]))
    err.print(f"{len(records)} principal(s)", markup=False)


@principal_app.command("show")
def principal_show(principal_id: PrincipalIdArg, as_json: JsonFlag = False, data_dir: DataDir = None) -> None:
    """One principal, each of its keys (prefix, state, dates) on a line of its own."""
    settings = _settings(data_dir=data_dir)

    async def read() -> PrincipalRecord:
        async with await PrincipalStore.open(settings.database_url) as store:
            return await store.record(principal_id)

    try:
        record = asyncio.run(read())
    except NotFound as error:
        err.print(f"error: {error.message}", markup=False)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(_as_json(record), indent=2))
        return
    lines = [
        ("id", record.id),
        ("name", record.name),
        ("tenant", record.tenant),
        ("roles", _roles_text(record.roles)),
        ("email", record.email or "-"),
        ("slack", record.slack_user_id or "-"),
        ("told", preferences_text(record.preferences)),
        ("source", record.source),
        ("status", record.status + (f" since {_when(record.disabled_at)}" if record.disabled_at else "")),
        ("created", _when(record.created_at)),
    ]
    for label, value in lines:
        print(f"{label + ':':<9}{value}")
    print("keys:" if record.keys else "keys:    none")
    for key in record.keys:
        print(f"  {_key_text(key)} (made {_when(key.created_at)})")


def _set_disabled(principal_id: str, disabled: bool, data_dir: DataDir) -> None:
    settings = _settings(data_dir=data_dir)
    verb = "disabled" if disabled else "enabled"

    async def change(store: PrincipalStore, audit: AdminAudit) -> str | None:
        record = await store.record(principal_id)
        if not await store.set_disabled(principal_id, disabled):
            err.print(f"{principal_id} was already {verb}: nothing changed", markup=False)
            return None
        err.print(f"{verb} {principal_id} ({record.name}, tenant {record.tenant})", markup=False)
        return await audit_event(audit, record, f"principal_{verb}", f"{verb} {principal_id} ({record.name})")

    exit_unaudited(run_audited(settings, change))


@principal_app.command("disable")
def principal_disable(principal_id: PrincipalIdArg, data_dir: DataDir = None) -> None:
    """Shut a principal out at once: no key and no token of its signs in; its keys are kept as they are."""
    _set_disabled(principal_id, True, data_dir)


@principal_app.command("enable")
def principal_enable(principal_id: PrincipalIdArg, data_dir: DataDir = None) -> None:
    """Let a disabled principal sign in again (with whichever of its keys still work)."""
    _set_disabled(principal_id, False, data_dir)


@principal_app.command("revoke")
def principal_revoke(principal_id: PrincipalIdArg, data_dir: DataDir = None) -> None:
    """Revoke every key of a principal at once; the principal stays (`rotate` gives it a new key)."""
    settings = _settings(data_dir=data_dir)

    async def revoke(store: PrincipalStore, audit: AdminAudit) -> str | None:
        record = await store.record(principal_id)
        count = await store.revoke(principal_id)
        if count == 0:
            err.print(f"{principal_id} had no working key: nothing changed", markup=False)
            return None
        err.print(f"revoked {count} key(s) of {principal_id} ({record.name})", markup=False)
        return await audit_event(
            audit,
            record,
            "principal_keys_revoked",
            f"revoked {count} key(s) of {principal_id} ({record.name})",
            {"keys_revoked": count},
        )

    exit_unaudited(run_audited(settings, revoke))


@principal_app.command("rotate")
def principal_rotate(
    principal_id: PrincipalIdArg,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            help="How long the keys it replaces keep working, e.g. 15m, 1h, 2d (at most 30d); default 0: "
            "they stop now",
        ),
    ] = "0",
    data_dir: DataDir = None,
) -> None:
    """Give a principal a new API key, printed as the last line of stdout, and never again."""
    settings = _settings(data_dir=data_dir)
    period = parse_grace(grace)

    async def rotate(store: PrincipalStore, audit: AdminAudit) -> tuple[str, str | None]:
        record = await store.record(principal_id)
        rotated = await store.rotate(principal_id, period or None)
        if rotated.old_keys_until is not None:
            old = f"{rotated.replaced} old key(s) work until {_when(rotated.old_keys_until)}"
        else:
            old = f"{rotated.replaced} old key(s) stopped working now"
        disabled = (
            " (the principal is disabled: the key works once it is enabled)" if record.disabled_at else ""
        )
        err.print(
            f"rotated {principal_id} ({record.name}): new key {rotated.prefix}…; {old}{disabled}; "
            "the key is shown once:",
            markup=False,
        )
        until = None if rotated.old_keys_until is None else rotated.old_keys_until.isoformat()
        problem = await audit_event(
            audit,
            record,
            "principal_key_rotated",
            f"rotated the key of {principal_id} ({record.name}); {old}",
            {"key_prefix": rotated.prefix, "keys_replaced": rotated.replaced, "old_keys_until": until},
        )
        return rotated.api_key, problem

    key, problem = run_audited(settings, rotate)
    print(key)
    exit_unaudited(problem)


@principal_app.command("roles")
def principal_roles(
    principal_id: PrincipalIdArg,
    set_: Annotated[
        str | None, typer.Option("--set", help="Exactly these roles, comma-separated ('' for none).")
    ] = None,
    add: Annotated[str, typer.Option("--add", help="Roles to add, comma-separated.")] = "",
    remove: Annotated[str, typer.Option("--remove", help="Roles to remove, comma-separated.")] = "",
    data_dir: DataDir = None,
) -> None:
    """Change an API-key principal's roles (a token principal's come from its identity provider)."""
    if set_ is None and not add and not remove:
        raise typer.BadParameter("say which: --set A,B, or --add and/or --remove", param_hint="--set")
    if set_ is not None and (add or remove):
        raise typer.BadParameter("--set replaces every role: use it without --add or --remove")
    settings = _settings(data_dir=data_dir)
    exact = None if set_ is None else _parse_roles(set_, "--set")
    added, removed = _parse_roles(add, "--add"), _parse_roles(remove, "--remove")

    async def change(store: PrincipalStore, audit: AdminAudit) -> str | None:
        record = await store.record(principal_id)
        current = set(record.roles)
        wanted = exact if exact is not None else (current | set(added)) - set(removed)
        before, after = await store.set_roles(principal_id, wanted)
        if after == before:
            err.print(f"{principal_id} has roles {_roles_text(after)}: nothing changed", markup=False)
            return None
        err.print(
            f"{principal_id} ({record.name}): roles {_roles_text(before)} -> {_roles_text(after)}",
            markup=False,
        )
        return await audit_event(
            audit,
            record,
            "principal_roles_changed",
            f"roles of {principal_id} ({record.name}) changed from {_roles_text(before)} to "
            f"{_roles_text(after)}",
            {"roles_before": ",".join(before), "roles_after": ",".join(after)},
        )

    exit_unaudited(run_audited(settings, change))

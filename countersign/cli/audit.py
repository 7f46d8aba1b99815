"""`countersign audit ...` and `countersign ledger ...`: check, anchor and export the SQL audit log, and
read the execution ledger."""

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console

from countersign.cli.common import DataDir, err
from countersign.cli.common import settings_from as _settings

if TYPE_CHECKING:
    from countersign.config.settings import Settings
    from countersign.security.audit_keys import AuditKeyring

audit_app = typer.Typer(help="Check, anchor and export the SQL audit log (COUNTERSIGN_AUDIT_DATABASE_URL).")
ledger_app = typer.Typer(help="The execution ledger: each approved action's key, attempts and result.")


def _audit_failure(url: str, error: Exception, what: str = "audit log") -> typer.Exit:
    """A SQL store that cannot be opened or read: one line, its URL without the password, exit 2."""
    from countersign.store.sql import masked_url

    where = masked_url(url) if "://" in url else "(malformed URL)"
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    err.print(f"error: {what} {where}: {reason}", markup=False)
    return typer.Exit(2)


def _keyring(settings: "Settings") -> "AuditKeyring":
    """The audit keys from settings; without them, say how to get them and exit 2."""
    from countersign.security.gateway_keys import MissingKey

    try:
        return settings.audit_keyring()
    except (MissingKey, ValueError) as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(2) from None


@audit_app.command("verify")
def audit_verify(
    workflow: Annotated[
        str | None, typer.Option("--workflow", metavar="ID", help="Only this workflow's chain.")
    ] = None,
    anchors: Annotated[
        Path | None,
        typer.Option(
            "--anchors",
            metavar="FILE",
            help="Anchors (`audit anchor --out`): also find chains deleted, truncated or rewritten since.",
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Recheck the audit log's keyed chains (COUNTERSIGN_AUDIT_KEYS), and its anchors if given; exit
    1, naming each broken chain's first bad event and each anchor that does not verify, if any."""
    from rich.markup import escape
    from sqlalchemy.exc import SQLAlchemyError

    from countersign.models.audit import VerifyReport
    from countersign.store.audit_anchors import Anchors
    from countersign.store.audit_store import AuditStore
    from countersign.store.sql import masked_url

    settings = _settings(data_dir=data_dir)
    url, keyring = settings.audit_url, _keyring(settings)

    async def verify(checked: Anchors | None) -> VerifyReport:
        async with await AuditStore.open(url, keyring=keyring) as store:
            return await store.verify(workflow, checked)

    checked = None
    if anchors is not None:
        try:
            with anchors.open(encoding="utf-8") as lines:
                checked = Anchors.read(lines, keyring, str(anchors))
        except (OSError, UnicodeDecodeError) as error:
            err.print(f"error: anchors {anchors}: {error}", markup=False)
            raise typer.Exit(2) from None
    try:
        report = asyncio.run(verify(checked))
    except (OSError, ValueError, SQLAlchemyError) as error:
        raise _audit_failure(url, error) from None
    out = Console(soft_wrap=True)
    for problem in report.broken:
        out.print(
            f"[bold red]BROKEN[/] workflow {escape(problem.workflow_id)} at seq {problem.seq}: "
            f"{escape(problem.reason)}"
        )
    for trouble in report.problems:
        out.print(f"[bold red]BROKEN[/] {escape(trouble.where)}: {escape(trouble.reason)}")
    verdict = "[bold red]tampered[/]" if not report.ok else "[bold green]intact[/]"
    extra = ""
    if report.legacy_chains:
        extra += f"; {report.legacy_chains} legacy (unkeyed, sealed) chains"
    if anchors is not None:
        failed = sum(1 for trouble in report.problems if trouble.where.startswith("anchor "))
        extra += f"; {report.anchors} anchors, {failed} not valid"
    out.print(
        f"{escape(masked_url(url))}: {report.chains} chains, {report.events} events, "
        f"{len(report.broken)} broken{extra}: {verdict}"
    )
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("anchor")
def audit_anchor(
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", help="Append the anchor to this file (keep it elsewhere)."),
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", metavar="URL", help="POST the anchor (JSON) to this URL.")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Write a signed checkpoint of every chain's last event, one JSON line: to FILE, to URL, or to
    stdout. Keep anchors where the database's users cannot change them (WORM storage, another host):
    `audit verify --anchors` then finds chains deleted, truncated or rewritten since. A chain that does
    not verify is left out, named, and makes the exit status 1."""
    from rich.markup import escape
    from sqlalchemy.exc import SQLAlchemyError

    from countersign.models.audit import AuditAnchor, VerifyReport
    from countersign.store.audit_links import anchor_line
    from countersign.store.audit_store import AuditStore

    settings = _settings(data_dir=data_dir)
    store_url, keyring = settings.audit_url, _keyring(settings)

    async def anchor() -> tuple[AuditAnchor, VerifyReport]:
        async with await AuditStore.open(store_url, keyring=keyring) as store:
            return await store.anchor()

    try:
        made, report = asyncio.run(anchor())
    except (OSError, ValueError, SQLAlchemyError) as error:
        raise _audit_failure(store_url, error) from None
    line = anchor_line(made)
    where = []
    if out is not None:
        try:
            _append_line(out, line)
        except OSError as error:
            err.print(f"error: anchor file {out}: {error}", markup=False)
            raise typer.Exit(2) from None
        where.append(str(out))
    if url is not None:
        problem = _post(url, line)
        if problem is not None:
            err.print(f"error: anchor URL {url}: {problem}", markup=False)
            raise typer.Exit(2)
        where.append(url)
    if not where:
        print(line)
        where.append("stdout")
    for broken in report.broken:
        err.print(
            f"[bold red]BROKEN[/] workflow {escape(broken.workflow_id)} at seq {broken.seq}: "
            f"{escape(broken.reason)} (left out of the anchor)"
        )
    for trouble in report.problems:
        err.print(f"[bold red]BROKEN[/] {escape(trouble.where)}: {escape(trouble.reason)}")
    err.print(
        f"anchored {len(made.chains)} chains at {made.at} to {', '.join(where)}, signed with audit key "
        f"{made.key_id} (anchor public key {made.public_key})",
        markup=False,
    )
    if not report.ok:
        raise typer.Exit(1)


def _append_line(path: Path, line: str) -> None:
    """One whole line, on disk before the command says it is there."""
    import os

    with path.open("a", encoding="utf-8") as file:
        file.write(line + "\n")
        file.flush()
        os.fsync(file.fileno())


def _post(url: str, line: str) -> str | None:
    """POST the anchor; why it was not accepted (no 2xx), or None."""
    import httpx

    try:
        response = httpx.post(
            url, content=line.encode(), headers={"Content-Type": "application/json"}, timeout=30
        )
        response.raise_for_status()
    except httpx.HTTPError as error:
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    return None


@audit_app.command("export")
def audit_export(
    fmt: Annotated[Literal["jsonl", "csv"], typer.Option("--format", help="JSON Lines or CSV.")] = "jsonl",
    out: Annotated[Path | None, typer.Option("--out", metavar="FILE", help="Default: stdout.")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's events.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Write every audit event, chain by chain, hashes included: for auditors and archives."""
    import sys

    from sqlalchemy.exc import SQLAlchemyError

    from countersign.store.audit_store import AuditStore

    url = _settings(data_dir=data_dir).audit_url

    async def export() -> int:
        async with await AuditStore.open(url) as store:
            if out is None:
                return await store.export(fmt, sys.stdout, tenant)
            # newline="": the csv module writes its own line endings.
            with out.open("w", encoding="utf-8", newline="") as file:
                return await store.export(fmt, file, tenant)

    try:
        count = asyncio.run(export())
    except (OSError, ValueError, SQLAlchemyError) as error:
        raise _audit_failure(url, error) from None
    err.print(f"exported {count} audit events" + (f" to {out}" if out else ""), markup=False)


@ledger_app.command("list")
def ledger_list(
    workflow: Annotated[
        str | None, typer.Option("--workflow", metavar="ID", help="Only this workflow's.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="started, succeeded or failed (started: maybe interrupted)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    data_dir: DataDir = None,
) -> None:
    """List executions, newest first: which key ran which tool, how many attempts, and how it ended."""
    from rich.markup import escape
    from rich.table import Table
    from sqlalchemy.exc import SQLAlchemyError

    from countersign.models.tools import LedgerEntry, LedgerStatus
    from countersign.store.execution_ledger import ExecutionLedger

    try:
        wanted = None if status is None else LedgerStatus(status)
    except ValueError:
        raise typer.BadParameter("use started, succeeded or failed", param_hint="--status") from None
    url = _settings(data_dir=data_dir).audit_url

    async def entries() -> list[LedgerEntry]:
        async with await ExecutionLedger.open(url) as ledger:
            return await ledger.entries(workflow_id=workflow, status=wanted, limit=limit)

    try:
        found = asyncio.run(entries())
    except (OSError, ValueError, SQLAlchemyError) as error:
        raise _audit_failure(url, error, "execution ledger") from None
    table = Table("key", "tool", "status", "attempts", "started", "outcome")
    for entry in found:
        # The result once it succeeded; otherwise the last attempt's error, if one failed.
        outcome = json.dumps(entry.result) if entry.result is not None else entry.error
        table.add_row(
            escape(entry.idempotency_key),
            entry.tool,
            entry.status.value,
            str(entry.attempts),
            entry.started_at.isoformat(timespec="seconds"),
            escape((outcome or "")[:80]),
        )
    Console(soft_wrap=True).print(table)

"""`countersign directory import/list`: a tenant's directory (docs/directory.md), in Countersign's database.

An import is parsed whole before anything is opened (a bad row refuses it, naming the row), then
written and recorded in the tenant's admin audit chain, as an ADMIN's `POST /directory/{kind}` is. The
audit log (and its key) is opened first, so an import that could not be recorded does nothing; one whose
record still fails after the write is reported (exit 1), never hidden.
"""

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import TypeAdapter, ValidationError

from countersign.cli.common import DataDir, err
from countersign.cli.common import settings_from as _settings
from countersign.models.directory import RECORD_MODELS, DirectoryKind, Record
from countersign.models.directory_admin import MAX_LIST, ImportCounts
from countersign.models.principals import Tenant

directory_app = typer.Typer(
    help="A tenant's directory: counterparties, people, budgets and exchange rates; every import is audited."
)


def _tenant(value: str) -> str:
    try:
        return TypeAdapter(Tenant).validate_python(value)
    except ValidationError as error:
        raise typer.BadParameter(error.errors()[0]["msg"]) from None


TenantOption = Annotated[
    str, typer.Option("--tenant", callback=_tenant, help="The tenant whose directory it is")
]


def _failure(url: str, error: Exception) -> typer.Exit:
    """A database (or audit key) that cannot be used: one line, the URL without its password, exit 2."""
    from countersign.store.sql import masked_url

    where = masked_url(url) if "://" in url else "(malformed URL)"
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    err.print(f"error: database {where}: {reason}", markup=False)
    return typer.Exit(2)


@directory_app.command("import")
def directory_import(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A .csv or .json file of records")],
    kind: Annotated[
        DirectoryKind | None,
        typer.Option("--kind", help="The records' kind [from the file's name, e.g. counterparties.csv]"),
    ] = None,
    tenant: TenantOption = "default",
    data_dir: DataDir = None,
) -> None:
    """Add or replace records by key (a name, a cost center, a rate's currency and date); all or none."""
    from sqlalchemy.exc import SQLAlchemyError

    from countersign.api.services.directory import imported_event
    from countersign.directory.importing import (
        MAX_IMPORT_BYTES,
        DirectoryImportInvalid,
        kind_of,
        parse_records,
    )
    from countersign.security.gateway_keys import MissingKey
    from countersign.store.admin_audit import ACTOR, AdminAudit
    from countersign.store.audit_store import AuditStore
    from countersign.store.directory import DirectoryStore

    kind = kind or kind_of(file.name)
    if kind is None:
        raise typer.BadParameter(
            f"cannot tell the kind from {file.name!r}: name the file after it "
            f"({', '.join(f'{k.value}.csv' for k in DirectoryKind)}) or give --kind",
            param_hint="--kind",
        )
    try:
        if file.stat().st_size > MAX_IMPORT_BYTES:
            err.print(f"error: {file}: larger than {MAX_IMPORT_BYTES} bytes; split it", markup=False)
            raise typer.Exit(2)
        records = parse_records(kind, file.read_bytes(), file.name)
    except OSError as error:
        err.print(f"error: {file}: {error.strerror or error}", markup=False)
        raise typer.Exit(2) from None
    except DirectoryImportInvalid as error:
        err.print(f"error: {error.message}", markup=False)
        raise typer.Exit(2) from None
    settings = _settings(data_dir=data_dir)

    async def run() -> tuple[ImportCounts, str | None]:
        keyring = settings.audit_keyring()
        async with (
            await AuditStore.open(settings.audit_url, keyring=keyring) as audit_store,
            await DirectoryStore.open(settings.database_url) as store,
        ):
            done = await store.put(tenant, kind, records)
            if done.added + done.updated == 0:
                return done, None
            event, detail, data = imported_event(kind, done, file.name)
            try:
                await AdminAudit(audit_store).record(tenant, event, ACTOR, detail, data)
            except Exception as error:  # the records are in: report it, never hide it
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                return done, f"{detail}, but its audit event could not be written: {reason}"
            return done, None

    try:
        done, problem = asyncio.run(run())
    except MissingKey as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(2) from None
    except (OSError, ValueError, SQLAlchemyError) as error:
        raise _failure(settings.database_url, error) from None
    print(f"imported {kind.value} into tenant {tenant}: {done.added} added, {done.updated} updated")
    if problem is not None:
        err.print(f"error: {problem}", markup=False)
        raise typer.Exit(1)


@directory_app.command("list")
def directory_list(
    kind: Annotated[DirectoryKind, typer.Argument(help="counterparties, people, budgets or rates")],
    q: Annotated[
        str | None, typer.Option("--q", help="Only records whose names resemble this, best first")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_LIST)] = 100,
    tenant: TenantOption = "default",
    as_json: Annotated[bool, typer.Option("--json", help="JSON, one array of records")] = False,
    data_dir: DataDir = None,
) -> None:
    """List a tenant's records of one kind, in key order (or best match first with --q)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from sqlalchemy.exc import SQLAlchemyError

    from countersign.directory.match import search
    from countersign.store.directory import DirectoryStore

    url = _settings(data_dir=data_dir).database_url

    async def read() -> list[Record]:
        async with await DirectoryStore.open(url) as store:
            if q is None:
                return await store.records(tenant, kind, limit=limit)
            return search(await store.records(tenant, kind), q, limit=limit)

    try:
        found = asyncio.run(read())
    except (OSError, ValueError, SQLAlchemyError) as error:
        raise _failure(url, error) from None
    if as_json:
        print(json.dumps([r.model_dump(mode="json", exclude_none=True) for r in found], indent=2))
        return
    fields = list(RECORD_MODELS[kind].model_fields)
    table = Table(*fields)
    for record in found:
        values = record.model_dump(mode="json")
        table.add_row(*(escape(_cell(values[name])) for name in fields))
    Console(soft_wrap=True).print(table)


def _cell(value: object) -> str:
    if isinstance(value, list):
        return "; ".join(map(str, value))  # as a CSV import writes a list
    return "" if value is None else str(value)

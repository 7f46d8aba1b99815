"""`countersign db ...`: the one database's schema: where it is, and bringing it to this release.

Every gateway, worker and `up` also upgrades a database that is behind when it starts (under a lock,
whoever starts first); `db upgrade` is for deployments that run migrations as a step of their own.
"""

import asyncio

import typer
from rich.console import Console

from countersign.cli.common import DataDir, err
from countersign.cli.common import settings_from as _settings

db_app = typer.Typer(
    help="Countersign's database (COUNTERSIGN_DATABASE_URL): its schema revision and upgrades."
)


def _failure(url: str, error: Exception) -> typer.Exit:
    from countersign.store.sql import masked_url

    where = masked_url(url) if "://" in url else "(malformed URL)"
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    err.print(f"error: database {where}: {reason}", markup=False)
    return typer.Exit(2)


@db_app.command("current")
def db_current(data_dir: DataDir = None) -> None:
    """Print the database's schema revision and this release's; exit 1 when it is behind, 2 ahead."""
    from countersign.store import schema
    from countersign.store.sql import make_engine, masked_url

    url = _settings(data_dir=data_dir).database_url

    async def look() -> schema.SchemaStatus:
        engine = make_engine(url)
        try:
            return await schema.status(engine)
        finally:
            await engine.dispose()

    try:
        found = asyncio.run(look())
    except Exception as error:
        raise _failure(url, error) from None
    console = Console()
    console.print(f"database:  {masked_url(url)}", markup=False, highlight=False)
    console.print(f"revision:  {found.current or '(none: empty, or made before migrations)'}", markup=False)
    console.print(f"this release: {found.head}", markup=False)
    if found.is_current:
        console.print("current", markup=False)
        return
    if found.current is not None and not schema.is_known(found.current):
        err.print("ahead: a newer Countersign migrated it; this one will not write to it", markup=False)
        raise typer.Exit(2)
    console.print(
        "behind: `countersign db upgrade` (or starting a gateway or worker) brings it up", markup=False
    )
    raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Bring the database to this release's schema, and import what an earlier release kept in the
    data dir. Safe to run again, and while gateways and workers run."""
    from countersign.store import schema
    from countersign.store.legacy import import_data_dir
    from countersign.store.sql import make_engine, masked_url

    settings = _settings(data_dir=data_dir)
    url = settings.database_url

    async def upgrade() -> tuple[str | None, str, int]:
        engine = make_engine(url)
        try:
            before, after = await schema.upgrade(engine)
        finally:
            await engine.dispose()
        return before, after, await import_data_dir(settings.data_dir, url)

    try:
        before, after, imported = asyncio.run(upgrade())
    except schema.SchemaAhead as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(2) from None
    except Exception as error:
        raise _failure(url, error) from None
    console = Console()
    where = masked_url(url)
    if before == after:
        console.print(f"{where}: already at revision {after}", markup=False, highlight=False)
    else:
        console.print(f"{where}: revision {before or '(none)'} -> {after}", markup=False, highlight=False)
    if imported:
        console.print(f"imported {imported} row(s) from files in {settings.data_dir}", markup=False)

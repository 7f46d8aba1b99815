"""What every entrypoint does with the database before anything else: bring its schema to this
release's (or refuse one a newer release migrated), then import what an earlier release kept in files
in the data dir. Both are idempotent and safe when a gateway and workers start at once."""

import logging
from dataclasses import dataclass
from pathlib import Path

from countersign.store import schema
from countersign.store.legacy import import_data_dir
from countersign.store.sql import make_engine

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatabaseReady:
    before: str | None  # the schema revision found (None: empty, or made before migrations)
    revision: str  # the one it is at now: this release's
    imported: int  # rows imported from the data dir's old files


async def prepare_database(url: str, data_dir: Path, *, schema_name: str | None = None) -> DatabaseReady:
    """Raises schema.SchemaAhead for a database a newer Countersign migrated. `schema_name`: a
    PostgreSQL schema to hold the tables (tests), else the search path's."""
    engine = make_engine(url, schema=schema_name)
    try:
        before, after = await schema.upgrade(engine, schema_name)
    finally:
        await engine.dispose()
    imported = await import_data_dir(data_dir, url, schema=schema_name)
    if imported:
        _log.info("imported %d row(s) from the old files in %s", imported, data_dir)
    return DatabaseReady(before, after, imported)

"""What an earlier release kept in files in the data dir, imported into the one database.

Each part imports its files once (renaming them `*.imported`), skips rows already there, and is safe
when two processes start at once. Called by every entrypoint at start and by `countersign db upgrade`.
"""

from pathlib import Path

from countersign.store.legacy.effects_files import import_effects
from countersign.store.legacy.principals_file import import_principals


async def import_data_dir(data_dir: Path, url: str, *, schema: str | None = None) -> int:
    """Rows imported from `data_dir`'s old files (0 when there are none)."""
    principals = await import_principals(data_dir, url, schema=schema)
    return principals + await import_effects(data_dir, url, schema=schema)

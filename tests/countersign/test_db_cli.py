"""`countersign db current` / `db upgrade`, and the refusal of a database a newer release migrated by
the commands that start a gateway or a worker."""

import sqlite3
from pathlib import Path

from tests.countersign.test_cli import countersign


def test_db_current_then_upgrade_then_current(tmp_path: Path) -> None:
    behind = countersign("db", "current", "--data-dir", str(tmp_path))
    assert behind.returncode == 1, behind.stderr
    assert "behind" in behind.stdout
    upgraded = countersign("db", "upgrade", "--data-dir", str(tmp_path))
    assert upgraded.returncode == 0, upgraded.stderr
    assert "revision (none) -> " in upgraded.stdout
    again = countersign("db", "upgrade", "--data-dir", str(tmp_path))
    assert "already at revision" in again.stdout
    current = countersign("db", "current", "--data-dir", str(tmp_path))
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip().endswith("current")


def test_a_newer_schema_stops_the_worker_and_the_gateway_in_one_line(tmp_path: Path) -> None:
    assert countersign("db", "upgrade", "--data-dir", str(tmp_path)).returncode == 0
    with sqlite3.connect(tmp_path / "audit.db") as db:
        db.execute("UPDATE alembic_version SET version_num = 'f00d'")
    db.close()
    ahead = countersign("db", "current", "--data-dir", str(tmp_path))
    assert ahead.returncode == 2
    assert "newer Countersign" in ahead.stderr
    for command in ("worker", "api"):
        refused = countersign(command, "--data-dir", str(tmp_path), "--temporal-address", "127.0.0.1:1")
        assert refused.returncode == 2, (command, refused.stdout, refused.stderr)
        assert "revision f00d" in refused.stderr
        assert "Traceback" not in refused.stderr

"""Fixtures of the CLI's tests."""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from countersign.store.sql import default_url
from tests.conftest import POSTGRES_URL


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database: SQLite in the data dir, or a PostgreSQL database of this test's own (the CLI
    has no schema setting: an administrator's host names the whole database)."""
    if request.param == "sqlite":
        yield default_url(tmp_path)
        return
    name = f"cli_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()

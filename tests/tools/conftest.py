"""The tools' database for a test: Countersign's SQL store on SQLite and on PostgreSQL (a schema each)."""

from collections.abc import AsyncIterator

import pytest

from countersign.store.tool_effects import ToolEffects
from tests.conftest import Location


@pytest.fixture
async def effects(location: Location) -> AsyncIterator[ToolEffects]:
    opened = ToolEffects(location.url, schema=location.schema)
    yield opened
    await opened.close()

"""Tenants' declared tools in the SQL store (beside the audit log): versioned, per tenant, never rewritten.

Each declaration of a name in a tenant adds the next version; the latest is the one used. A tenant
reads only its own rows: every query is by tenant. The one removal, `discard`, is for a version whose
audit event could not be written (api/services/declared_tools.py): a declaration is kept only with
its record of who made it.
"""

import json
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from countersign.models.declared_tools import DeclaredTool, DeclareToolRequest
from countersign.store.sql import open_engine, release_engine

metadata = sa.MetaData()
declared_tools = sa.Table(
    "declared_tools",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("args_schema", sa.Text, nullable=False),  # JSON, as validated
    sa.Column("side_effect", sa.Text, nullable=False),
    sa.Column("risk", sa.Text, nullable=False),
    sa.Column("declared_by", sa.Text, nullable=False),  # the principal id
    sa.Column("declared_at", sa.Text, nullable=False),
)
_c = declared_tools.c
_ATTEMPTS = 5


def _tool(row: sa.Row[Any]) -> DeclaredTool:
    return DeclaredTool(
        tenant=row.tenant,
        name=row.name,
        version=row.version,
        description=row.description,
        args_schema=json.loads(row.args_schema),
        side_effect=row.side_effect,
        risk=row.risk,
    )


class DeclaredToolStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> "DeclaredToolStore":
        return cls(await open_engine(url, metadata, schema=schema))

    async def close(self) -> None:
        await release_engine(self._engine)

    async def __aenter__(self) -> "DeclaredToolStore":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def declare(self, request: DeclareToolRequest, *, tenant: str, declared_by: str) -> DeclaredTool:
        """Store `request` as the next version of its name in `tenant` (the caller has validated it)."""
        mine = sa.and_(_c.tenant == tenant, _c.name == request.name)
        # One statement reads the latest version and inserts the next: SQLite takes its write lock for
        # the whole of it, rather than a read that must later be upgraded (and may find the file busy).
        following = sa.select(sa.func.coalesce(sa.func.max(_c.version), 0) + 1).where(mine).scalar_subquery()
        values = {
            "tenant": tenant,
            "name": request.name,
            "version": following,
            "description": request.description,
            "args_schema": json.dumps(request.args_schema, ensure_ascii=False),
            "side_effect": request.side_effect.value,
            "risk": request.risk.value,
            "declared_by": declared_by,
            "declared_at": datetime.now(UTC).isoformat(),
        }
        for attempt in range(_ATTEMPTS):
            try:
                async with self._engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        # Declarations of one name wait their turn: without it, N at once each read the
                        # same latest version and all but one retried, and with six at once one could
                        # lose every attempt (seen in CI). Released at the transaction's end.
                        key = sa.func.hashtext(f"declared-tool/{tenant}/{request.name}")
                        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
                    version = await conn.scalar(
                        sa.insert(declared_tools).values(values).returning(_c.version)
                    )
            except IntegrityError:
                # PostgreSQL: a concurrent declaration of the name took this version first.
                if attempt == _ATTEMPTS - 1:
                    raise
                continue
            found = await self.get(tenant, request.name, int(version))
            assert found is not None  # just inserted, and rows are only removed by `discard`
            return found
        raise AssertionError("unreachable")

    async def latest(self, tenant: str, name: str) -> DeclaredTool | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(declared_tools)
                    .where(_c.tenant == tenant, _c.name == name)
                    .order_by(_c.version.desc())
                    .limit(1)
                )
            ).first()
        return _tool(row) if row is not None else None

    async def get(self, tenant: str, name: str, version: int) -> DeclaredTool | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(declared_tools).where(
                        _c.tenant == tenant, _c.name == name, _c.version == version
                    )
                )
            ).first()
        return _tool(row) if row is not None else None

    async def visible(self, tenant: str) -> list[DeclaredTool]:
        """The latest version of every tool the tenant declared, by name."""
        newest = (
            sa.select(_c.name, sa.func.max(_c.version).label("version"))
            .where(_c.tenant == tenant)
            .group_by(_c.name)
            .subquery()
        )
        query = (
            sa.select(declared_tools)
            .join(newest, sa.and_(_c.name == newest.c.name, _c.version == newest.c.version))
            .where(_c.tenant == tenant)
        )
        async with self._engine.connect() as conn:
            tools = [_tool(row) for row in await conn.execute(query)]
        # Sorted here: SQLite and PostgreSQL collate names differently.
        return sorted(tools, key=lambda tool: tool.name)

    async def discard(self, tenant: str, name: str, version: int) -> None:
        """Remove one version that must not be kept (its audit event could not be written)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.delete(declared_tools).where(_c.tenant == tenant, _c.name == name, _c.version == version)
            )

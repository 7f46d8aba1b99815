"""Graph definitions in the SQL store (beside the audit log): versioned, per tenant, never rewritten.

Each create of a graph id in a tenant adds the next version; runs name the version they used. Graphs
shipped with Countersign (`demo-review`) are kept under the tenant `_builtin`, visible to every tenant
unless the tenant stores its own graph under the same id; a changed shipped file becomes a new version
at start-up.
"""

from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from countersign.models.graph import GraphDefinition, GraphRecord
from countersign.store.sql import open_engine, release_engine

BUILTIN_TENANT = "_builtin"

metadata = sa.MetaData()
graph_definitions = sa.Table(
    "graph_definitions",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("graph_id", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("definition", sa.Text, nullable=False),  # JSON, as validated
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
)
_c = graph_definitions.c
_ATTEMPTS = 5


def _record(row: sa.Row[Any]) -> GraphRecord:
    return GraphRecord(
        graph_id=row.graph_id,
        version=row.version,
        definition=GraphDefinition.model_validate_json(row.definition),
        tenant=row.tenant,
        created_by=row.created_by,
        created_at=datetime.fromisoformat(row.created_at),
    )


class GraphStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> "GraphStore":
        return cls(await open_engine(url, metadata, schema=schema))

    async def close(self) -> None:
        await release_engine(self._engine)

    async def __aenter__(self) -> "GraphStore":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def create(self, definition: GraphDefinition, *, tenant: str, created_by: str) -> GraphRecord:
        """Store `definition` as the next version of its id in `tenant` (the caller has validated it)."""
        body = definition.model_dump_json(by_alias=True)
        for attempt in range(_ATTEMPTS):
            async with self._engine.connect() as conn:
                latest = await conn.scalar(
                    sa.select(sa.func.max(_c.version)).where(
                        _c.tenant == tenant, _c.graph_id == definition.id
                    )
                )
                version = (latest or 0) + 1
                row = {
                    "tenant": tenant,
                    "graph_id": definition.id,
                    "version": version,
                    "definition": body,
                    "created_by": created_by,
                    "created_at": datetime.now(UTC).isoformat(),
                }
                try:
                    await conn.execute(sa.insert(graph_definitions), row)
                    await conn.commit()
                except IntegrityError:
                    # Someone stored the same version first: take the next one.
                    if attempt == _ATTEMPTS - 1:
                        raise
                    continue
            return await self._one(tenant, definition.id, version)
        raise AssertionError("unreachable")

    async def ensure_builtin(self, definition: GraphDefinition) -> GraphRecord:
        """The shipped definition, stored as a new version only if it differs from the latest."""
        current = await self.latest(BUILTIN_TENANT, definition.id, builtins=False)
        if current is not None and current.definition == definition:
            return current
        return await self.create(definition, tenant=BUILTIN_TENANT, created_by="countersign")

    async def latest(self, tenant: str, graph_id: str, *, builtins: bool = True) -> GraphRecord | None:
        """The tenant's newest version of `graph_id`, else (when `builtins`) the shipped one."""
        for owner in (tenant, BUILTIN_TENANT) if builtins else (tenant,):
            async with self._engine.connect() as conn:
                row = (
                    await conn.execute(
                        sa.select(graph_definitions)
                        .where(_c.tenant == owner, _c.graph_id == graph_id)
                        .order_by(_c.version.desc())
                        .limit(1)
                    )
                ).first()
            if row is not None:
                return _record(row)
        return None

    async def get(self, tenant: str, graph_id: str, version: int) -> GraphRecord | None:
        """One version: the tenant's own if it has the id, else the shipped graph's."""
        own = await self.latest(tenant, graph_id, builtins=False)
        owner = tenant if own is not None else BUILTIN_TENANT
        try:
            return await self._one(owner, graph_id, version)
        except LookupError:
            return None

    async def _one(self, tenant: str, graph_id: str, version: int) -> GraphRecord:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(graph_definitions).where(
                        _c.tenant == tenant, _c.graph_id == graph_id, _c.version == version
                    )
                )
            ).first()
        if row is None:
            raise LookupError(f"graph {graph_id!r} has no version {version}")
        return _record(row)

    async def visible(self, tenant: str) -> list[GraphRecord]:
        """The latest version of every graph the tenant sees (its own shadow shipped ones), by id."""
        newest = (
            sa.select(_c.tenant, _c.graph_id, sa.func.max(_c.version).label("version"))
            .where(_c.tenant.in_([tenant, BUILTIN_TENANT]))
            .group_by(_c.tenant, _c.graph_id)
            .subquery()
        )
        query = sa.select(graph_definitions).join(
            newest,
            sa.and_(
                _c.tenant == newest.c.tenant, _c.graph_id == newest.c.graph_id, _c.version == newest.c.version
            ),
        )
        async with self._engine.connect() as conn:
            rows = [_record(row) for row in await conn.execute(query)]
        mine = {r.graph_id for r in rows if r.tenant == tenant}
        visible = [r for r in rows if r.tenant == tenant or r.graph_id not in mine]
        return sorted(visible, key=lambda r: r.graph_id)

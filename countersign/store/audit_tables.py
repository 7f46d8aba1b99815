"""The audit log's tables, the conversion of events to rows and back, and upgrading an older table."""

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from countersign.models.audit import StoredAuditEvent

metadata = sa.MetaData()
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("workflow_id", sa.Text, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("actor_kind", sa.Text, nullable=False),
    sa.Column("role", sa.Text),
    sa.Column("proposal_version", sa.Integer),
    sa.Column("proposal_hash", sa.Text),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    # JSON as text, not JSONB: both backends hand back exactly what was written.
    sa.Column("data", sa.Text),
    sa.Column("at", sa.Text, nullable=False),  # as the workflow wrote it; this is what is hashed
    # `at` as fixed-width UTC text: sorts and compares as time does, on both backends.
    sa.Column("at_utc", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.Text, nullable=False),
    # The key `hash` was made with; NULL: a legacy SHA-256 link. Added to older tables on open.
    sa.Column("key_id", sa.Text),
    sa.Column("hash", sa.Text, nullable=False),
    sa.Index("audit_events_by_tenant_time", "tenant", "at_utc"),
    sa.Index("audit_events_by_tenant_actor", "tenant", "actor"),
)
# The legacy seal: each chain's last legacy link when the log first met its keys, one row per chain,
# and one row (workflow_id "") for the seal itself: seq is how many chains it holds, hash a random id.
# Every row is MACed, so rows cannot be added or changed; a removed chain row shows in the count.
audit_legacy_seal = sa.Table(
    "audit_legacy_seal",
    metadata,
    sa.Column("workflow_id", sa.Text, primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.Text, nullable=False),
    sa.Column("key_id", sa.Text, nullable=False),
    sa.Column("mac", sa.Text, nullable=False),
)
_c = audit_events.c
EVENT_FIELDS = list(StoredAuditEvent.model_fields)
EVENT_COLUMNS = [_c[name] for name in EVENT_FIELDS] + [_c.at_utc]
# Any fixed number (not sql.py's): PostgreSQL's advisory lock that serialises upgrading and sealing.
_UPGRADE_LOCK = 7140224
SEAL_ROW = ""  # the seal's own row in audit_legacy_seal


def utc_text(moment: datetime | str) -> str:
    if isinstance(moment, str):
        text = moment
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return text  # kept as written: stored and verifiable, only its place in time order is off
    if moment.tzinfo is None:  # naive times are taken as UTC, as workflow.now() is
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_row(event: StoredAuditEvent) -> dict[str, Any]:
    data = None if event.data is None else json.dumps(event.data, sort_keys=True, separators=(",", ":"))
    return {**event.model_dump(mode="json"), "data": data, "at_utc": utc_text(event.at)}


def from_row(row: sa.Row[Any]) -> StoredAuditEvent:
    values = {name: getattr(row, name) for name in EVENT_FIELDS}
    values["data"] = None if row.data is None else json.loads(row.data)
    return StoredAuditEvent.model_validate(values)


async def lock_for_upgrade(conn: AsyncConnection) -> None:
    """Serialise upgrading and sealing between processes, until `conn` commits."""
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK})"))


async def add_key_id(engine: AsyncEngine, schema: str | None) -> None:
    """A table made before the log had keys gets its `key_id` column (NULL: legacy rows). Checked
    first without the lock: ALTER TABLE waits for every reader, which no open after the first needs."""

    def missing(sync: sa.Connection) -> bool:
        return "key_id" not in {
            c["name"] for c in sa.inspect(sync).get_columns("audit_events", schema=schema)
        }

    async with engine.connect() as conn:
        if not await conn.run_sync(missing):
            return
    async with engine.connect() as conn:
        await lock_for_upgrade(conn)
        if await conn.run_sync(missing):
            quote = engine.dialect.identifier_preparer
            table = quote.quote("audit_events")
            if schema is not None:
                table = f"{quote.quote_schema(schema)}.{table}"
            await conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN key_id TEXT")
        await conn.commit()

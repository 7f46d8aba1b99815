"""Signed callbacks in the SQL store (beside the audit log): each tenant's signing secrets, and the
delivery log (one row per attempt to deliver an event to a request's `callback_url`).

Secrets are created on first use (`whsec_` and 24 random bytes, base64, as Standard Webhooks has them)
and rotated by an ADMIN: a rotation adds the next generation and leaves the previous one signing until
its grace ends, so a receiver verifies with either while it switches over. They are read here, at
delivery time, by the activity and the gateway only: never passed through Temporal, logged or audited.
"""

import base64
import secrets as random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from countersign.models.callbacks import (
    CallbackDelivery,
    CallbackEvent,
    DeliveryAttempt,
    DeliveryStatus,
    WebhookSecret,
)
from countersign.store.sql import open_engine, release_engine

metadata = sa.MetaData()
webhook_secrets = sa.Table(
    "webhook_secrets",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    # Set when a newer generation replaced it: until then (seconds since the epoch) it still signs.
    sa.Column("signs_until", sa.Double),
)
callback_deliveries = sa.Table(
    "callback_deliveries",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("workflow_id", sa.Text, nullable=False),
    sa.Column("requester_id", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("event", sa.Text, nullable=False),  # the CallbackEvent as JSON: a redelivery sends it again
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("http_status", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("at", sa.Text, nullable=False),
    sa.Column("redelivered_by", sa.Text),
    sa.Index("callback_deliveries_by_workflow", "tenant", "workflow_id"),
)
_s = webhook_secrets.c
_d = callback_deliveries.c
_ATTEMPTS = 5
# Kept for operators: a receiver's error page is not worth more.
_ERROR_CHARS = 500


def new_secret() -> str:
    return "whsec_" + base64.b64encode(random.token_bytes(24)).decode()


def _attempt(row: Mapping[Any, Any]) -> DeliveryAttempt:
    return DeliveryAttempt(
        id=row["id"],
        workflow_id=row["workflow_id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        url=row["url"],
        attempt=row["attempt"],
        status=DeliveryStatus(row["status"]),
        http_status=row["http_status"],
        error=row["error"],
        at=datetime.fromisoformat(row["at"]),
        redelivered_by=row["redelivered_by"],
    )


class CallbackStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> "CallbackStore":
        return cls(await open_engine(url, metadata, schema=schema))

    async def close(self) -> None:
        await release_engine(self._engine)

    async def __aenter__(self) -> "CallbackStore":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ---- secrets ------------------------------------------------------------------------------

    async def secret(self, tenant: str) -> WebhookSecret:
        """The tenant's current secret, created on first use."""
        for _ in range(_ATTEMPTS):
            async with self._engine.connect() as conn:
                rows = await self._secrets(conn, tenant)
                if rows:
                    previous = [r.signs_until for r in rows[1:] if r.signs_until is not None]
                    until = max(previous, default=None)
                    return WebhookSecret(
                        secret=rows[0].secret,
                        previous_valid_until=(
                            datetime.fromtimestamp(until, UTC) if until and until > _now() else None
                        ),
                    )
                # Created here, or by another gateway meanwhile: either way the next pass reads it.
                await self._insert(conn, tenant, 1)
        raise TimeoutError("the webhook secret could not be read back; try again")

    async def rotate(self, tenant: str, grace: timedelta) -> WebhookSecret:
        """A new current secret; the one it replaces signs beside it for `grace`."""
        for _ in range(_ATTEMPTS):
            async with self._engine.connect() as conn:
                rows = await self._secrets(conn, tenant)
                generation = rows[0].generation + 1 if rows else 1
                if rows:
                    # Only the replaced one gets a grace; older ones keep the end they already had.
                    await conn.execute(
                        sa.update(webhook_secrets)
                        .where(_s.tenant == tenant, _s.signs_until.is_(None))
                        .values(signs_until=_now() + grace.total_seconds())
                    )
                if await self._insert(conn, tenant, generation):
                    return await self.secret(tenant)
        raise TimeoutError("the webhook secret kept changing while being rotated; try again")

    async def signing_secrets(self, tenant: str) -> list[str]:
        """Every secret that signs now: the current one first, then any still in their grace."""
        current = await self.secret(tenant)
        async with self._engine.connect() as conn:
            rows = await self._secrets(conn, tenant)
        now = _now()
        return [current.secret] + [
            r.secret for r in rows if r.secret != current.secret and (r.signs_until or 0) > now
        ]

    async def _secrets(self, conn: AsyncConnection, tenant: str) -> list[sa.Row[Any]]:
        query = sa.select(webhook_secrets).where(_s.tenant == tenant).order_by(_s.generation.desc())
        return list(await conn.execute(query))

    async def _insert(self, conn: AsyncConnection, tenant: str, generation: int) -> bool:
        """Commits the new generation with whatever the connection did before; False when another
        gateway stored that generation first (the caller reads again)."""
        row = {
            "tenant": tenant,
            "generation": generation,
            "secret": new_secret(),
            "created_at": datetime.now(UTC).isoformat(),
        }
        try:
            await conn.execute(sa.insert(webhook_secrets), row)
            await conn.commit()
        except IntegrityError:
            await conn.rollback()
            return False
        return True

    # ---- the delivery log ---------------------------------------------------------------------

    async def record(
        self,
        delivery: CallbackDelivery,
        *,
        attempt: int,
        status: DeliveryStatus,
        http_status: int | None = None,
        error: str | None = None,
        redelivered_by: str | None = None,
    ) -> DeliveryAttempt:
        row = {
            "id": uuid.uuid4().hex,
            "tenant": delivery.tenant,
            "workflow_id": delivery.workflow_id,
            "requester_id": delivery.requester_id,
            "event_id": delivery.event.id,
            "event_type": delivery.event.type.value,
            "url": delivery.url,
            "event": delivery.event.model_dump_json(),
            "attempt": attempt,
            "status": status.value,
            "http_status": http_status,
            "error": error[:_ERROR_CHARS] if error else None,
            "at": datetime.now(UTC).isoformat(),
            "redelivered_by": redelivered_by,
        }
        async with self._engine.begin() as conn:
            await conn.execute(sa.insert(callback_deliveries), row)
        return _attempt(row)

    async def attempts(self, tenant: str, workflow_id: str) -> list[DeliveryAttempt]:
        """Every attempt for the workflow, oldest first."""
        query = (
            sa.select(callback_deliveries)
            .where(_d.tenant == tenant, _d.workflow_id == workflow_id)
            .order_by(_d.at, _d.attempt)
        )
        async with self._engine.connect() as conn:
            return [_attempt(row._mapping) for row in await conn.execute(query)]

    async def requester_of(self, tenant: str, workflow_id: str) -> str | None:
        """Whose request the workflow's deliveries are for; None when it has none in `tenant`."""
        query = sa.select(_d.requester_id).where(_d.tenant == tenant, _d.workflow_id == workflow_id).limit(1)
        async with self._engine.connect() as conn:
            found: str | None = await conn.scalar(query)
        return found

    async def delivery(self, tenant: str, workflow_id: str, delivery_id: str) -> tuple[CallbackDelivery, int]:
        """What attempt `delivery_id` delivered, and the highest attempt number of its event so far;
        LookupError when the tenant's workflow has no such attempt."""
        query = sa.select(callback_deliveries).where(
            _d.tenant == tenant, _d.workflow_id == workflow_id, _d.id == delivery_id
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                raise LookupError(f"no delivery {delivery_id} of workflow {workflow_id}")
            latest = await conn.scalar(
                sa.select(sa.func.max(_d.attempt)).where(_d.tenant == tenant, _d.event_id == row.event_id)
            )
        delivery = CallbackDelivery(
            tenant=row.tenant,
            workflow_id=row.workflow_id,
            requester_id=row.requester_id,
            url=row.url,
            event=CallbackEvent.model_validate_json(row.event),
        )
        return delivery, int(latest or 0)


def _now() -> float:
    return datetime.now(UTC).timestamp()

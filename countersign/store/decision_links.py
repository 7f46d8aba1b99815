"""Decision links in the SQL store (beside the audit log, SQLite or PostgreSQL): minted by the worker
when it sends a message that asks for a decision, checked and used up by the gateway.

A token is `<id>-<mac>`: a random id (80 bits) naming the row, and an HMAC over the id and everything
the row binds (principal, tenant, workflow, step, version, action, expiry, channel) under the link keys
(security/link_keys.py). A row someone altered, or a guessed id, fails the MAC. Single use: the first
use marks every link of the same message (its Approve and Reject buttons, its reply-to address) used,
in one conditional UPDATE, so two clicks racing decide once.
"""

import base64
import hashlib
import json
import secrets
from datetime import UTC, datetime
from types import TracebackType

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from countersign.models.links import CheckedLink, LinkGrant, LinkProblem
from countersign.security.link_keys import LinkKeyring
from countersign.store.sql import open_engine, release_engine

metadata = sa.MetaData()
decision_links = sa.Table(
    "decision_links",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    # The links of one message share it: using one uses them all.
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("key_id", sa.Text, nullable=False),
    sa.Column("mac", sa.Text, nullable=False),
    sa.Column("grant", sa.Text, nullable=False),  # the LinkGrant as JSON
    sa.Column("workflow_id", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("used_at", sa.Text),
    sa.Column("used_for", sa.Text),
    sa.Index("decision_links_by_message", "message"),
)
_c = decision_links.c


def _new_id() -> str:
    return base64.b32encode(secrets.token_bytes(10)).decode().lower()


def _signed(link_id: str, message: str, grant: LinkGrant) -> bytes:
    document = {"id": link_id, "message": message, "grant": grant.model_dump(mode="json")}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def message_key(grant: LinkGrant, note_key: str) -> str:
    """The message a link belongs to: one notification to one principal."""
    return hashlib.sha256(f"{note_key}\x00{grant.principal_id}".encode()).hexdigest()[:32]


class DecisionLinks:
    def __init__(self, engine: AsyncEngine, keys: LinkKeyring) -> None:
        self._engine = engine
        self._keys = keys

    @classmethod
    async def open(cls, url: str, keys: LinkKeyring, *, schema: str | None = None) -> "DecisionLinks":
        return cls(await open_engine(url, metadata, schema=schema), keys)

    async def close(self) -> None:
        await release_engine(self._engine)

    async def __aenter__(self) -> "DecisionLinks":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def mint(self, grants: list[LinkGrant], note_key: str) -> list[str]:
        """One token per grant, all of one message (`note_key`: the notification's key)."""
        tokens, rows = [], []
        now = datetime.now(UTC).isoformat()
        for grant in grants:
            link_id, message = _new_id(), message_key(grant, note_key)
            key_id = self._keys.active_key_id
            mac = self._keys.mac(key_id, _signed(link_id, message, grant))
            rows.append(
                {
                    "id": link_id,
                    "message": message,
                    "key_id": key_id,
                    "mac": mac,
                    "grant": grant.model_dump_json(),
                    "workflow_id": grant.workflow_id,
                    "created_at": now,
                }
            )
            tokens.append(f"{link_id}-{mac}")
        if rows:
            async with self._engine.begin() as conn:
                await conn.execute(sa.insert(decision_links), rows)
        return tokens

    async def check(self, token: str) -> CheckedLink | LinkProblem:
        """The link behind `token` if it is genuine (used or not), else UNKNOWN. Reads only."""
        link_id, dash, mac = token.strip().lower().partition("-")
        if not dash or not link_id or not mac:
            return LinkProblem.UNKNOWN
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(decision_links).where(_c.id == link_id))).first()
        if row is None:
            return LinkProblem.UNKNOWN
        grant = LinkGrant.model_validate_json(row.grant)
        if row.mac != mac or not self._keys.verify(row.key_id, _signed(link_id, row.message, grant), mac):
            return LinkProblem.UNKNOWN
        return CheckedLink(
            id=link_id,
            grant=grant,
            used_at=datetime.fromisoformat(row.used_at) if row.used_at else None,
            used_for=row.used_for,
        )

    async def usable(self, token: str, now: datetime | None = None) -> CheckedLink | LinkProblem:
        """`check`, then refused when used or past its expiry."""
        link = await self.check(token)
        if isinstance(link, LinkProblem):
            return link
        if link.used_at is not None:
            return LinkProblem.USED
        if (now or datetime.now(UTC)) >= link.grant.expires_at:
            return LinkProblem.EXPIRED
        return link

    async def use(self, link: CheckedLink, used_for: str) -> bool:
        """Mark the link and its siblings used; False when one of them was used first (a race lost)."""
        now = datetime.now(UTC).isoformat()
        async with self._engine.begin() as conn:
            message = (await conn.execute(sa.select(_c.message).where(_c.id == link.id))).scalar_one()
            taken = await conn.execute(
                sa.select(sa.func.count()).where(_c.message == message, _c.used_at.is_not(None))
            )
            if taken.scalar_one():
                return False
            result = await conn.execute(
                sa.update(decision_links)
                .where(_c.message == message, _c.used_at.is_(None))
                .values(used_at=now, used_for=used_for[:200])
            )
            return bool(result.rowcount)

    async def release(self, link: CheckedLink) -> None:
        """Undo `use` when the decision could not be delivered (Temporal unreachable): the reviewer
        may try the same link again, since nothing was decided."""
        async with self._engine.begin() as conn:
            message = (await conn.execute(sa.select(_c.message).where(_c.id == link.id))).scalar_one()
            await conn.execute(
                sa.update(decision_links).where(_c.message == message).values(used_at=None, used_for=None)
            )

"""The SQL audit log: every workflow's audit events, kept after Temporal's retention has dropped them.

SQLite (`<data-dir>/audit.db`) by default, PostgreSQL for a shared deployment. Rows are only ever
inserted: a resent event is compared with the stored one, never rewritten.

Each workflow's events form a keyed chain: a row's link (`StoredAuditEvent.hash`) is an HMAC-SHA256,
under the audit key the row names (`key_id`), of the row and its predecessor's link. The keys are not in
the database (security/audit_keys.py), so someone who can only write the database can change or
delete rows but cannot make valid links again: `verify` names the first bad link of each chain.

What links alone cannot show is a chain's *last* rows, or a whole chain, deleted: what is left is
still a valid chain. Anchors do (`anchor`, `Anchors`): a signed record of every chain's last seq and
link, kept somewhere else; `verify` with them reports an anchored chain that is gone, shorter, or
different where the anchor saw it.

Rows from before the log had keys are legacy links, trusted only within the legacy seal
(store/audit_seal.py). The parts: the tables and rows (audit_tables.py), the links (audit_links.py),
the seal, anchors (audit_anchors.py) and verification (audit_verify.py); this module is the store.
"""

import csv
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, TextIO

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from countersign.models.audit import (
    AnchoredHead,
    AuditAck,
    AuditAnchor,
    AuditBatch,
    LogProblem,
    StoredAuditEvent,
    VerifyReport,
)
from countersign.models.errors import CountersignError
from countersign.security.audit_keys import AuditKeyring
from countersign.security.gateway_keys import MissingKey
from countersign.store.audit_anchors import Anchors, anchored_heads
from countersign.store.audit_links import anchor_bytes, chain_link, same_link
from countersign.store.audit_seal import SEAL_QUERY, SealState, read_seal, seal_legacy_chains
from countersign.store.audit_tables import (
    EVENT_COLUMNS,
    EVENT_FIELDS,
    SEAL_ROW,
    add_key_id,
    audit_events,
    audit_legacy_seal,
    from_row,
    lock_for_upgrade,
    metadata,
    to_row,
    utc_text,
)
from countersign.store.audit_verify import ChainVerifier
from countersign.store.sql import open_engine, release_engine

_c = audit_events.c
_s = audit_legacy_seal.c
# Appends that lose a race re-read what the winner stored; one retry usually settles it.
_ATTEMPTS = 5


class AuditConflict(CountersignError, ValueError):
    def __init__(self, workflow_id: str, seq: int) -> None:
        super().__init__(
            f"audit event {seq} of workflow {workflow_id} differs from the one already stored; "
            "the audit log is append-only and is never rewritten"
        )
        self.workflow_id, self.seq = workflow_id, seq


class AuditGap(CountersignError, ValueError):
    def __init__(self, workflow_id: str, first_seq: int, next_seq: int) -> None:
        held = f"only seqs 0 to {next_seq - 1}" if next_seq else "none of its events"
        super().__init__(
            f"audit events of workflow {workflow_id} start at seq {first_seq}, but the log holds {held}: "
            f"send from {next_seq}"
        )
        self.workflow_id, self.first_seq, self.next_seq = workflow_id, first_seq, next_seq


class AuditStore:
    def __init__(
        self, engine: AsyncEngine, keyring: AuditKeyring | None = None, *, owns_engine: bool = True
    ) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._keyring = keyring
        self._owns_engine = owns_engine
        self._sealed = False

    @classmethod
    async def open(
        cls, url: str, *, schema: str | None = None, keyring: AuditKeyring | None = None
    ) -> "AuditStore":
        """`sqlite:///PATH` or `postgresql://...`; creates the tables if missing, and adds `key_id` to
        a table made before the log had keys. `schema` (PostgreSQL only, must exist) puts the tables
        there instead of on the search path. `keyring`: the audit keys (security/audit_keys.py),
        which appending, verifying and anchoring need; reading does not."""
        engine = await open_engine(url, metadata, schema=schema)
        try:
            await add_key_id(engine, schema)
        except BaseException:
            await release_engine(engine)
            raise
        return cls(engine, keyring)

    def with_keyring(self, keyring: AuditKeyring) -> "AuditStore":
        """This store, able to append: same database and connections. Closing it closes nothing;
        the store it came from still owns the connections."""
        return AuditStore(self._engine, keyring, owns_engine=False)

    async def close(self) -> None:
        if self._owns_engine:
            await release_engine(self._engine)

    async def __aenter__(self) -> "AuditStore":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _keys(self, doing: str) -> AuditKeyring:
        if self._keyring is None:
            raise MissingKey(
                f"{doing} the audit log needs its keys: this store was opened without them "
                "(AuditStore.open(..., keyring=settings.audit_keyring()); COUNTERSIGN_AUDIT_KEYS)"
            )
        return self._keyring

    async def append(self, batch: AuditBatch) -> AuditAck:
        """Store the batch's events not stored yet; idempotent, so a retried activity is harmless."""
        keyring = self._keys("appending to")
        await self._ensure_sealed(keyring)
        for attempt in range(_ATTEMPTS):
            try:
                async with self._engine.connect() as conn:
                    if self._sqlite:  # the write lock up front: no two appends read the same tail
                        await conn.exec_driver_sql("BEGIN IMMEDIATE")
                    ack = await self._append(conn, batch, keyring)
                    await conn.commit()
                    return ack
            except IntegrityError:
                # Another writer stored some of these seqs first: the next attempt compares with theirs.
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _append(self, conn: AsyncConnection, batch: AuditBatch, keyring: AuditKeyring) -> AuditAck:
        workflow_id, first = batch.workflow_id, batch.first_seq
        rows = await conn.execute(
            sa.select(_c.seq, _c.hash, _c.key_id)
            .where(_c.workflow_id == workflow_id, _c.seq >= max(first - 1, 0))
            .order_by(_c.seq)
        )
        stored: dict[int, tuple[str, str | None]] = {seq: (digest, key_id) for seq, digest, key_id in rows}
        if first > 0 and first - 1 not in stored:
            top = await conn.scalar(sa.select(sa.func.max(_c.seq)).where(_c.workflow_id == workflow_id))
            raise AuditGap(workflow_id, first, 0 if top is None else top + 1)
        prev, new = stored[first - 1][0] if first > 0 else "", []
        for seq, event in enumerate(batch.events, start=first):
            # A stored event is compared under the key it was linked with (an older one after a
            # rotation, none for a legacy row); a new one is linked with the active key.
            digest, key_id = stored.get(seq, ("", keyring.active_key_id))
            candidate = StoredAuditEvent(
                workflow_id=workflow_id,
                tenant=batch.tenant,
                seq=seq,
                prev_hash=prev,
                key_id=key_id,
                hash="",
                **dict(event),
            )
            candidate.hash = prev = chain_link(candidate, keyring)
            if seq not in stored:
                new.append(candidate)
                stored[seq] = (candidate.hash, key_id)
            elif not same_link(digest, candidate.hash):
                raise AuditConflict(workflow_id, seq)
        if new:
            await conn.execute(sa.insert(audit_events), [to_row(event) for event in new])
        last = max(stored, default=-1)
        return AuditAck(stored=len(new), last_seq=last, last_hash=stored[last][0] if last >= 0 else "")

    async def for_workflow(self, workflow_id: str) -> list[StoredAuditEvent]:
        query = sa.select(*EVENT_COLUMNS).where(_c.workflow_id == workflow_id).order_by(_c.seq)
        return [event async for event in self._events(query)]

    async def search(
        self,
        tenant: str,
        *,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
    ) -> list[StoredAuditEvent]:
        """A tenant's events with `since <= at < until` (naive times are UTC), oldest first."""
        query = sa.select(*EVENT_COLUMNS).where(_c.tenant == tenant)
        if actor is not None:
            query = query.where(_c.actor == actor)
        if since is not None:
            query = query.where(_c.at_utc >= utc_text(since))
        if until is not None:
            query = query.where(_c.at_utc < utc_text(until))
        query = query.order_by(_c.at_utc, _c.workflow_id, _c.seq).limit(limit)
        return [event async for event in self._events(query)]

    async def verify(self, workflow_id: str | None = None, anchors: Anchors | None = None) -> VerifyReport:
        """Recheck every chain (or one) under the keys, and against `anchors` if given; each broken
        chain is reported once, at its first bad (or missing) event."""
        report, _ = await self._verify(workflow_id, anchors)
        return report

    async def anchor(self, now: datetime | None = None) -> tuple[AuditAnchor, VerifyReport]:
        """A signed anchor of every chain that verifies, at its last event, and the report of the
        check it came from: a broken chain is left out (an anchor vouches for what it holds)."""
        keyring = self._keys("anchoring")
        report, heads = await self._verify(None, None)
        key_id = keyring.active_key_id
        anchor = AuditAnchor(
            at=utc_text(now or datetime.now(UTC)),
            key_id=key_id,
            public_key=keyring.anchor_public_key(key_id),
            legacy_seal=report.legacy_seal,
            chains=heads,
        )
        anchor.signature = keyring.sign_anchor(key_id, anchor_bytes(anchor))
        return anchor, report

    async def _verify(
        self, workflow_id: str | None, anchors: Anchors | None
    ) -> tuple[VerifyReport, dict[str, AnchoredHead]]:
        keyring = self._keys("verifying")
        await self._ensure_sealed(keyring)
        seal = await self._read_seal(keyring, workflow_id)
        anchored = anchored_heads(anchors, workflow_id)
        query = sa.select(*EVENT_COLUMNS).order_by(_c.workflow_id, _c.seq)
        if workflow_id is not None:
            query = query.where(_c.workflow_id == workflow_id)
        verifier = ChainVerifier(keyring, seal.heads, anchored)
        async for row in self._rows(query):
            verifier.feed(row)
        report = verifier.finish()
        report.problems = seal.problems + (anchors.problems if anchors else [])
        report.anchors = len(anchors.valid) + len(anchors.problems) if anchors else 0
        report.legacy_seal = seal.seal_id
        for label, anchor in anchors.valid if anchors else []:
            if anchor.legacy_seal != seal.seal_id:
                reason = (
                    f"the log's legacy seal is not the one {label} saw ({anchor.legacy_seal}): removed "
                    "and made again, as to pass keyed chains off as legacy ones"
                )
                report.problems.append(LogProblem(where="legacy seal", reason=reason))
                break  # said once, at the first anchor that saw another seal
        return report, verifier.heads

    async def export(self, fmt: Literal["jsonl", "csv"], out: TextIO, tenant: str | None = None) -> int:
        """Write every event (or a tenant's), chain by chain; returns how many were written."""
        query = sa.select(*EVENT_COLUMNS).order_by(_c.workflow_id, _c.seq)
        if tenant is not None:
            query = query.where(_c.tenant == tenant)
        writer = csv.DictWriter(out, fieldnames=EVENT_FIELDS) if fmt == "csv" else None
        if writer is not None:
            writer.writeheader()
        count = 0
        async for event in self._events(query):
            if writer is None:
                out.write(event.model_dump_json() + "\n")
            else:
                data = None if event.data is None else json.dumps(event.data)
                writer.writerow({**event.model_dump(mode="json"), "data": data})
            count += 1
        return count

    async def _ensure_sealed(self, keyring: AuditKeyring) -> None:
        """Seal the log's legacy chains before this store writes or trusts any keyed link."""
        if self._sealed:
            return
        async with self._engine.connect() as conn:
            sealed = await conn.scalar(sa.select(_s.seq).where(_s.workflow_id == SEAL_ROW))
        if sealed is None:
            async with self._engine.connect() as conn:
                await lock_for_upgrade(conn)
                await seal_legacy_chains(conn, keyring)
                await conn.commit()
        self._sealed = True

    async def _read_seal(self, keyring: AuditKeyring, workflow_id: str | None) -> SealState:
        """The sealed legacy chains whose record verifies, the seal's id, and what is wrong with it."""
        return await read_seal(self._rows(SEAL_QUERY), keyring, workflow_id)

    async def _rows(self, query: sa.Select[Any]) -> AsyncIterator[sa.Row[Any]]:
        # Streamed: verify and export read whole logs, which need not fit in memory.
        async with self._engine.connect() as conn:
            result = await conn.stream(query)
            async for row in result:
                yield row

    async def _events(self, query: sa.Select[Any]) -> AsyncIterator[StoredAuditEvent]:
        async for row in self._rows(query):
            yield from_row(row)

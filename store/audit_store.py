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

Rows from before the log had keys (no `key_id`) are legacy links, plain SHA-256 of the same JSON
without `key_id`, and verify as before. So that nobody can pass off a keyed chain as legacy by
recomputing it with SHA-256, the first process that appends to, verifies or anchors such a log with
the keys *seals* it first: it records, under the key, each chain's last legacy link then
(`audit_legacy_seal`). Afterwards a legacy link is valid only within a sealed chain, up to its sealed
head, and never after a keyed link. (A new log is sealed the same way, empty.)
"""

import csv
import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, TextIO

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.audit import (
    AnchoredHead,
    AuditAck,
    AuditAnchor,
    AuditBatch,
    ChainBreak,
    LogProblem,
    StoredAuditEvent,
    VerifyReport,
)
from models.errors import CountersignError
from security.audit_keys import AuditKeyring
from security.gateway_keys import MissingKey
from store.sql import open_engine

_metadata = sa.MetaData()
audit_events = sa.Table(
    "audit_events",
    _metadata,
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
    _metadata,
    sa.Column("workflow_id", sa.Text, primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.Text, nullable=False),
    sa.Column("key_id", sa.Text, nullable=False),
    sa.Column("mac", sa.Text, nullable=False),
)
_c = audit_events.c
_s = audit_legacy_seal.c
_FIELDS = list(StoredAuditEvent.model_fields)
_EVENT_COLUMNS = [_c[name] for name in _FIELDS] + [_c.at_utc]
# Appends that lose a race re-read what the winner stored; one retry usually settles it.
_ATTEMPTS = 5
# Any fixed number (not sql.py's): PostgreSQL's advisory lock that serialises upgrading and sealing.
_UPGRADE_LOCK = 7140224
_SEAL = ""  # the seal's own row in audit_legacy_seal


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


def _same(a: str, b: str) -> bool:
    """Constant-time equality of two links; as bytes, since a row's text may be anything at all
    (compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(a.encode(), b.encode())


def _canonical(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def link_bytes(event: StoredAuditEvent) -> bytes:
    """What a link covers: the canonical JSON (sorted keys, no whitespace, UTF-8) of every field but
    `hash`. `key_id` is in it, so a link cannot be moved to another key; a legacy row (no key) is
    exactly today's JSON without it, so its old SHA-256 link still verifies."""
    exclude = {"hash"} if event.key_id is not None else {"hash", "key_id"}
    return _canonical(event.model_dump(mode="json", exclude=exclude))


def chain_link(event: StoredAuditEvent, keyring: AuditKeyring) -> str:
    """The link `event` must carry: HMAC-SHA256 under its key, or SHA-256 for a legacy row. Raises
    MissingKey for a key the ring lacks."""
    if event.key_id is None:
        return hashlib.sha256(link_bytes(event)).hexdigest()
    if event.key_id not in keyring.keys:
        raise MissingKey(
            f"audit event {event.seq} of workflow {event.workflow_id} was linked with audit key "
            f"{event.key_id!r}, which this keyring lacks: keep old keys in COUNTERSIGN_AUDIT_KEYS"
        )
    return keyring.mac(event.key_id, link_bytes(event))


def _seal_bytes(workflow_id: str, seq: int, digest: str, key_id: str) -> bytes:
    # A "seal" member no event's JSON has: a seal MAC can never pass for a link, or the other way.
    record = {"seal": "countersign-audit-legacy/1", "workflow_id": workflow_id, "seq": seq, "hash": digest}
    return _canonical({**record, "key_id": key_id})


def anchor_bytes(anchor: AuditAnchor) -> bytes:
    """What an anchor's signature covers: its canonical JSON without `signature`."""
    return _canonical(anchor.model_dump(mode="json", exclude={"signature"}))


def anchor_line(anchor: AuditAnchor) -> str:
    """The anchor as one line of JSON (what `countersign audit anchor` writes or POSTs)."""
    return _canonical(anchor.model_dump(mode="json")).decode()


@dataclass
class Anchors:
    """Anchors read back for `verify`: those whose signature holds, and what is wrong with the rest."""

    valid: list[tuple[str, AuditAnchor]] = field(default_factory=list)  # (how to name it, the anchor)
    problems: list[LogProblem] = field(default_factory=list)

    @classmethod
    def read(cls, lines: Iterable[str], keyring: AuditKeyring, source: str = "anchors") -> "Anchors":
        """One anchor per non-blank line, as `anchor_line` writes them."""
        anchors = cls()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"anchor at line {number} of {source}"
            try:
                raw = json.loads(line)
                anchor = AuditAnchor.model_validate_json(line)  # strict, and no field it does not know
            except ValidationError as error:
                first = error.errors()[0]
                place = ".".join(str(part) for part in first["loc"])
                reason = f"not an anchor: {place + ': ' if place else ''}{first['msg']}"
                anchors.problems.append(LogProblem(where=where, reason=reason))
                continue
            except ValueError as error:  # json's JSONDecodeError
                anchors.problems.append(LogProblem(where=where, reason=f"not JSON: {error}"))
                continue
            # Checked over the JSON as written, not as parsed: any change to a value breaks it.
            signed = _canonical({k: v for k, v in raw.items() if k != "signature"})
            why = keyring.verify_anchor(anchor.key_id, anchor.public_key, signed, anchor.signature)
            if why is not None:
                anchors.problems.append(LogProblem(where=where, reason=why))
                continue
            anchors.valid.append((f"the anchor of {anchor.at} (line {number} of {source})", anchor))
        return anchors


def _utc(moment: datetime | str) -> str:
    if isinstance(moment, str):
        text = moment
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return text  # kept as written: stored and verifiable, only its place in time order is off
    if moment.tzinfo is None:  # naive times are taken as UTC, as workflow.now() is
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _to_row(event: StoredAuditEvent) -> dict[str, Any]:
    data = None if event.data is None else json.dumps(event.data, sort_keys=True, separators=(",", ":"))
    return {**event.model_dump(mode="json"), "data": data, "at_utc": _utc(event.at)}


def _from_row(row: sa.Row[Any]) -> StoredAuditEvent:
    values = {name: getattr(row, name) for name in _FIELDS}
    values["data"] = None if row.data is None else json.loads(row.data)
    return StoredAuditEvent.model_validate(values)


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
        engine = await open_engine(url, _metadata, schema=schema)
        try:
            await _add_key_id(engine, schema)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, keyring)

    def with_keyring(self, keyring: AuditKeyring) -> "AuditStore":
        """This store, able to append: same database and connections. Closing it closes nothing;
        the store it came from still owns the connections."""
        return AuditStore(self._engine, keyring, owns_engine=False)

    async def close(self) -> None:
        if self._owns_engine:
            await self._engine.dispose()

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
            elif not _same(digest, candidate.hash):
                raise AuditConflict(workflow_id, seq)
        if new:
            await conn.execute(sa.insert(audit_events), [_to_row(event) for event in new])
        last = max(stored, default=-1)
        return AuditAck(stored=len(new), last_seq=last, last_hash=stored[last][0] if last >= 0 else "")

    async def for_workflow(self, workflow_id: str) -> list[StoredAuditEvent]:
        query = sa.select(*_EVENT_COLUMNS).where(_c.workflow_id == workflow_id).order_by(_c.seq)
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
        query = sa.select(*_EVENT_COLUMNS).where(_c.tenant == tenant)
        if actor is not None:
            query = query.where(_c.actor == actor)
        if since is not None:
            query = query.where(_c.at_utc >= _utc(since))
        if until is not None:
            query = query.where(_c.at_utc < _utc(until))
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
            at=_utc(now or datetime.now(UTC)),
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
        anchored = _anchored(anchors, workflow_id)
        query = sa.select(*_EVENT_COLUMNS).order_by(_c.workflow_id, _c.seq)
        if workflow_id is not None:
            query = query.where(_c.workflow_id == workflow_id)
        verifier = _Verifier(keyring, seal.heads, anchored)
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
        query = sa.select(*_EVENT_COLUMNS).order_by(_c.workflow_id, _c.seq)
        if tenant is not None:
            query = query.where(_c.tenant == tenant)
        writer = csv.DictWriter(out, fieldnames=_FIELDS) if fmt == "csv" else None
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
            sealed = await conn.scalar(sa.select(_s.seq).where(_s.workflow_id == _SEAL))
        if sealed is None:
            async with self._engine.connect() as conn:
                await _lock(conn)
                await _seal(conn, keyring)
                await conn.commit()
        self._sealed = True

    async def _read_seal(self, keyring: AuditKeyring, workflow_id: str | None) -> "_SealState":
        """The sealed legacy chains whose record verifies, the seal's id, and what is wrong with it."""
        query = sa.select(_s.workflow_id, _s.seq, _s.hash, _s.key_id, _s.mac)
        heads: dict[str, tuple[int, str]] = {}
        problems: list[LogProblem] = []
        sealed: int | None = None  # how many chains the seal's own record says it holds
        seal_id: str | None = None
        marked = False
        records = 0
        async for row in self._rows(query):
            chain, seq, digest, key_id, mac = row.workflow_id, row.seq, row.hash, row.key_id, row.mac
            marked |= chain == _SEAL
            records += chain != _SEAL
            if not keyring.verify(key_id, _seal_bytes(chain, seq, digest, key_id), mac):
                if workflow_id is None or chain in (workflow_id, _SEAL):
                    whose = "its own record" if chain == _SEAL else f"the record of chain {chain}"
                    lacking = (
                        f" (audit key {key_id!r} is not in the keyring)" if key_id not in keyring.keys else ""
                    )
                    problems.append(
                        LogProblem(where="legacy seal", reason=f"{whose} does not verify{lacking}")
                    )
            elif chain == _SEAL:
                sealed, seal_id = seq, digest
            elif workflow_id is None or chain == workflow_id:
                heads[chain] = (seq, digest)
        if not marked:
            # _ensure_sealed seals a log that has no keyed link yet; past that, a seal is never removed.
            problems.append(
                LogProblem(
                    where="legacy seal",
                    reason="missing, though the log has keyed links: removed, so no legacy (unkeyed) "
                    "link can be trusted",
                )
            )
        elif sealed is not None and records != sealed:
            problems.append(
                LogProblem(
                    where="legacy seal",
                    reason=f"it holds {sealed} legacy chains, but {records} records of them are stored: "
                    "some were removed or added",
                )
            )
        return _SealState(heads, problems, seal_id)

    async def _rows(self, query: sa.Select[Any]) -> AsyncIterator[sa.Row[Any]]:
        # Streamed: verify and export read whole logs, which need not fit in memory.
        async with self._engine.connect() as conn:
            result = await conn.stream(query)
            async for row in result:
                yield row

    async def _events(self, query: sa.Select[Any]) -> AsyncIterator[StoredAuditEvent]:
        async for row in self._rows(query):
            yield _from_row(row)


async def _lock(conn: AsyncConnection) -> None:
    """Serialise upgrading and sealing between processes, until `conn` commits."""
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK})"))


async def _add_key_id(engine: AsyncEngine, schema: str | None) -> None:
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
        await _lock(conn)
        if await conn.run_sync(missing):
            quote = engine.dialect.identifier_preparer
            table = quote.quote("audit_events")
            if schema is not None:
                table = f"{quote.quote_schema(schema)}.{table}"
            await conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN key_id TEXT")
        await conn.commit()


async def _seal(conn: AsyncConnection, keyring: AuditKeyring) -> None:
    """Under the lock: record each chain's last legacy link, under the active key, unless the log is
    sealed already or holds keyed links (then the seal was there and has been removed: sealing again
    would bless whatever legacy links an intruder made since, so verify reports it instead)."""
    if await conn.scalar(sa.select(_s.seq).where(_s.workflow_id == _SEAL)) is not None:
        return
    if await conn.scalar(sa.select(_c.seq).where(_c.key_id.is_not(None)).limit(1)) is not None:
        return
    tops = sa.select(_c.workflow_id, sa.func.max(_c.seq).label("top")).group_by(_c.workflow_id).subquery()
    heads = sa.select(_c.workflow_id, _c.seq, _c.hash).select_from(
        audit_events.join(tops, sa.and_(_c.workflow_id == tops.c.workflow_id, _c.seq == tops.c.top))
    )
    key_id = keyring.active_key_id
    records = [(chain, seq, digest) for chain, seq, digest in await conn.execute(heads)]
    # The seal's own record: how many chains it holds, and an id no other sealing will have, which
    # anchors keep; a seal removed and made again (to bless chains recomputed as legacy) shows there.
    records.append((_SEAL, len(records), secrets.token_hex(16)))
    await conn.execute(
        sa.insert(audit_legacy_seal),
        [
            {
                "workflow_id": chain,
                "seq": seq,
                "hash": digest,
                "key_id": key_id,
                "mac": keyring.mac(key_id, _seal_bytes(chain, seq, digest, key_id)),
            }
            for chain, seq, digest in records
        ],
    )


@dataclass
class _SealState:
    heads: dict[str, tuple[int, str]]  # sealed legacy chains whose record verifies: (last seq, its link)
    problems: list[LogProblem]
    seal_id: str | None  # None: no valid seal record


# What the anchors hold, by chain and seq: {link: the first anchor that names it there}.
_Anchored = dict[str, dict[int, dict[str, str]]]


def _anchored(anchors: Anchors | None, workflow_id: str | None) -> _Anchored:
    # Consecutive anchors mostly repeat finished chains: kept once per (chain, seq, link).
    anchored: _Anchored = {}
    for label, anchor in anchors.valid if anchors else []:
        for chain, head in anchor.chains.items():
            if workflow_id is None or chain == workflow_id:
                anchored.setdefault(chain, {}).setdefault(head.seq, {}).setdefault(head.link, label)
    return anchored


@dataclass
class _Chain:
    workflow_id: str
    expected: int = 0  # the next seq
    prev: str = ""  # the last link read
    keyed: bool = False  # a keyed link was read: no legacy one may follow
    legacy: bool = False
    problem: tuple[int, str] | None = None  # its first bad link, from the chain itself
    anchor_problem: tuple[int, str] | None = None  # its first event an anchor disagrees with


class _Verifier:
    """Reads rows in (workflow_id, seq) order and checks each chain as it goes: memory holds the
    anchors and the seal, never the log."""

    def __init__(self, keyring: AuditKeyring, seal: dict[str, tuple[int, str]], anchored: _Anchored) -> None:
        self.report = VerifyReport(chains=0, events=0)
        self.heads: dict[str, AnchoredHead] = {}  # every intact chain's last event: what anchors hold
        self._keyring, self._seal, self._anchored = keyring, dict(seal), anchored
        self._chain: _Chain | None = None

    def feed(self, row: sa.Row[Any]) -> None:
        chain = self._chain
        if chain is None or chain.workflow_id != row.workflow_id:
            self._end(chain)
            chain = self._chain = _Chain(row.workflow_id)
            self.report.chains += 1
        self.report.events += 1
        if row.key_id is None and not chain.legacy:
            chain.legacy = True
            self.report.legacy_chains += 1
        anchored = self._anchored.get(chain.workflow_id, {}).get(row.seq, {})
        differing = [label for link, label in anchored.items() if link != row.hash]
        if differing and chain.anchor_problem is None:
            chain.anchor_problem = (
                row.seq,
                f"event {row.seq} is not the one {differing[0]} holds: its link differs, so it was "
                "rewritten after that anchor",
            )
        if chain.problem is None:
            chain.problem = self._check(chain, row)
        chain.expected, chain.prev = row.seq + 1, row.hash
        chain.keyed |= row.key_id is not None

    def finish(self) -> VerifyReport:
        self._end(self._chain)
        self._chain = None
        # What the seal or an anchor holds, and the log no longer has at all: deleted chains.
        for chain in sorted(self._seal.keys() | self._anchored.keys()):
            if chain in self._anchored:
                top = max(self._anchored[chain])
                holder = next(iter(self._anchored[chain][top].values()))
            else:
                top, holder = self._seal[chain][0], "the legacy seal"
            reason = f"chain deleted: {holder} holds it up to seq {top}, but none of its events is stored"
            self.report.broken.append(ChainBreak(workflow_id=chain, seq=0, reason=reason))
        return self.report

    def _end(self, chain: _Chain | None) -> None:
        if chain is None:
            return
        top = chain.expected - 1
        problems = [p for p in (chain.problem, chain.anchor_problem) if p is not None]
        sealed = self._seal.pop(chain.workflow_id, None)
        if sealed is not None and top < sealed[0]:
            problems.append(
                (
                    top + 1,
                    f"chain truncated: the legacy seal holds it up to seq {sealed[0]}, "
                    f"the log ends at seq {top}",
                )
            )
        anchored = self._anchored.pop(chain.workflow_id, {})
        beyond = max((seq for seq in anchored if seq > top), default=None)
        if beyond is not None:
            holder = next(iter(anchored[beyond].values()))
            problems.append(
                (top + 1, f"chain truncated: {holder} holds it up to seq {beyond}, the log ends at seq {top}")
            )
        if problems:
            seq, reason = min(problems, key=lambda problem: problem[0])
            self.report.broken.append(ChainBreak(workflow_id=chain.workflow_id, seq=seq, reason=reason))
        else:
            self.heads[chain.workflow_id] = AnchoredHead(seq=top, link=chain.prev)

    def _check(self, chain: _Chain, row: sa.Row[Any]) -> tuple[int, str] | None:
        """Why this row is not the valid next link of its chain, as (first bad seq, reason), or None."""
        if row.seq != chain.expected:
            return chain.expected, f"event {chain.expected} is missing (the next stored is {row.seq})"
        try:
            event = _from_row(row)
        except ValueError as error:  # pydantic's ValidationError and json's JSONDecodeError both are
            return row.seq, f"unreadable row: {error}".splitlines()[0]
        if event.prev_hash != chain.prev:
            return row.seq, "prev_hash is not the previous event's hash"
        problem = self._legacy(chain, event) if event.key_id is None else self._keyed(event)
        if problem is not None:
            return row.seq, problem
        if row.at_utc != _utc(event.at):  # the link covers `at`, not its search copy
            return row.seq, "at_utc does not match at"
        return None

    def _legacy(self, chain: _Chain, event: StoredAuditEvent) -> str | None:
        downgraded = "made without the key (a keyed link recomputed as plain SHA-256?)"
        if chain.keyed:
            return f"a legacy (unkeyed) link after keyed ones: {downgraded}"
        sealed = self._seal.get(event.workflow_id)
        if sealed is None:
            return f"a legacy (unkeyed) link in a chain the legacy seal does not hold: {downgraded}"
        if event.seq > sealed[0]:
            return (
                f"a legacy (unkeyed) link past seq {sealed[0]}, where the legacy seal ends them: {downgraded}"
            )
        if not _same(chain_link(event, self._keyring), event.hash):
            return "content does not match its hash: changed after it was written"
        if event.seq == sealed[0] and not _same(event.hash, sealed[1]):
            return "not the legacy link the legacy seal holds for this seq: the chain was rewritten"
        return None

    def _keyed(self, event: StoredAuditEvent) -> str | None:
        sealed = self._seal.get(event.workflow_id)
        if sealed is not None and event.seq <= sealed[0]:
            return f"a keyed link where the legacy seal holds legacy ones (up to seq {sealed[0]})"
        if event.key_id not in self._keyring.keys:
            return f"linked with audit key {event.key_id!r}, which the keyring lacks: cannot be checked"
        if not _same(chain_link(event, self._keyring), event.hash):
            return (
                f"content does not match its link under audit key {event.key_id!r}: changed after it "
                "was written, or recomputed without the key"
            )
        return None

"""The legacy seal: each chain's last legacy (unkeyed) link, recorded under the audit key when the log
first met its keys, and reading that record back.

Rows from before the log had keys (no `key_id`) are legacy links, plain SHA-256 of the same JSON
without `key_id`. So that nobody can pass off a keyed chain as legacy by recomputing it with SHA-256,
the first process that appends to, verifies or anchors such a log with the keys seals it first.
Afterwards a legacy link is valid only within a sealed chain, up to its sealed head, and never after a
keyed link. (A new log is sealed the same way, empty.)
"""

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from countersign.models.audit import LogProblem
from countersign.security.audit_keys import AuditKeyring
from countersign.store.audit_links import seal_bytes
from countersign.store.audit_tables import SEAL_ROW, audit_events, audit_legacy_seal

_c = audit_events.c
_s = audit_legacy_seal.c


async def seal_legacy_chains(conn: AsyncConnection, keyring: AuditKeyring) -> None:
    """Under the lock: record each chain's last legacy link, under the active key, unless the log is
    sealed already or holds keyed links (then the seal was there and has been removed: sealing again
    would bless whatever legacy links an intruder made since, so verify reports it instead)."""
    if await conn.scalar(sa.select(_s.seq).where(_s.workflow_id == SEAL_ROW)) is not None:
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
    records.append((SEAL_ROW, len(records), secrets.token_hex(16)))
    await conn.execute(
        sa.insert(audit_legacy_seal),
        [
            {
                "workflow_id": chain,
                "seq": seq,
                "hash": digest,
                "key_id": key_id,
                "mac": keyring.mac(key_id, seal_bytes(chain, seq, digest, key_id)),
            }
            for chain, seq, digest in records
        ],
    )


@dataclass
class SealState:
    heads: dict[str, tuple[int, str]]  # sealed legacy chains whose record verifies: (last seq, its link)
    problems: list[LogProblem]
    seal_id: str | None  # None: no valid seal record


# The query `read_seal` needs rows of; the store streams them (AuditStore._rows).
SEAL_QUERY = sa.select(_s.workflow_id, _s.seq, _s.hash, _s.key_id, _s.mac)


async def read_seal(
    rows: AsyncIterator[sa.Row[Any]], keyring: AuditKeyring, workflow_id: str | None
) -> SealState:
    """The sealed legacy chains whose record verifies, the seal's id, and what is wrong with it."""
    heads: dict[str, tuple[int, str]] = {}
    problems: list[LogProblem] = []
    sealed: int | None = None  # how many chains the seal's own record says it holds
    seal_id: str | None = None
    marked = False
    records = 0
    async for row in rows:
        chain, seq, digest, key_id, mac = row.workflow_id, row.seq, row.hash, row.key_id, row.mac
        marked |= chain == SEAL_ROW
        records += chain != SEAL_ROW
        if not keyring.verify(key_id, seal_bytes(chain, seq, digest, key_id), mac):
            if workflow_id is None or chain in (workflow_id, SEAL_ROW):
                whose = "its own record" if chain == SEAL_ROW else f"the record of chain {chain}"
                lacking = (
                    f" (audit key {key_id!r} is not in the keyring)" if key_id not in keyring.keys else ""
                )
                problems.append(LogProblem(where="legacy seal", reason=f"{whose} does not verify{lacking}"))
        elif chain == SEAL_ROW:
            sealed, seal_id = seq, digest
        elif workflow_id is None or chain == workflow_id:
            heads[chain] = (seq, digest)
    if not marked:
        # AuditStore._ensure_sealed seals a log with no keyed link yet; past that, a seal is never removed.
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
    return SealState(heads, problems, seal_id)

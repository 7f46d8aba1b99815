"""The audit chain's links: what a link covers and how it is computed, and the canonical bytes that
seals and anchors are signed over.

Pure functions, kept apart from the SQL: the chain's integrity rests on these bytes alone, and they must
never change with how or where the rows are stored.
"""

import hashlib
import hmac
import json
from typing import Any

from countersign.models.audit import AuditAnchor, StoredAuditEvent
from countersign.security.audit_keys import AuditKeyring
from countersign.security.gateway_keys import MissingKey


def same_link(a: str, b: str) -> bool:
    """Constant-time equality of two links; as bytes, since a row's text may be anything at all
    (compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(a.encode(), b.encode())


def canonical_json(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def link_bytes(event: StoredAuditEvent) -> bytes:
    """What a link covers: the canonical JSON (sorted keys, no whitespace, UTF-8) of every field but
    `hash`. `key_id` is in it, so a link cannot be moved to another key; a legacy row (no key) is
    exactly today's JSON without it, so its old SHA-256 link still verifies."""
    exclude = {"hash"} if event.key_id is not None else {"hash", "key_id"}
    return canonical_json(event.model_dump(mode="json", exclude=exclude))


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


def seal_bytes(workflow_id: str, seq: int, digest: str, key_id: str) -> bytes:
    # A "seal" member no event's JSON has: a seal MAC can never pass for a link, or the other way.
    record = {"seal": "countersign-audit-legacy/1", "workflow_id": workflow_id, "seq": seq, "hash": digest}
    return canonical_json({**record, "key_id": key_id})


def anchor_bytes(anchor: AuditAnchor) -> bytes:
    """What an anchor's signature covers: its canonical JSON without `signature`."""
    return canonical_json(anchor.model_dump(mode="json", exclude={"signature"}))


def anchor_line(anchor: AuditAnchor) -> str:
    """The anchor as one line of JSON (what `countersign audit anchor` writes or POSTs)."""
    return canonical_json(anchor.model_dump(mode="json")).decode()

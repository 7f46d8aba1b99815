"""What the keyed audit log finds, on SQLite and on PostgreSQL, when someone with only the database
(`location.sql`, behind the store's back) rewrites it: edited rows with their links recomputed, keyed
links passed off as legacy ones, last rows or whole chains deleted (found with an anchor), forged
anchors; and that keys rotate, and that a log written before the keys opens and keeps verifying."""

import asyncio
import base64
import hashlib
import itertools
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from countersign.api.services.audit_log import AuditLog
from countersign.models.audit import AuditAnchor, StoredAuditEvent, VerifyReport
from countersign.models.enums import WorkflowState
from countersign.models.principals import Principal
from countersign.security.audit_keys import AuditKeyring
from countersign.security.gateway_keys import MissingKey
from countersign.store.audit_anchors import Anchors
from countersign.store.audit_links import anchor_bytes, anchor_line, chain_link, link_bytes
from countersign.store.audit_store import AuditStore
from tests.conftest import Location
from tests.helpers import TEST_TRUST
from tests.store.test_audit_store import EVENTS, batch

KEYS = TEST_TRUST.audit


@pytest.fixture(autouse=True)
def _default_audit_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COUNTERSIGN_AUDIT_DATABASE_URL", raising=False)


@dataclass
class Backend:
    location: Location
    store: AuditStore

    @property
    def sql(self) -> Callable[[str], Awaitable[None]]:
        return self.location.sql

    async def open(self, keyring: AuditKeyring | None = KEYS) -> AuditStore:
        """Another process on the same log (a fresh store: nothing cached)."""
        return await AuditStore.open(self.location.url, schema=self.location.schema, keyring=keyring)

    async def verify(self, keyring: AuditKeyring = KEYS, anchors: Anchors | None = None) -> VerifyReport:
        async with await self.open(keyring) as store:
            return await store.verify(anchors=anchors)


@pytest.fixture
async def backend(location: Location) -> AsyncIterator[Backend]:
    async with await AuditStore.open(location.url, schema=location.schema, keyring=KEYS) as store:
        yield Backend(location, store)


def ring(*ids: str, active: str | None = None) -> AuditKeyring:
    """A keyring with these key ids, each key fixed by its id (so two rings agree on a shared id)."""
    keys = {key_id: hashlib.sha256(f"audit key {key_id}".encode()).digest() for key_id in ids}
    return AuditKeyring(keys, active or ids[-1])


def breaks(report: VerifyReport) -> list[tuple[str, int]]:
    return [(b.workflow_id, b.seq) for b in report.broken]


def quoted(text: str | None) -> str:
    return "NULL" if text is None else "'" + text.replace("'", "''") + "'"


async def rewrite(
    backend: Backend,
    workflow_id: str,
    start: int,
    link: Callable[[StoredAuditEvent], str],
    *,
    key_id: str | bool | None = True,
    actor: str = "mallory",
) -> None:
    """What an intruder does: from `start` on, puts `actor` in as the approver, and makes every link
    again with `link`, each row pointing to the new link before it. `key_id`: True keeps each row's,
    None makes them legacy rows."""
    rows = await backend.store.for_workflow(workflow_id)
    prev = rows[start - 1].hash if start else ""
    for row in rows[start:]:
        changed = row.model_copy(
            update={"prev_hash": prev, "actor": actor if row.seq == start else row.actor}
        )
        if key_id is not True:
            changed.key_id = key_id  # type: ignore[assignment]
        changed.hash = prev = link(changed)
        await backend.sql(
            f"UPDATE audit_events SET actor = {quoted(changed.actor)}, prev_hash = '{changed.prev_hash}', "
            f"key_id = {quoted(changed.key_id)}, hash = '{changed.hash}' "
            f"WHERE workflow_id = '{workflow_id}' AND seq = {row.seq}"
        )


def sha256(event: StoredAuditEvent) -> str:
    """The link today's code made (and an intruder can make): SHA-256 of the canonical JSON."""
    return hashlib.sha256(link_bytes(event)).hexdigest()


def under(keyring: AuditKeyring) -> Callable[[StoredAuditEvent], str]:
    def link(event: StoredAuditEvent) -> str:
        return keyring.mac(event.key_id or keyring.active_key_id, link_bytes(event))

    return link


# --- Links: edited and recomputed rows -----------------------------------------------------------


@pytest.mark.parametrize(
    "recompute",
    [
        pytest.param(sha256, id="plain SHA-256"),
        # The right key id, a key of the intruder's own making.
        pytest.param(
            under(AuditKeyring({KEYS.active_key_id: os.urandom(32)}, KEYS.active_key_id)), id="guessed key"
        ),
    ],
)
async def test_an_edited_row_recomputed_without_the_key_is_broken(
    backend: Backend, recompute: Callable[[StoredAuditEvent], str]
) -> None:
    """The finding: approvers replaced, hashes recomputed, and verify passed. Now every link is an HMAC
    under a key the database does not hold: the first recomputed row is named."""
    await backend.store.append(batch(0, EVENTS, workflow_id="wf-1"))
    await backend.store.append(batch(0, EVENTS, workflow_id="wf-2"))
    await rewrite(backend, "wf-1", 2, recompute)
    # Every prev_hash points at the new link before it: the chain's own structure is consistent.
    rows = await backend.store.for_workflow("wf-1")
    assert rows[2].actor == "mallory" and all(r.prev_hash == p.hash for p, r in itertools.pairwise(rows))
    report = await backend.verify()
    assert breaks(report) == [("wf-1", 2)]
    assert "recomputed without the key" in report.broken[0].reason
    assert not report.ok and report.problems == []


@pytest.mark.parametrize("start", [0, 3], ids=["whole chain", "its tail"])
async def test_a_keyed_chain_recomputed_as_legacy_is_broken(backend: Backend, start: int) -> None:
    """The downgrade: rows turned into legacy ones (no key_id, today's SHA-256 link), which the key does
    not protect. A legacy link is only valid within a chain the legacy seal holds, and never after a
    keyed one."""
    await backend.store.append(batch(0, EVENTS))
    await rewrite(backend, "wf-1", start, sha256, key_id=None)
    rows = await backend.store.for_workflow("wf-1")
    assert [r.key_id for r in rows[start:]] == [None] * (6 - start)
    report = await backend.verify()
    assert breaks(report) == [("wf-1", start)]
    reason = report.broken[0].reason
    assert ("seal does not hold" if start == 0 else "after keyed ones") in reason, reason
    assert report.legacy_chains == 1


async def test_a_renamed_key_or_a_garbled_link_is_broken(backend: Backend) -> None:
    # A link is bound to its key id: renaming the key a row names is a change like any other.
    await backend.store.append(batch(0, EVENTS[:3]))
    await backend.sql("UPDATE audit_events SET key_id = 'other' WHERE seq = 1")
    report = await backend.verify(AuditKeyring({**KEYS.keys, "other": os.urandom(32)}, KEYS.active_key_id))
    assert breaks(report) == [("wf-1", 1)]
    # Whatever text a link holds is reported, not a crash (compare_digest refuses non-ASCII text).
    await backend.sql("UPDATE audit_events SET hash = 'é' WHERE seq = 0")
    assert breaks(await backend.verify()) == [("wf-1", 0)]


# --- Anchors: truncation, deletion, rewriting with the key, forged anchors ------------------------


async def anchored(store: AuditStore, keyring: AuditKeyring = KEYS) -> tuple[str, Anchors]:
    anchor, report = await store.anchor()
    assert report.ok
    line = anchor_line(anchor)
    return line, Anchors.read([line], keyring, "anchors.jsonl")


async def test_deleting_a_chains_last_rows_is_found_only_with_an_anchor(backend: Backend) -> None:
    await backend.store.append(batch(0, EVENTS))
    line, anchors = await anchored(backend.store)
    assert json.loads(line)["chains"]["wf-1"]["seq"] == 5
    await backend.sql("DELETE FROM audit_events WHERE workflow_id = 'wf-1' AND seq >= 4")
    # What is left is a valid shorter chain: links alone cannot tell, and never could.
    alone = await backend.verify()
    assert alone.ok and alone.events == 4
    report = await backend.verify(anchors=anchors)
    assert breaks(report) == [("wf-1", 4)] and report.anchors == 1
    assert report.broken[0].reason.startswith("chain truncated: the anchor of ")
    assert "up to seq 5, the log ends at seq 3" in report.broken[0].reason


async def test_deleting_a_whole_chain_is_found_only_with_an_anchor(backend: Backend) -> None:
    await backend.store.append(batch(0, EVENTS, workflow_id="wf-1"))
    await backend.store.append(batch(0, EVENTS[:2], workflow_id="wf-2"))
    _, anchors = await anchored(backend.store)
    await backend.sql("DELETE FROM audit_events WHERE workflow_id = 'wf-2'")
    alone = await backend.verify()
    assert alone.ok and alone.chains == 1
    report = await backend.verify(anchors=anchors)
    assert breaks(report) == [("wf-2", 0)]
    assert report.broken[0].reason.startswith("chain deleted: the anchor of ")
    assert report.broken[0].reason.endswith("up to seq 1, but none of its events is stored")
    # One chain at a time too.
    async with await backend.open() as store:
        assert breaks(await store.verify("wf-2", anchors)) == [("wf-2", 0)]
        assert (await store.verify("wf-1", anchors)).ok


async def test_rows_rewritten_even_with_the_key_differ_from_the_anchor(backend: Backend) -> None:
    """Someone who holds the audit key can make valid links; what they cannot change is an anchor
    already kept elsewhere. Events after it are only as safe as the key."""
    await backend.store.append(batch(0, EVENTS))
    _, anchors = await anchored(backend.store)
    await rewrite(backend, "wf-1", 1, lambda event: chain_link(event, KEYS))
    assert (await backend.verify()).ok
    report = await backend.verify(anchors=anchors)
    assert breaks(report) == [("wf-1", 5)]
    assert "event 5 is not the one the anchor of " in report.broken[0].reason


async def test_anchors_hold_each_chain_as_it_was(backend: Backend) -> None:
    # A chain grows after an anchor: the anchored event is still there, so nothing is wrong.
    await backend.store.append(batch(0, EVENTS[:3]))
    first, _ = await anchored(backend.store)
    await backend.store.append(batch(0, EVENTS))
    second, _ = await anchored(backend.store)
    report = await backend.verify(anchors=Anchors.read([first, "", second], KEYS, "f"))
    assert report.ok and report.anchors == 2
    # A broken chain is left out of the next anchor: an anchor vouches only for what verifies.
    await backend.sql("UPDATE audit_events SET detail = 'x' WHERE seq = 4")
    await backend.store.append(batch(0, EVENTS[:1], workflow_id="wf-2"))
    anchor, report = await backend.store.anchor()
    assert breaks(report) == [("wf-1", 4)] and list(anchor.chains) == ["wf-2"]


def forged(anchor: AuditAnchor, key: Ed25519PrivateKey) -> str:
    """An anchor signed with a key pair of one's own, naming its public key."""
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    anchor = anchor.model_copy(update={"public_key": base64.b64encode(public).decode()})
    anchor.signature = base64.b64encode(key.sign(anchor_bytes(anchor))).decode()
    return anchor_line(anchor)


def signed_elsewhere(anchor: AuditAnchor) -> str:
    """A true anchor, of another deployment's audit key."""
    other = ring("elsewhere")
    anchor = anchor.model_copy(
        update={"key_id": "elsewhere", "public_key": other.anchor_public_key("elsewhere")}
    )
    anchor.signature = other.sign_anchor("elsewhere", anchor_bytes(anchor))
    return anchor_line(anchor)


async def test_a_forged_or_edited_anchor_is_reported(backend: Backend) -> None:
    await backend.store.append(batch(0, EVENTS))
    good, _ = await anchored(backend.store)
    anchor = AuditAnchor.model_validate_json(good)
    # Made to agree with a truncated log: seq and link of its new last row.
    edited = json.loads(good)
    edited["chains"]["wf-1"] = {"seq": 3, "link": (await backend.store.for_workflow("wf-1"))[3].hash}
    float_seq = good.replace('"seq":5', '"seq":5.0')  # the same number to a lax reader, not to the signature
    lines = [
        good,
        json.dumps(edited),
        forged(anchor, Ed25519PrivateKey.generate()),
        signed_elsewhere(anchor),
        anchor_line(anchor.model_copy(update={"signature": ""})),
        float_seq,
        good.replace('"public_key":"', '"public_key":"é'),
        '{"format": "countersign-audit-anchor/1"}',
        "not json",
    ]
    anchors = Anchors.read(lines, KEYS, "anchors.jsonl")
    assert len(anchors.valid) == 1
    reasons = {p.where: p.reason for p in anchors.problems}
    assert list(reasons) == [f"anchor at line {n} of anchors.jsonl" for n in range(2, 10)]
    said = list(reasons.values())
    assert "signature does not verify" in said[0]
    assert "public key is not audit key 'test-audit'" in said[1]
    assert "'elsewhere', which the keyring lacks" in said[2]
    assert "signature does not verify" in said[3]
    assert said[4] == "not an anchor: chains.wf-1.seq: Input should be a valid integer"
    assert "public key is not audit key 'test-audit'" in said[5]
    assert said[6] == "not an anchor: at: Field required" and said[7].startswith("not JSON: Expecting value")
    report = await backend.verify(anchors=anchors)
    assert report.broken == [] and not report.ok
    assert report.anchors == 9 and len(report.problems) == 8


# --- Keys: rotation, and what needs them ------------------------------------------------------------


async def test_keys_rotate(backend: Backend) -> None:
    one, both = ring("k1"), ring("k1", "k2")
    async with await backend.open(one) as store:
        await store.append(batch(0, EVENTS[:3]))
        line_k1, _ = await anchored(store, one)
    async with await backend.open(both) as store:
        # The resent events were linked under k1: compared under k1, not refused as different.
        assert (await store.append(batch(0, EVENTS))).stored == 3
        assert [e.key_id for e in await store.for_workflow("wf-1")] == ["k1"] * 3 + ["k2"] * 3
        assert (await store.verify()).ok
    # An anchor signed under k1 still verifies with a ring that holds k1.
    assert (await backend.verify(both, Anchors.read([line_k1], both))).ok
    # Old keys are kept for verifying: without k1, its links cannot be checked.
    without_k1 = await backend.verify(ring("k2"))
    assert breaks(without_k1) == [("wf-1", 0)]
    assert "audit key 'k1', which the keyring lacks" in without_k1.broken[0].reason
    # The seal was made under k1 too.
    assert [p.where for p in without_k1.problems] == ["legacy seal"]
    assert breaks(await backend.verify(one)) == [("wf-1", 3)]
    # Another key under the name k1 is not k1.
    impostor = AuditKeyring({"k1": os.urandom(32), "k2": both.keys["k2"]}, "k2")
    assert breaks(await backend.verify(impostor)) == [("wf-1", 0)]


async def test_appending_verifying_and_anchoring_need_the_keys(backend: Backend) -> None:
    await backend.store.append(batch(0, EVENTS[:2]))
    async with await backend.open(keyring=None) as reader:
        # The gateway reads trails without the keys.
        assert [e.seq for e in await reader.for_workflow("wf-1")] == [0, 1]
        assert len(await reader.search("acme")) == 2
        for attempt in (reader.append(batch(2, EVENTS[2:3])), reader.verify(), reader.anchor()):
            with pytest.raises(MissingKey, match="needs its keys: this store was opened without them"):
                await attempt
        # An AuditLog given the keys writes refusals through a store opened without them.
        log = AuditLog(reader, KEYS)
        ann = Principal(id="p-ann", name="Ann", roles=[])
        await log.refused(ann, "wf-1", "decision", "NotWaiting", "too late", WorkflowState.REJECTED)
        with pytest.raises(MissingKey):
            await AuditLog(reader).refused(ann, "wf-1", "decision", "x", "y", WorkflowState.REJECTED)
    assert [e.event for e in await backend.store.for_workflow("wf-1#refused")] == ["decision_refused"]
    assert (await backend.verify()).ok


# --- Logs written before the keys -------------------------------------------------------------------

# Today's table, as today's code creates it (the same statements on both backends).
TODAYS_TABLE = [
    """CREATE TABLE audit_events (workflow_id TEXT NOT NULL, seq INTEGER NOT NULL, tenant TEXT NOT NULL,
    event TEXT NOT NULL, actor TEXT NOT NULL, actor_kind TEXT NOT NULL, role TEXT, proposal_version INTEGER,
    proposal_hash TEXT, state TEXT NOT NULL, detail TEXT NOT NULL, data TEXT, at TEXT NOT NULL,
    at_utc TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (workflow_id, seq))""",
    "CREATE INDEX audit_events_by_tenant_time ON audit_events (tenant, at_utc)",
    "CREATE INDEX audit_events_by_tenant_actor ON audit_events (tenant, actor)",
]
TODAYS_FIELDS = [
    *("workflow_id", "tenant", "seq", "event", "actor", "actor_kind", "role", "proposal_version"),
    *("proposal_hash", "state", "detail", "data", "at", "prev_hash"),
]


def todays_hash(row: dict[str, object]) -> str:
    """Today's chain_hash, written out: SHA-256 of the canonical JSON of every field but `hash`."""
    payload = {name: row[name] for name in TODAYS_FIELDS}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def test_todays_hash_is_what_todays_code_computes() -> None:
    # Computed by chain_hash at commit 45846d3 (before keys) for this very event.
    row = {
        "workflow_id": "wf-old", "tenant": "acme", "seq": 0, "event": "decision_approved",
        "actor": "Morgan Manager", "actor_kind": "HUMAN", "role": "MANAGER", "proposal_version": 1,
        "proposal_hash": "abc123", "state": "WAITING_FOR_APPROVAL", "detail": "détail",
        "data": {"principal_id": "p-mgr", "n": 1, "x": 0.5, "none": None},
        "at": "2026-03-01T09:00:00+00:00", "prev_hash": "",
    }  # fmt: skip
    assert todays_hash(row) == "66c6fbadbd3c0324b1991dd968f73c4364b3202c73a8d7fd6cae36b95f6ae5f1"
    # And legacy rows verify by the same bytes.
    assert sha256(StoredAuditEvent.model_validate({**row, "hash": ""})) == todays_hash(row)


async def todays_log(location: Location, chains: dict[str, int]) -> None:
    """A log as today's code writes it: its table, and rows inserted as it inserts them."""
    for statement in TODAYS_TABLE:
        await location.sql(statement)
    for workflow_id, length in chains.items():
        prev = ""
        for seq, event in enumerate(EVENTS[:length]):
            row = {**event.model_dump(mode="json"), "workflow_id": workflow_id, "tenant": "acme", "seq": seq}
            row["prev_hash"], row["hash"] = prev, todays_hash({**row, "prev_hash": prev})
            prev = row["hash"]
            data = (
                None if event.data is None else json.dumps(event.data, sort_keys=True, separators=(",", ":"))
            )
            values = [quoted(str(row[name])) if row[name] is not None else "NULL" for name in TODAYS_FIELDS]
            values[TODAYS_FIELDS.index("seq")] = str(seq)
            values[TODAYS_FIELDS.index("proposal_version")] = str(event.proposal_version)
            values[TODAYS_FIELDS.index("data")] = quoted(data)
            at_utc = quoted(event.at.replace("+00:00", ".000000Z"))
            await location.sql(
                f"INSERT INTO audit_events ({', '.join(TODAYS_FIELDS)}, at_utc, hash) "
                f"VALUES ({', '.join(values)}, {at_utc}, '{row['hash']}')"
            )


async def test_a_log_written_before_the_keys_opens_and_keeps_verifying(location: Location) -> None:
    await todays_log(location, {"wf-old": 3, "wf-short": 2})
    # Reading first, without the keys (the gateway): the table gets its key_id column.
    async with await AuditStore.open(location.url, schema=location.schema) as reader:
        assert [e.key_id for e in await reader.for_workflow("wf-old")] == [None] * 3
    async with await AuditStore.open(location.url, schema=location.schema, keyring=KEYS) as store:
        report = await store.verify()
        assert (report.chains, report.events, report.legacy_chains) == (2, 5, 2) and report.ok, report
        # A workflow that was running goes on: its resent events match, new ones are keyed.
        assert (await store.append(batch(0, EVENTS, workflow_id="wf-old"))).stored == 3
        assert [e.key_id for e in await store.for_workflow("wf-old")] == [None] * 3 + ["test-audit"] * 3
        assert (await store.append(batch(0, EVENTS[:1], workflow_id="wf-new"))).stored == 1
        report = await store.verify()
        assert (report.chains, report.legacy_chains) == (3, 2) and report.ok, report
        anchor, _ = await store.anchor()
        assert set(anchor.chains) == {"wf-old", "wf-short", "wf-new"}
    backend = Backend(location, store)
    # Opened again (every worker start): nothing sealed twice, still intact.
    assert (await backend.verify()).ok


async def test_the_legacy_seal_holds_legacy_chains_as_they_were(location: Location) -> None:
    """Legacy links have no key; the seal, made under the key when the log first met its keys, records
    each legacy chain's last link: legacy chains cannot grow, change, appear or vanish unseen after."""
    await todays_log(location, {"wf-old": 3, "wf-short": 2, "wf-gone": 2})
    async with await AuditStore.open(location.url, schema=location.schema, keyring=KEYS) as store:
        await store.append(batch(0, EVENTS[:4], workflow_id="wf-old"))
        backend = Backend(location, store)
        assert (await backend.verify()).ok
        # Recomputed with today's SHA-256 from seq 0: a valid legacy chain, but not the sealed one.
        await rewrite(backend, "wf-short", 0, sha256, key_id=None)
        # A keyed row after the sealed legacy ones, passed off as legacy.
        await rewrite(backend, "wf-old", 3, sha256, key_id=None)
        await backend.sql("DELETE FROM audit_events WHERE workflow_id = 'wf-gone'")
        # A legacy chain that was never there.
        await backend.sql(
            "INSERT INTO audit_events SELECT 'wf-made', seq, tenant, event, actor, actor_kind, role, "
            "proposal_version, proposal_hash, state, detail, data, at, at_utc, prev_hash, hash, key_id "
            "FROM audit_events WHERE workflow_id = 'wf-short'"
        )
    report = await backend.verify()
    assert breaks(report) == [("wf-made", 0), ("wf-old", 3), ("wf-short", 1), ("wf-gone", 0)]
    reasons = [b.reason for b in report.broken]
    assert "seal does not hold" in reasons[0]
    assert "past seq 2, where the legacy seal ends them" in reasons[1]
    assert "not the legacy link the legacy seal holds" in reasons[2]
    assert (
        reasons[3] == "chain deleted: the legacy seal holds it up to seq 1, but none of its events is stored"
    )


async def test_removing_the_seal_is_reported_or_seen_by_anchors(backend: Backend) -> None:
    """Without its seal, a keyed chain recomputed as legacy would pass for an old one. The seal is only
    made while the log holds no keyed link, so removed later it stays missing, and verify says so."""
    await backend.store.append(batch(0, EVENTS, workflow_id="wf-1"))
    _, anchors = await anchored(backend.store)
    await backend.store.append(batch(0, EVENTS, workflow_id="wf-2"))
    await backend.sql("DELETE FROM audit_legacy_seal")
    await rewrite(backend, "wf-2", 0, sha256, key_id=None)
    report = await backend.verify()
    assert breaks(report) == [("wf-2", 0)]
    assert [(p.where, p.reason.split(",")[0]) for p in report.problems] == [("legacy seal", "missing")]
    # Every keyed chain recomputed as legacy: the log now looks like one from before the keys, which
    # is sealed on open as such. Links cannot tell, and never could (the whole log rewritten); the
    # anchor, made before, holds the seal's id and wf-1's link, so it can.
    await rewrite(backend, "wf-1", 0, sha256, key_id=None)
    resealed = await backend.verify()
    assert resealed.ok and resealed.legacy_chains == 2
    report = await backend.verify(anchors=anchors)
    assert breaks(report) == [("wf-1", 5)]
    assert [p.where for p in report.problems] == ["legacy seal"]
    assert "removed and made again" in report.problems[0].reason


async def test_a_changed_seal_record_is_reported(location: Location) -> None:
    await todays_log(location, {"wf-old": 2, "wf-other": 2})
    async with await AuditStore.open(location.url, schema=location.schema, keyring=KEYS) as store:
        backend = Backend(location, store)
        assert (await backend.verify()).ok
    await location.sql("UPDATE audit_legacy_seal SET seq = 0 WHERE workflow_id = 'wf-old'")
    await location.sql("DELETE FROM audit_legacy_seal WHERE workflow_id = 'wf-other'")
    report = await backend.verify()
    assert [p.reason for p in report.problems] == [
        "the record of chain wf-old does not verify",
        "it holds 2 legacy chains, but 1 records of them are stored: some were removed or added",
    ]
    # Neither chain is vouched for by the seal any more: their legacy links are not trusted.
    assert breaks(report) == [("wf-old", 0), ("wf-other", 0)]


async def test_processes_upgrading_a_log_together_add_the_column_and_seal_it_once(location: Location) -> None:
    # A worker and a gateway started together on a log from before the keys.
    await todays_log(location, {"wf-old": 3})
    stores = await asyncio.gather(
        *(AuditStore.open(location.url, schema=location.schema, keyring=KEYS) for _ in range(4))
    )
    try:
        acks = await asyncio.gather(
            *(store.append(batch(0, EVENTS, workflow_id="wf-old")) for store in stores)
        )
        assert sorted(ack.stored for ack in acks) == [0, 0, 0, 3]
        reports = await asyncio.gather(*(store.verify() for store in stores))
        assert {(r.ok, r.legacy_chains, r.legacy_seal) for r in reports} == {
            (True, 1, reports[0].legacy_seal)
        }
    finally:
        for store in stores:
            await store.close()

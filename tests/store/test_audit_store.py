"""The SQL audit log, on SQLite and on PostgreSQL: append-only, idempotent, chained under the audit key,
searchable. (Tampering, anchors, key rotation and legacy logs: tests/store/test_audit_tamper.py.)"""

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from countersign.activities.audit import AuditActivities
from countersign.config.settings import Settings
from countersign.models.audit import AuditBatch, AuditEvent, StoredAuditEvent
from countersign.models.enums import ActorKind, Role, WorkflowState
from countersign.store.audit_links import chain_link
from countersign.store.audit_store import AuditConflict, AuditGap, AuditStore
from countersign.store.sql import masked_url
from tests.conftest import Location
from tests.helpers import TEST_TRUST

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _default_audit_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own COUNTERSIGN_AUDIT_DATABASE_URL must not redirect these tests (or subprocesses)."""
    monkeypatch.delenv("COUNTERSIGN_AUDIT_DATABASE_URL", raising=False)


@dataclass
class Backend:
    store: AuditStore
    sql: Callable[[str], Awaitable[None]]


@pytest.fixture
async def backend(location: Location) -> AsyncIterator[Backend]:
    async with await AuditStore.open(location.url, schema=location.schema, keyring=TEST_TRUST.audit) as store:
        yield Backend(store, location.sql)


def event(n: int, *, actor: str = "planner", at: datetime | None = None, detail: str = "") -> AuditEvent:
    human = actor != "planner"
    return AuditEvent(
        event=f"step-{n}",
        actor=actor,
        actor_kind=ActorKind.HUMAN if human else ActorKind.AI,
        role=Role.MANAGER if human else None,
        at=(at or T0 + timedelta(minutes=n)).isoformat(),
        state=WorkflowState.WAITING_FOR_APPROVAL,
        proposal_version=1,
        proposal_hash="abc123",
        detail=detail or f"détail {n}",  # not ASCII on purpose: the hash is over UTF-8
        data={"tokens": n, "cost": 0.25 * n, "model": "m", "none": None} if n % 2 else None,
    )


EVENTS = [event(n) for n in range(6)]


def batch(
    first: int, events: list[AuditEvent], workflow_id: str = "wf-1", tenant: str = "acme"
) -> AuditBatch:
    return AuditBatch(workflow_id=workflow_id, tenant=tenant, first_seq=first, events=events)


def as_event(stored: StoredAuditEvent) -> AuditEvent:
    return AuditEvent.model_validate(stored.model_dump(include=set(AuditEvent.model_fields)))


async def test_append_reads_back_as_a_valid_chain(backend: Backend) -> None:
    store = backend.store
    ack = await store.append(batch(0, EVENTS[:3]))
    stored = await store.for_workflow("wf-1")
    assert [as_event(s) for s in stored] == EVENTS[:3]
    assert [s.seq for s in stored] == [0, 1, 2]
    assert {s.tenant for s in stored} == {"acme"}
    assert [s.prev_hash for s in stored] == ["", stored[0].hash, stored[1].hash]
    assert all(chain_link(s, TEST_TRUST.audit) == s.hash for s in stored)
    assert {s.key_id for s in stored} == {TEST_TRUST.audit.active_key_id}
    assert (ack.stored, ack.last_seq, ack.last_hash) == (3, 2, stored[2].hash)
    assert await store.for_workflow("wf-other") == []
    report = await store.verify()
    assert (report.chains, report.events, report.broken) == (1, 3, [])


async def test_resending_a_batch_stores_nothing(backend: Backend) -> None:
    first = await backend.store.append(batch(0, EVENTS[:3]))
    again = await backend.store.append(batch(0, EVENTS[:3]))
    assert again.stored == 0 and (again.last_seq, again.last_hash) == (first.last_seq, first.last_hash)
    assert len(await backend.store.for_workflow("wf-1")) == 3


async def test_an_overlapping_batch_stores_only_its_new_events(backend: Backend) -> None:
    await backend.store.append(batch(0, EVENTS[:3]))
    ack = await backend.store.append(batch(1, EVENTS[1:6]))
    assert (ack.stored, ack.last_seq) == (3, 5)
    stored = await backend.store.for_workflow("wf-1")
    assert [as_event(s) for s in stored] == EVENTS
    assert ack.last_hash == stored[-1].hash
    # A batch wholly behind the tail reports the tail.
    behind = await backend.store.append(batch(0, EVENTS[:2]))
    assert (behind.stored, behind.last_seq, behind.last_hash) == (0, 5, ack.last_hash)
    assert (await backend.store.verify()).broken == []


async def test_a_stored_event_is_never_rewritten(backend: Backend) -> None:
    await backend.store.append(batch(0, EVENTS[:3]))
    before = await backend.store.for_workflow("wf-1")
    changed = EVENTS[1].model_copy(update={"detail": "something else"})
    with pytest.raises(AuditConflict, match="audit event 1 of workflow wf-1 differs") as caught:
        await backend.store.append(batch(1, [changed, *EVENTS[2:5]]))
    assert (caught.value.workflow_id, caught.value.seq) == ("wf-1", 1)
    # Nothing of the refused batch was written, not even its new events.
    assert await backend.store.for_workflow("wf-1") == before
    # The same event under another tenant is another event too.
    with pytest.raises(AuditConflict):
        await backend.store.append(batch(0, EVENTS[:1], tenant="globex"))


async def test_a_gap_is_refused_with_the_next_expected_seq(backend: Backend) -> None:
    with pytest.raises(AuditGap, match="send from 0") as empty:
        await backend.store.append(batch(2, EVENTS[2:4]))
    assert empty.value.next_seq == 0
    await backend.store.append(batch(0, EVENTS[:2]))
    with pytest.raises(AuditGap) as caught:
        await backend.store.append(batch(3, EVENTS[3:5]))
    assert (caught.value.first_seq, caught.value.next_seq) == (3, 2)
    assert len(await backend.store.for_workflow("wf-1")) == 2
    # An empty batch at the tail is a harmless no-op.
    assert (await backend.store.append(batch(2, []))).model_dump() == {
        "stored": 0,
        "last_seq": 1,
        "last_hash": (await backend.store.for_workflow("wf-1"))[1].hash,
    }


async def test_verify_names_a_changed_row(backend: Backend) -> None:
    await backend.store.append(batch(0, EVENTS))
    await backend.store.append(batch(0, EVENTS, workflow_id="wf-2"))
    await backend.sql(
        "UPDATE audit_events SET detail = 'approved by nobody' WHERE workflow_id = 'wf-1' AND seq = 3"
    )
    report = await backend.store.verify()
    assert (report.chains, report.events) == (2, 12)
    assert [(b.workflow_id, b.seq) for b in report.broken] == [("wf-1", 3)]
    assert "changed after it was written" in report.broken[0].reason
    assert (await backend.store.verify("wf-2")).broken == []
    assert [(b.workflow_id, b.seq) for b in (await backend.store.verify("wf-1")).broken] == [("wf-1", 3)]


async def test_rehashing_a_changed_row_breaks_the_next_link(backend: Backend) -> None:
    await backend.store.append(batch(0, EVENTS))
    # Even with the key (which an intruder does not have): the next link covers this one.
    forged = (await backend.store.for_workflow("wf-1"))[2].model_copy(update={"detail": "forged"})
    forged_hash = chain_link(forged, TEST_TRUST.audit)
    await backend.sql(
        f"UPDATE audit_events SET detail = 'forged', hash = '{forged_hash}' "
        "WHERE workflow_id = 'wf-1' AND seq = 2"
    )
    broken = (await backend.store.verify()).broken
    assert [(b.seq, b.reason) for b in broken] == [(3, "prev_hash is not the previous event's hash")]


async def test_verify_names_a_deleted_row(backend: Backend) -> None:
    await backend.store.append(batch(0, EVENTS))
    await backend.sql("DELETE FROM audit_events WHERE workflow_id = 'wf-1' AND seq = 2")
    report = await backend.store.verify()
    assert [(b.workflow_id, b.seq) for b in report.broken] == [("wf-1", 2)]
    assert "event 2 is missing" in report.broken[0].reason
    # Resending the workflow's events puts the very same row back, and the chain verifies again.
    assert (await backend.store.append(batch(0, EVENTS))).stored == 1
    assert (await backend.store.verify()).broken == []


async def test_search_by_actor_and_time_within_a_tenant(backend: Backend) -> None:
    store = backend.store
    # Written in another offset: still ordered and filtered by the instant it names.
    early = event(0, actor="ann", at=(T0 - timedelta(hours=1)).astimezone(timezone(timedelta(hours=2))))
    await store.append(batch(0, [early, event(1), event(2, actor="bob"), event(3, actor="ann")]))
    await store.append(batch(0, [event(0, actor="ann", at=T0 + timedelta(seconds=30))], workflow_id="wf-2"))
    await store.append(
        batch(0, [event(n, actor="ann") for n in range(3)], workflow_id="wf-3", tenant="globex")
    )

    def keys(found: list[StoredAuditEvent]) -> list[tuple[str, int]]:
        return [(s.workflow_id, s.seq) for s in found]

    assert keys(await store.search("acme")) == [
        ("wf-1", 0),
        ("wf-2", 0),
        ("wf-1", 1),
        ("wf-1", 2),
        ("wf-1", 3),
    ]
    assert keys(await store.search("acme", actor="ann")) == [("wf-1", 0), ("wf-2", 0), ("wf-1", 3)]
    assert keys(await store.search("acme", since=T0)) == [("wf-2", 0), ("wf-1", 1), ("wf-1", 2), ("wf-1", 3)]
    # `until` is exclusive; a naive datetime is UTC.
    naive = (T0 + timedelta(minutes=2)).replace(tzinfo=None)
    assert keys(await store.search("acme", since=T0, until=naive)) == [("wf-2", 0), ("wf-1", 1)]
    assert keys(await store.search("acme", actor="ann", since=T0, until=naive)) == [("wf-2", 0)]
    assert keys(await store.search("acme", limit=2)) == [("wf-1", 0), ("wf-2", 0)]
    assert keys(await store.search("globex", actor="ann")) == [("wf-3", 0), ("wf-3", 1), ("wf-3", 2)]
    assert await store.search("globex", actor="bob") == []
    assert await store.search("initech") == []


async def test_export_round_trips_as_jsonl_and_csv(backend: Backend) -> None:
    await backend.store.append(batch(0, EVENTS))
    await backend.store.append(batch(0, EVENTS[:2], workflow_id="wf-2", tenant="globex"))
    everything = await backend.store.for_workflow("wf-1") + await backend.store.for_workflow("wf-2")

    jsonl = io.StringIO()
    assert await backend.store.export("jsonl", jsonl) == 8
    assert [
        StoredAuditEvent.model_validate_json(line) for line in jsonl.getvalue().splitlines()
    ] == everything

    table = io.StringIO(newline="")
    assert await backend.store.export("csv", table) == 8
    rows = list(csv.DictReader(io.StringIO(table.getvalue(), newline="")))
    assert list(rows[0]) == list(StoredAuditEvent.model_fields)
    # Each row names the key its link was made with: an auditor needs it to recheck the link.
    assert {row["key_id"] for row in rows} == {TEST_TRUST.audit.active_key_id}
    assert {json.loads(line)["key_id"] for line in jsonl.getvalue().splitlines()} == {"test-audit"}

    def parse(row: dict[str, str]) -> StoredAuditEvent:
        optional = ("role", "proposal_version", "proposal_hash", "key_id")
        values = {k: (None if k in optional and v == "" else v) for k, v in row.items()}
        values["data"] = json.loads(row["data"]) if row["data"] else None
        return StoredAuditEvent.model_validate(values)

    parsed = [parse(row) for row in rows]
    assert parsed == everything
    # An auditor holding the keys can re-verify an export offline.
    assert all(chain_link(s, TEST_TRUST.audit) == s.hash for s in parsed)

    only = io.StringIO()
    assert await backend.store.export("jsonl", only, tenant="globex") == 2
    assert {json.loads(line)["tenant"] for line in only.getvalue().splitlines()} == {"globex"}


async def test_concurrent_appends_store_each_event_once(backend: Backend) -> None:
    # The same batch many times, and growing prefixes of it, all at once: what retried activities and
    # overlapping workers would do.
    batches = [batch(0, EVENTS)] * 6 + [batch(0, EVENTS[:n]) for n in range(1, 6)]
    acks = await asyncio.gather(*(backend.store.append(b) for b in batches))
    assert sum(ack.stored for ack in acks) == len(EVENTS)
    stored = await backend.store.for_workflow("wf-1")
    assert [as_event(s) for s in stored] == EVENTS
    assert {ack.last_hash for ack in acks if ack.last_seq == 5} == {stored[-1].hash}
    assert (await backend.store.verify()).broken == []


async def test_concurrent_opens_create_the_table_once(location: Location) -> None:
    # The worker and the gateway may start together against one new database.
    stores = await asyncio.gather(
        *(AuditStore.open(location.url, schema=location.schema, keyring=TEST_TRUST.audit) for _ in range(4))
    )
    try:
        acks = await asyncio.gather(*(store.append(batch(0, EVENTS)) for store in stores))
        assert sorted(ack.stored for ack in acks) == [0, 0, 0, 6]
    finally:
        for store in stores:
            await store.close()


def test_urls_settings_and_masking() -> None:
    assert Settings(data_dir=Path("/srv/cs")).audit_url == "sqlite:////srv/cs/audit.db"
    assert Settings(data_dir=Path(".cs")).audit_url == "sqlite:///.cs/audit.db"
    url = "postgresql://audit:s3cret@db.internal:5432/countersign"
    assert Settings(audit_database_url=url).audit_url == url
    assert masked_url(url) == "postgresql://audit:***@db.internal:5432/countersign"
    with pytest.raises(ValueError, match="sqlite:/// or postgresql://") as caught:
        Settings(audit_database_url="mysql://audit:s3cret@db/x")
    assert "s3cret" not in str(caught.value.errors()[0]["msg"])


async def test_open_refuses_unknown_databases(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported scheme 'mysql'"):
        await AuditStore.open("mysql://db/x")
    with pytest.raises(ValueError, match="PostgreSQL only"):
        await AuditStore.open(f"sqlite:///{tmp_path / 'a.db'}", schema="audit")


async def test_activity_records_and_refuses_rewrites(tmp_path: Path) -> None:
    activities = AuditActivities(f"sqlite:///{tmp_path / 'nested' / 'audit.db'}", TEST_TRUST.audit)
    env = ActivityEnvironment()
    try:
        ack = await env.run(activities.record, batch(0, EVENTS[:2]))
        assert (ack.stored, ack.last_seq) == (2, 1)
        assert (await env.run(activities.record, batch(0, EVENTS[:3]))).stored == 1
        with pytest.raises(ApplicationError) as conflict:
            await env.run(activities.record, batch(0, [EVENTS[1]]))
        assert (conflict.value.type, conflict.value.non_retryable) == ("AuditConflict", True)
        assert "audit event 0 of workflow wf-1" in str(conflict.value)
        with pytest.raises(ApplicationError) as gap:
            await env.run(activities.record, batch(5, EVENTS[5:]))
        assert (gap.value.type, gap.value.non_retryable, gap.value.details) == ("AuditGap", True, (3,))
    finally:
        await activities.close()

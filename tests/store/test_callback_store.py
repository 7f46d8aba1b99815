"""The callback store on SQLite and PostgreSQL: each tenant's webhook secrets (created on first use,
rotated with a grace during which both sign) and the delivery log."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from countersign.models.callbacks import CallbackDelivery, CallbackEvent, CallbackEventType, DeliveryStatus
from countersign.store.callbacks import CallbackStore
from tests.conftest import Location


@pytest.fixture
async def store(location: Location) -> AsyncIterator[CallbackStore]:
    async with await CallbackStore.open(location.url, schema=location.schema) as opened:
        yield opened


def delivery(tenant: str = "default", workflow_id: str = "req-default-0123") -> CallbackDelivery:
    return CallbackDelivery(
        tenant=tenant,
        workflow_id=workflow_id,
        requester_id="p-requester",
        url="https://hooks.example.com/countersign",
        event=CallbackEvent(
            id=f"{workflow_id}:e1",
            type=CallbackEventType.WAITING,
            timestamp=datetime.now(UTC),
            data={"workflow_id": workflow_id},
        ),
    )


async def test_a_secret_is_made_once_per_tenant_even_when_asked_at_once(store: CallbackStore) -> None:
    answers = await asyncio.gather(*(store.secret("default") for _ in range(5)))
    assert {a.secret for a in answers} == {answers[0].secret}
    assert answers[0].secret.startswith("whsec_")
    assert answers[0].previous_valid_until is None
    assert (await store.secret("globex")).secret != answers[0].secret
    assert await store.signing_secrets("default") == [answers[0].secret]


async def test_a_rotated_secret_signs_beside_the_new_one_for_its_grace(store: CallbackStore) -> None:
    old = (await store.secret("default")).secret
    rotated = await store.rotate("default", timedelta(hours=24))
    assert rotated.secret != old
    assert rotated.previous_valid_until is not None
    assert await store.signing_secrets("default") == [rotated.secret, old]
    # No grace: the replaced one stops signing at once.
    newest = await store.rotate("default", timedelta(0))
    assert await store.signing_secrets("default") == [newest.secret, old]  # `old` keeps its own grace
    assert (await store.secret("default")).secret == newest.secret
    assert await store.signing_secrets("globex") == [(await store.secret("globex")).secret]


async def test_the_delivery_log_is_per_tenant_and_workflow(store: CallbackStore) -> None:
    first = await store.record(
        delivery(), attempt=1, status=DeliveryStatus.RETRYING, http_status=500, error="x" * 2000
    )
    second = await store.record(delivery(), attempt=2, status=DeliveryStatus.DELIVERED, http_status=204)
    await store.record(delivery("globex", "req-globex-1"), attempt=1, status=DeliveryStatus.DELIVERED)
    rows = await store.attempts("default", "req-default-0123")
    assert [r.id for r in rows] == [first.id, second.id]
    assert rows[0].error is not None and len(rows[0].error) == 500
    assert await store.attempts("globex", "req-default-0123") == []
    assert await store.requester_of("default", "req-default-0123") == "p-requester"
    assert await store.requester_of("globex", "req-default-0123") is None
    again, latest = await store.delivery("default", "req-default-0123", first.id)
    assert again == delivery().model_copy(update={"event": again.event}) and latest == 2
    assert again.event.id == "req-default-0123:e1"
    with pytest.raises(LookupError):
        await store.delivery("globex", "req-default-0123", first.id)

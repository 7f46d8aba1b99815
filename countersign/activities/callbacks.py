"""The `deliver_callback` activity: one event to a request's `callback_url`, signed per Standard
Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`) with the tenant's secrets, each
attempt a row of the delivery log.

A 2xx answer delivers it; anything else (another status, a refused connection, a timeout) is raised
as a retryable failure and Temporal's retry policy tries again with backoff. The retry window is the
worker's setting (COUNTERSIGN_CALLBACK_RETRY_WINDOW_SECONDS), counted from the first attempt: the
first attempt that starts past it is the last, recorded `failed`, and its failure is non-retryable.

The secrets are read from the store at each attempt, so a rotation applies to the next attempt and no
secret ever passes through the workflow. An ADMIN's redelivery (api/services/deliveries.py) makes one
more attempt through the same `CallbackSender`.
"""

from datetime import UTC, datetime, timedelta

import httpx
from standardwebhooks.webhooks import Webhook
from temporalio import activity
from temporalio.exceptions import ApplicationError

from countersign.models.callbacks import CallbackDelivery, DeliveryAttempt, DeliveryStatus
from countersign.models.errors import FailureType
from countersign.store.callbacks import CallbackStore
from countersign.store.sql import OpenedOnFirstUse

USER_AGENT = "Countersign-Webhooks/1"


def signed_headers(event_id: str, secrets: list[str], at: datetime, body: bytes) -> dict[str, str]:
    """Standard Webhooks' headers: one `v1,…` signature per secret, space-separated, so a receiver
    holding either the new or (during a rotation's grace) the previous secret verifies the message."""
    signatures = " ".join(Webhook(secret).sign(event_id, at, body) for secret in secrets)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
    }


class CallbackSender:
    """One attempt: sign with every secret that signs now, POST, record the attempt."""

    def __init__(self, timeout_seconds: float) -> None:
        # Redirects are not followed: a callback goes to the allowed URL or nowhere.
        self._http = httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False)

    async def close(self) -> None:
        await self._http.aclose()

    async def attempt(
        self,
        store: CallbackStore,
        delivery: CallbackDelivery,
        *,
        attempt: int,
        last: bool,
        redelivered_by: str | None = None,
    ) -> DeliveryAttempt:
        body = delivery.event.body()
        # Signed at the attempt: receivers refuse a timestamp more than a few minutes old.
        headers = signed_headers(
            delivery.event.id, await store.signing_secrets(delivery.tenant), datetime.now(UTC), body
        )
        status: int | None = None
        error: str | None = None
        try:
            # Streamed and never read: a receiver's answer is its status, whatever its body.
            async with self._http.stream("POST", delivery.url, content=body, headers=headers) as response:
                status = response.status_code
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
        if status is not None and 200 <= status < 300:
            outcome = DeliveryStatus.DELIVERED
        else:
            outcome = DeliveryStatus.FAILED if last else DeliveryStatus.RETRYING
            error = error or f"the receiver answered {status}"
        return await store.record(
            delivery,
            attempt=attempt,
            status=outcome,
            http_status=status,
            error=error,
            redelivered_by=redelivered_by,
        )


class CallbackActivities:
    def __init__(self, store_url: str, *, retry_window: timedelta, timeout_seconds: float) -> None:
        self._store = OpenedOnFirstUse(lambda: CallbackStore.open(store_url))
        self._sender = CallbackSender(timeout_seconds)
        self._window = retry_window

    async def close(self) -> None:
        await self._sender.close()
        await self._store.close()

    @activity.defn(name="deliver_callback")
    async def deliver(self, delivery: CallbackDelivery) -> DeliveryAttempt:
        info = activity.info()
        last = datetime.now(UTC) - info.scheduled_time >= self._window
        result = await self._sender.attempt(
            await self._store.get(), delivery, attempt=info.attempt, last=last
        )
        if result.status == DeliveryStatus.DELIVERED:
            return result
        raise ApplicationError(
            f"{delivery.event.type} not delivered (attempt {info.attempt}): {result.error}",
            type=FailureType.CALLBACK_UNDELIVERED,
            # Past the window, given up: the workflow audits it, the log already says `failed`.
            non_retryable=last,
        )

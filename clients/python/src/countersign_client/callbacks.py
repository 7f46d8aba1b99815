"""Receiving Countersign's signed callbacks (Standard Webhooks)."""

from collections.abc import Mapping

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from countersign_client.errors import CountersignError
from countersign_client.models import CallbackEvent


class InvalidSignature(CountersignError):
    """The callback is not one Countersign signed with this secret (or it is older than five minutes)."""


def verify_callback(secret: str, body: bytes | str, headers: Mapping[str, str]) -> CallbackEvent:
    """Check a callback's `webhook-signature` against your tenant's secret (`whsec_…`) and return the
    event. Pass the raw body exactly as received and the request's headers (any case)."""
    plain = {str(k).lower(): str(v) for k, v in headers.items()}
    try:
        payload = Webhook(secret).verify(body, plain)
    except WebhookVerificationError as error:
        raise InvalidSignature(str(error)) from error
    if not isinstance(payload, dict):
        raise InvalidSignature("the signed body is not a JSON object")
    return CallbackEvent.model_validate({**payload, "id": plain["webhook-id"]})

"""`verify_callback`: a Standard Webhooks message signed with the tenant's secret is the event; anything
else (another secret, a changed byte, an old timestamp, a missing header) is `InvalidSignature`."""

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from countersign_client import CountersignError, InvalidSignature, verify_callback

SECRET = "whsec_" + base64.b64encode(b"countersign-test-secret-32-bytes").decode()
BODY = json.dumps(
    {
        "type": "approval.decided",
        "timestamp": "2026-05-01T10:00:00Z",
        "data": {"workflow_id": "req-default-1", "state": "REJECTED", "decision": {"notes": "no"}},
    }
).encode()


def signed(body: bytes, secret: str = SECRET, at: datetime | None = None) -> dict[str, str]:
    when = at or datetime.now(UTC)
    return {
        "Webhook-Id": "req-default-1:e3",
        "Webhook-Timestamp": str(int(when.timestamp())),
        "Webhook-Signature": Webhook(secret).sign("req-default-1:e3", when, body),
    }


def test_a_signed_callback_is_its_event() -> None:
    event = verify_callback(SECRET, BODY, signed(BODY))
    assert (event.id, event.type, event.data["state"]) == ("req-default-1:e3", "approval.decided", "REJECTED")
    assert event.timestamp == datetime(2026, 5, 1, 10, tzinfo=UTC)
    # During a rotation a message carries two signatures; either secret verifies it.
    other = "whsec_" + base64.b64encode(b"the-previous-secret-of-32-bytes!").decode()
    both = signed(BODY)
    both["Webhook-Signature"] += " " + signed(BODY, other)["Webhook-Signature"]
    assert verify_callback(other, BODY.decode(), both).id == "req-default-1:e3"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body, headers: (body, signed(body, "whsec_" + base64.b64encode(b"x" * 32).decode())),
        lambda body, headers: (body.replace(b"REJECTED", b"APPROVED"), headers),
        lambda body, headers: (body, signed(body, at=datetime.now(UTC) - timedelta(minutes=10))),
        lambda body, headers: (body, {k: v for k, v in headers.items() if k != "Webhook-Signature"}),
    ],
    ids=["another-secret", "changed-body", "too-old", "unsigned"],
)
def test_anything_else_is_refused(tamper: object) -> None:
    body, headers = tamper(BODY, signed(BODY))  # type: ignore[operator]
    with pytest.raises(InvalidSignature) as refused:
        verify_callback(SECRET, body, headers)
    assert isinstance(refused.value, CountersignError)

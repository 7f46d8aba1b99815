"""`send_email` over real SMTP: to a local aiosmtpd server (the same sink `countersign up` runs)."""

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from countersign.activities.validation import ValidationActivities
from countersign.config.settings import Settings
from countersign.models.enums import RequestType
from countersign.models.proposal import Plan, RequestFields, ValidateInput
from countersign.stack.mail_sink import MailSink, deliveries
from countersign.store.execution_ledger import LeaseLost
from countersign.store.outbox import OutboxMessage
from countersign.store.tool_effects import ToolEffects
from countersign.tools.args import SendEmailArgs
from countersign.tools.builtin import build_registry, send_email
from countersign.tools.integrations import Integrations
from countersign.tools.registry import ToolContext
from countersign.tools.smtp import SmtpConfig, SmtpRefused
from tests.conftest import Location

KEY = "req-default-abc123:v1"
ARGS = SendEmailArgs(to="pat@example.com", subject="Pricing", body="Hello Pat.\n", cc=["ops@example.com"])


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[MailSink]:
    with MailSink(tmp_path / "sink") as running:
        yield running


def context(effects: ToolEffects, port: int, key: str = KEY, **smtp: object) -> ToolContext:
    config = SmtpConfig(host="127.0.0.1", port=port, **smtp)  # type: ignore[arg-type]
    integrations = Integrations(smtp=config, email_from="countersign@corp.example")
    return ToolContext(
        data_dir=Path("unused-data-dir"), idempotency_key=key, effects=effects, integrations=integrations
    )


async def outbox(effects: ToolEffects) -> list[OutboxMessage]:
    return await (await effects.outbox()).messages()


async def test_the_message_reaches_the_server_once_per_key(
    tmp_path: Path, effects: ToolEffects, sink: MailSink
) -> None:
    first = await send_email(ARGS, context(effects, sink.port))
    again = await send_email(ARGS, context(effects, sink.port))
    assert (first.replayed, again.replayed) == (False, True)
    received = deliveries(tmp_path / "sink")
    assert len(received) == 1
    delivery = received[0]
    assert delivery["message_id"] == first.result.message_id
    assert delivery["from"] == "countersign@corp.example"
    assert sorted(delivery["to"]) == ["ops@example.com", "pat@example.com"]
    kept = (sink.directory / delivery["file"]).read_text()
    assert "Subject: Pricing" in kept and f"X-Countersign-Idempotency-Key: {KEY}" in kept
    # The outbox keeps the intent, the same message once, and that the server accepted it.
    [stored] = await outbox(effects)
    assert stored.message_id == first.result.message_id and stored.sent_at is not None


async def test_a_retry_on_another_worker_finds_the_sent_mark(
    tmp_path: Path, location: Location, sink: MailSink
) -> None:
    """Each worker has its own connections (and its own empty data dir); the database is the one they
    share: the second worker's retry of a sent key sends nothing."""
    first_worker = ToolEffects(location.url, schema=location.schema)
    second_worker = ToolEffects(location.url, schema=location.schema)
    try:
        sent = await send_email(ARGS, context(first_worker, sink.port))
        retried = await send_email(ARGS, context(second_worker, sink.port))
    finally:
        await first_worker.close()
        await second_worker.close()
    assert (sent.replayed, retried.replayed) == (False, True)
    assert len(deliveries(tmp_path / "sink")) == 1


async def test_another_key_is_another_message(tmp_path: Path, effects: ToolEffects, sink: MailSink) -> None:
    await send_email(ARGS, context(effects, sink.port))
    await send_email(ARGS, context(effects, sink.port, key="req-default-abc123:v2"))
    assert len({d["message_id"] for d in deliveries(tmp_path / "sink")}) == 2


async def test_a_server_that_is_down_raises_a_retryable_error_and_sends_later(
    tmp_path: Path, effects: ToolEffects
) -> None:
    with MailSink(tmp_path / "sink") as running:
        port = running.port
    # Nothing listens now: a connection error (retryable), and nothing is marked sent.
    with pytest.raises(OSError):
        await send_email(ARGS, context(effects, port))
    with MailSink(tmp_path / "sink", port=port):
        retried = await send_email(ARGS, context(effects, port))
    assert retried.replayed is False
    assert len(deliveries(tmp_path / "sink")) == 1


async def test_the_message_is_sent_only_after_the_last_look_at_the_lease(
    tmp_path: Path, effects: ToolEffects, sink: MailSink
) -> None:
    """`before_effect` comes after the outbox's "already sent?" and right before the send: an attempt
    that lost its key there sends nothing and marks nothing; the one that holds the key sends once."""
    looks: list[int] = []

    async def lost() -> None:
        looks.append(len(deliveries(tmp_path / "sink")))
        raise LeaseLost(KEY, 1, "taken over under fence 2 by the retry")

    with pytest.raises(LeaseLost):
        await send_email(ARGS, dataclasses.replace(context(effects, sink.port), before_effect=lost))
    assert looks == [0] and deliveries(tmp_path / "sink") == []

    async def held() -> None:
        looks.append(len(deliveries(tmp_path / "sink")))

    sent = await send_email(ARGS, dataclasses.replace(context(effects, sink.port), before_effect=held))
    again = await send_email(ARGS, dataclasses.replace(context(effects, sink.port), before_effect=held))
    assert (sent.replayed, again.replayed) == (False, True)
    # Looked at once more, before the one send; the replay found the sent mark and did not ask.
    assert looks == [0, 0] and len(deliveries(tmp_path / "sink")) == 1


class _Passwords:
    def __call__(
        self, server: object, session: object, envelope: object, mechanism: str, data: object
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"bot", b"s3cret")
        return AuthResult(success=ok, handled=False)


# Plain-text AUTH is fine on loopback in a test; a real server would offer STARTTLS.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_authentication(tmp_path: Path, effects: ToolEffects) -> None:
    auth = {"authenticator": _Passwords(), "auth_required": True, "auth_require_tls": False}
    with MailSink(tmp_path / "sink", **auth) as running:  # type: ignore[arg-type]
        sent = await send_email(ARGS, context(effects, running.port, username="bot", password="s3cret"))
        assert sent.replayed is False
        with pytest.raises(SmtpRefused, match="authentication failed"):
            await send_email(
                ARGS, context(effects, running.port, key="other:v1", username="bot", password="wrong")
            )
    assert len(deliveries(tmp_path / "sink")) == 1


async def test_concurrent_sends_of_one_key_store_one_intent(
    tmp_path: Path, effects: ToolEffects, sink: MailSink
) -> None:
    runs = await asyncio.gather(*(send_email(ARGS, context(effects, sink.port)) for _ in range(3)))
    assert len(await outbox(effects)) == 1
    assert {r.result.message_id for r in runs} == {runs[0].result.message_id}


async def test_recipients_outside_the_allowed_domains_are_findings() -> None:
    plan = Plan(
        request_type=RequestType.GENERAL,
        fields=RequestFields(),
        summary="Follow up",
        tool="send_email",
        args={"to": "pat@example.com", "subject": "Hi", "body": "Hello", "cc": ["x@elsewhere.org"]},
        confidence=0.9,
        rationale="asked for",
    )
    open_ = await ValidationActivities(build_registry()).validate(
        ValidateInput(plan=plan, confidence_threshold=0.5)
    )
    assert open_.ok
    allowed = ValidationActivities(build_registry(), Integrations(email_allowed_domains=["Example.com"]))
    report = await allowed.validate(ValidateInput(plan=plan, confidence_threshold=0.5))
    assert not report.ok
    assert [(f.code, f.field) for f in report.findings] == [("recipient_not_allowed", "cc")]
    assert "x@elsewhere.org" in report.findings[0].message


def test_settings_read_allowed_domains_and_build_the_smtp_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COUNTERSIGN_EMAIL_ALLOWED_DOMAINS", " example.com, @Partner.example ")
    monkeypatch.setenv("COUNTERSIGN_SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("COUNTERSIGN_SMTP_PASSWORD", "s3cret")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.email_allowed_domains == ["example.com", "partner.example"]
    config = settings.smtp_config()
    assert config is not None and (config.host, config.port, config.starttls) == (
        "smtp.example.com",
        587,
        False,
    )
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(config)
    monkeypatch.delenv("COUNTERSIGN_SMTP_HOST")
    assert Settings(_env_file=None).smtp_config() is None  # type: ignore[call-arg]

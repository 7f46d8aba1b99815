"""Digests end to end: the `notify` activity (in Temporal's activity environment) with a real principal
store keeps a digest reader's notifications; the digest sender later sends them as one email to a real
SMTP server over sockets, once, and keeps them through an outage."""

import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from countersign.activities.digests import DigestSender
from countersign.activities.notify import NotifyActivities
from countersign.activities.plugins import BUILTIN_CHANNELS, ChannelContext, build_channels
from countersign.models.channels import ChannelPreferences
from countersign.models.enums import Role
from countersign.models.notifications import Notification, NotificationKind
from countersign.stack.mail_sink import MailSink, deliveries
from countersign.store.principals import PrincipalStore
from countersign.tools.builtin import build_registry
from countersign.tools.integrations import Integrations
from countersign.tools.smtp import SmtpConfig
from tests.helpers import notification_records

SCHEDULED = datetime(2026, 3, 10, 12, 20, tzinfo=UTC)
BEFORE_THE_HOUR = datetime(2026, 3, 10, 12, 59, tzinfo=UTC)
ON_THE_HOUR = datetime(2026, 3, 10, 13, 0, 30, tzinfo=UTC)
PUBLIC_URL = "https://countersign.corp.example"


@dataclasses.dataclass
class World:
    data: Path
    sink: MailSink
    integrations: Integrations
    digest_reader: str
    at_once: str

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.data / 'audit.db'}"

    def sender(self) -> DigestSender:
        return DigestSender(self.store_url, self.data, self.integrations, PUBLIC_URL)

    def mail(self) -> list[dict[str, object]]:
        return deliveries(self.data / "sink")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    data = tmp_path / "data"
    sink = MailSink(data / "sink").start()
    async with await PrincipalStore.open(f"sqlite:///{data / 'audit.db'}") as principals:
        dana = await principals.add("Dana", [Role.FINANCE], email="dana@corp.example")
        eve = await principals.add("Eve", [Role.FINANCE], email="eve@corp.example")
        await principals.set_channels(dana.principal.id, preferences=ChannelPreferences(delivery="hourly"))
    smtp = SmtpConfig(host="127.0.0.1", port=sink.port)
    integrations = Integrations(smtp=smtp, email_from="countersign@corp.example")
    made = World(data, sink, integrations, dana.principal.id, eve.principal.id)
    try:
        yield made
    finally:
        made.sink.stop()  # the one running now (a test may have replaced it)


def note(n: int) -> Notification:
    return Notification(
        key=f"req-{n}:n1",
        workflow_id=f"req-{n}",
        tenant="default",
        kind=NotificationKind.PENDING,
        subject=f"purchase create_purchase_order 1,200.00 EUR for Pat [req-{n}]",
        body="Step 1 of 1 waits for FINANCE.",
        roles=[Role.FINANCE],
    )


async def notify(world: World, *notes: Notification) -> None:
    """Each note through the activity, as Temporal runs it: scheduled at SCHEDULED."""
    context = ChannelContext(data_dir=world.data, tools=build_registry(), integrations=world.integrations)
    activities = NotifyActivities(
        world.data, build_channels(BUILTIN_CHANNELS, context), digest_url=world.store_url
    )
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, scheduled_time=SCHEDULED)
    try:
        for each in notes:
            await env.run(activities.notify, each)
    finally:
        await activities.close()


def received(world: World, delivery: dict[str, object]) -> EmailMessage:
    kept = world.sink.directory / str(delivery["file"])
    message = message_from_bytes(kept.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def test_a_digest_reader_gets_one_email_listing_both_requests_once(world: World) -> None:
    # The second notify of req-1 is the activity's retry: queued once all the same.
    await notify(world, note(1), note(2), note(1))
    told_now = world.mail()
    assert sorted(d["to"][0] for d in told_now) == ["eve@corp.example", "eve@corp.example"]  # type: ignore[index]
    # The notification log, the record of who was told what, names both readers of each notification.
    records = await notification_records(world.store_url)
    assert [sorted(r["id"] for r in record["recipients"]) for record in records] == [  # type: ignore[attr-defined]
        sorted([world.digest_reader, world.at_once])
    ] * 2

    sender = world.sender()
    try:
        assert await sender.send_due(BEFORE_THE_HOUR) == 0
        assert await sender.send_due(ON_THE_HOUR) == 1
        assert await sender.send_due(ON_THE_HOUR) == 0  # a second round: nothing left to send
    finally:
        await sender.close()
    digests = world.mail()[len(told_now) :]
    assert [d["to"] for d in digests] == [["dana@corp.example"]]
    message = received(world, digests[0])
    assert message["Subject"] == "Countersign: 2 requests await you"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    for n in (1, 2):
        assert text.get_content().count(note(n).subject) == 1
        assert text.get_content().count(f"{PUBLIC_URL}/ui#/requests/req-{n}") == 1
        assert f'href="{PUBLIC_URL}/ui#/requests/req-{n}"' in html.get_content()
    assert "decide" not in str(message["Reply-To"] or "")  # no decision links, no reply-to-decide


async def test_an_smtp_outage_keeps_the_digest_for_the_next_round(world: World) -> None:
    await notify(world, note(1))
    world.sink.stop()
    sender = world.sender()
    try:
        assert await sender.send_due(ON_THE_HOUR) == 0  # connection refused: released, not lost
        world.sink = MailSink(world.data / "sink", port=world.sink.port).start()  # back, same port
        assert await sender.send_due(ON_THE_HOUR) == 1
    finally:
        await sender.close()
    assert [d["to"] for d in world.mail() if d["to"] == ["dana@corp.example"]] == [["dana@corp.example"]]


async def test_a_crash_between_the_send_and_the_mark_sends_nothing_twice(world: World) -> None:
    """The entries were sent but not marked (the worker died in between): the next round claims the same
    entries, builds the same key, and the outbox says the server has it already."""
    await notify(world, note(1), note(2))
    sender = world.sender()
    try:
        assert await sender.send_due(ON_THE_HOUR) == 1
        with sqlite3.connect(world.data / "audit.db") as db:
            db.execute("UPDATE digest_entries SET sent_at = NULL, claim_id = NULL, claimed_at = NULL")
        db.close()
        assert await sender.send_due(ON_THE_HOUR) == 0
    finally:
        await sender.close()
    assert [d["to"] for d in world.mail()].count(["dana@corp.example"]) == 1

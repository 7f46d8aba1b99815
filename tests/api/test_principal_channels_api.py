"""`GET /principals/me`'s channels and `PUT /principals/me/channels`, on the real gateway: what a
reviewer can decide from given what is on file and configured; the preferences they set for themselves
only, validated, and never an address."""

import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client

from countersign.api.main import attach, create_app, detach
from countersign.api.services.principal_channels import decides_from
from countersign.config.settings import ChannelSettings, Settings
from countersign.models.enums import Role
from countersign.models.principals import Principal, PrincipalChannels
from tests.api.conftest import Api


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
async def wired(client: Client, task_queue: str, tmp_path: Path) -> AsyncIterator[Api]:
    """A gateway with Slack, Teams (for FINANCE) and replies configured; people of a tenant of their own,
    and one of another tenant."""
    settings = Settings(
        data_dir=tmp_path,
        task_queue=task_queue,
        slack_bot_token="xoxb-test",
        slack_signing_secret="signing-secret",
        teams_webhooks="FINANCE=https://teams.example/hook",
        reply_domain="reply.example.com",
        reply_smtp_port=free_port(),
    )
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    store = app.state.principals
    tenant = f"chan-{uuid.uuid4().hex[:8]}"
    keys = {}
    for name, roles, where in (
        ("finance", [Role.FINANCE], tenant),
        ("manager", [Role.MANAGER], tenant),
        ("globex", [Role.FINANCE], "globex"),
    ):
        added = await store.add(name, roles, where)
        keys[name] = added.api_key
        keys[f"{name}_id"] = added.principal.id
    await store.set_channels(
        keys["finance_id"], email="fin@example.com", slack_user_id=f"U{uuid.uuid4().hex[:8].upper()}"
    )
    await store.set_channels(keys["manager_id"], email="mgr@example.com")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        yield Api(http=http, keys=keys, app=app)
    await detach(app)


async def channels(api: Api, who: str) -> dict[str, Any]:
    answer = await api.http.get("/principals/me", headers=api.as_(who))
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()["channels"]
    return found


async def test_me_shows_where_the_reviewer_is_told_and_may_decide(wired: Api) -> None:
    finance = await channels(wired, "finance")
    assert finance["email"] == "fin@example.com" and finance["slack_user_id"].startswith("U")
    assert finance["preferences"] == {"delivery": "immediate", "quiet_hours": None, "timezone": "UTC"}
    assert finance["decides_from"] == ["api", "inbox", "email_link", "email_reply", "slack", "teams"]
    # No Slack id on file, no Teams webhook for MANAGER.
    manager = await channels(wired, "manager")
    assert manager["decides_from"] == ["api", "inbox", "email_link", "email_reply"]
    # Nothing on file: the API and the inbox (a Teams card for their role opens the inbox).
    assert (await channels(wired, "globex"))["decides_from"] == ["api", "inbox", "teams"]


async def test_the_default_gateway_offers_the_api_and_the_inbox(api: Api) -> None:
    assert await channels(api, "manager") == {
        "email": None,
        "slack_user_id": None,
        "preferences": {"delivery": "immediate", "quiet_hours": None, "timezone": "UTC"},
        "decides_from": ["api", "inbox"],
    }


def test_decides_from_needs_both_what_is_on_file_and_what_is_configured() -> None:
    finance = Principal(id="p-f", name="F", roles=[Role.FINANCE])
    on_file = PrincipalChannels(email="f@example.com", slack_user_id="U0F1")
    # Slack needs its token and signing secret; replies a domain and a port; Teams a webhook of the role.
    half = ChannelSettings(
        slack_bot_token=SecretStr("xoxb"),
        reply_domain="r.example",
        teams_webhooks={Role.MANAGER: "https://t"},
    )
    assert decides_from(finance, on_file, half) == ["api", "inbox", "email_link"]
    full = ChannelSettings(
        slack_bot_token=SecretStr("xoxb"),
        slack_signing_secret=SecretStr("s"),
        reply_domain="r.example",
        reply_smtp_port=2525,
        teams_webhooks={Role.FINANCE: "https://t"},
    )
    everything = ["api", "inbox", "email_link", "email_reply", "slack", "teams"]
    assert decides_from(finance, on_file, full) == everything
    assert decides_from(finance, PrincipalChannels(), full) == ["api", "inbox", "teams"]


async def test_a_reviewer_sets_their_own_preferences_and_nobody_elses(wired: Api) -> None:
    others = {who: await channels(wired, who) for who in ("manager", "globex")}
    body = {"delivery": "daily", "quiet_hours": "22:00-07:00", "timezone": "Europe/Berlin"}
    answer = await wired.http.put("/principals/me/channels", json=body, headers=wired.as_("finance"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["preferences"] == body
    assert answer.json()["email"] == "fin@example.com"  # addresses untouched
    assert (await channels(wired, "finance"))["preferences"] == body
    # The caller is the only principal the route changes: colleagues and other tenants keep theirs.
    assert {who: await channels(wired, who) for who in ("manager", "globex")} == others
    # What is left out returns to its default (a PUT replaces the preferences).
    again = await wired.http.put(
        "/principals/me/channels", json={"delivery": "hourly"}, headers=wired.as_("finance")
    )
    assert again.json()["preferences"] == {"delivery": "hourly", "quiet_hours": None, "timezone": "UTC"}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, 422, "unknown time zone 'Mars/Olympus_Mons'"),
        ({"quiet_hours": "22:00-22:00"}, 422, "quiet hours must start and end at different times"),
        ({"quiet_hours": "10pm-7am"}, 422, "quiet_hours"),
        ({"delivery": "weekly"}, 422, "delivery"),
        # Addresses are an administrator's to map: a reviewer naming a Slack id or an email is refused.
        ({"slack_user_id": "U0MALLORY"}, 422, "slack_user_id"),
        ({"email": "me@example.com"}, 422, "email"),
        ({"delivery": "daily", "principal_id": "p-0000000000"}, 422, "principal_id"),
    ],
)
async def test_preferences_are_validated_and_a_refusal_changes_nothing(
    wired: Api, body: dict[str, Any], status: int, says: str
) -> None:
    before = await channels(wired, "finance")
    answer = await wired.http.put("/principals/me/channels", json=body, headers=wired.as_("finance"))
    assert answer.status_code == status and says in answer.text, answer.text
    assert await channels(wired, "finance") == before


async def test_preferences_need_a_credential(wired: Api) -> None:
    answer = await wired.http.put("/principals/me/channels", json={"delivery": "daily"})
    assert answer.status_code == 401

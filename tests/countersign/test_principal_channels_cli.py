"""`countersign principal add --slack-user` and `countersign principal update`: a principal's addresses
(email, Slack member id) and delivery preferences, what `show`/`list --json` report of them, the audit
event each change leaves, and the refusals (a taken Slack id, a bad value) that change nothing; with the
database on SQLite and on PostgreSQL."""

import json
from pathlib import Path

import pytest

from tests.countersign.test_principal_cli import Cli, assert_event


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Cli:
    return Cli(tmp_path, database_url)


def test_add_maps_a_slack_user_and_show_and_list_report_it(cli: Cli) -> None:
    ada, _ = cli.add("Ada", "--roles", "FINANCE", "--slack-user", "U0ADA1")
    assert_event(cli.last_event(), "principal_added", ada, slack_user_id="U0ADA1")
    shown = cli.ok("show", ada).stdout
    assert "slack:   U0ADA1" in shown and "told:    immediate (UTC)" in shown
    [listed] = json.loads(cli.ok("list", "--json").stdout)
    assert listed["slack_user_id"] == "U0ADA1"
    assert listed["preferences"] == {"delivery": "immediate", "quiet_hours": None, "timezone": "UTC"}


def test_add_refuses_a_taken_or_malformed_slack_user_and_adds_nobody(cli: Cli) -> None:
    cli.add("Ada", "--slack-user", "U0ADA1")
    taken = cli("add", "Bob", "--slack-user", "U0ADA1")
    assert taken.exit_code == 2 and "Slack user U0ADA1 belongs to another principal" in taken.stderr
    bad = cli("add", "Bob", "--slack-user", "bob")
    assert bad.exit_code == 2 and "is not a Slack member id" in bad.output
    assert [p["name"] for p in json.loads(cli.ok("list", "--json").stdout)] == ["Ada"]
    assert [e.event for e in cli.audit()] == ["principal_added"]


def test_update_sets_and_clears_channels_and_is_audited(cli: Cli) -> None:
    ada, _ = cli.add("Ada", "--roles", "FINANCE")
    result = cli.ok(
        "update",
        ada,
        "--email",
        "ada@example.com",
        "--slack-user",
        "U0ADA1",
        "--delivery",
        "daily",
        "--quiet-hours",
        "22:00-07:00",
        "--timezone",
        "Europe/Berlin",
    )
    assert "told daily, quiet 22:00-07:00 (Europe/Berlin)" in result.stderr
    event = cli.last_event()
    assert_event(
        event,
        "principal_channels_changed",
        ada,
        email="set",
        slack_user_id="U0ADA1",
        slack_user_id_before=None,
        delivery="daily",
        quiet_hours="22:00-07:00",
        timezone="Europe/Berlin",
    )
    # The address itself is personal data: the audit log says it was set, not what it is.
    assert "ada@example.com" not in json.dumps(event.model_dump(mode="json"))
    shown = json.loads(cli.ok("show", ada, "--json").stdout)
    assert (shown["email"], shown["slack_user_id"]) == ("ada@example.com", "U0ADA1")
    assert shown["preferences"] == {
        "delivery": "daily",
        "quiet_hours": "22:00-07:00",
        "timezone": "Europe/Berlin",
    }

    # What is not named stays; --no- forms clear.
    cli.ok("update", ada, "--no-slack-user", "--no-quiet-hours")
    assert_event(cli.last_event(), "principal_channels_changed", ada, slack_user_id=None, quiet_hours=None)
    assert set(cli.last_event().data or {}) >= {"slack_user_id_before", "slack_user_id", "quiet_hours"}
    assert "delivery" not in (cli.last_event().data or {})
    shown = json.loads(cli.ok("show", ada, "--json").stdout)
    assert (shown["email"], shown["slack_user_id"]) == ("ada@example.com", None)
    assert shown["preferences"] == {"delivery": "daily", "quiet_hours": None, "timezone": "Europe/Berlin"}

    # The same values again: nothing changes and nothing is audited.
    assert "nothing changed" in cli.ok("update", ada, "--delivery", "daily").stderr
    assert [e.event for e in cli.audit()] == ["principal_added"] + ["principal_channels_changed"] * 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--timezone", "Mars/Olympus_Mons"), "unknown time zone 'Mars/Olympus_Mons'"),
        (("--quiet-hours", "25:00-07:00"), "quiet hours are HH:MM-HH:MM"),
        (("--quiet-hours", "22:00-22:00"), "quiet hours must start and end at different times"),
        (("--delivery", "weekly"), "'weekly' is not one of"),
        (("--slack-user", "U0ADA1"), "Slack user U0ADA1 belongs to another principal"),
        (("--slack-user", "ada"), "is not a Slack member id"),
        (("--slack-user", "U0BOB1", "--no-slack-user"), "contradict"),
        (("--email", "not-an-address"), "'not-an-address' is not an email address"),
        ((), "say what to change"),
    ],
)
def test_update_refuses_a_bad_value_and_changes_nothing(
    cli: Cli, args: tuple[str, ...], message: str
) -> None:
    cli.add("Ada", "--slack-user", "U0ADA1")
    bob, _ = cli.add("Bob", "--slack-user", "U0BOB1")
    before = cli.ok("show", bob, "--json").stdout
    result = cli("update", bob, *args)
    said = " ".join(result.output.replace("│", " ").split())  # as one line, whatever the box's wrapping
    assert result.exit_code == 2 and message in said, result.output
    assert "Traceback" not in result.output
    assert cli.ok("show", bob, "--json").stdout == before
    assert [e.event for e in cli.audit()] == ["principal_added"] * 2


def test_update_of_an_unknown_principal_is_exit_1(cli: Cli) -> None:
    result = cli("update", "p-0000000000", "--delivery", "daily")
    assert result.exit_code == 1 and "no principal p-0000000000" in result.stderr

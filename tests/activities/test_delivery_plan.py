"""The delivery plan: who is told now and who later, at a given moment (no clocks)."""

from datetime import UTC, datetime, timedelta

from countersign.activities.delivery_plan import due_at, plan_delivery, urgent
from countersign.models.channels import ChannelPreferences, DecisionPrompt
from countersign.models.enums import Role
from countersign.models.notifications import Notification, NotificationKind
from countersign.models.principals import Recipient


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def prefs(**given: object) -> ChannelPreferences:
    return ChannelPreferences.model_validate(given)


def person(name: str, **given: object) -> Recipient:
    return Recipient(id=name, name=name, email=f"{name}@corp.example", preferences=prefs(**given))


def note(kind: NotificationKind = NotificationKind.PENDING, sla_due_at: str | None = None) -> Notification:
    prompt = DecisionPrompt(
        workflow_id="req-1",
        tenant="default",
        requester_name="Pat",
        step_index=0,
        total_steps=1,
        awaiting=[Role.FINANCE],
        proposal_version=1,
        tool="create_task",
        confidence=0.9,
        sla_due_at=sla_due_at,
    )
    asks = kind in (NotificationKind.PENDING, NotificationKind.REMINDER, NotificationKind.ESCALATION)
    return Notification(
        key=f"req-1:{kind}",
        workflow_id="req-1",
        tenant="default",
        kind=kind,
        subject="task create_task for Pat [req-1]",
        body="",
        prompt=prompt if asks else None,
    )


NOON = at("2026-03-10T12:20:00+00:00")


def test_immediate_outside_quiet_hours_is_now() -> None:
    assert due_at(prefs(), NOON) == NOON
    assert due_at(prefs(quiet_hours="22:00-07:00"), NOON) == NOON


def test_hourly_is_the_next_full_hour() -> None:
    assert due_at(prefs(delivery="hourly"), NOON) == at("2026-03-10T13:00:00+00:00")
    on_the_hour = at("2026-03-10T13:00:00+00:00")
    assert due_at(prefs(delivery="hourly"), on_the_hour) == at("2026-03-10T14:00:00+00:00")
    # India is half an hour off UTC: its full hours are at half past, UTC.
    assert due_at(prefs(delivery="hourly", timezone="Asia/Kolkata"), NOON) == at("2026-03-10T12:30:00+00:00")


def test_daily_is_the_next_nine_oclock_in_their_time_zone() -> None:
    assert due_at(prefs(delivery="daily"), NOON) == at("2026-03-11T09:00:00+00:00")
    early = at("2026-03-10T06:00:00+00:00")
    assert due_at(prefs(delivery="daily"), early) == at("2026-03-10T09:00:00+00:00")
    # 12:20 UTC is 08:20 in New York (EDT from 8 March 2026): 09:00 there, the same day.
    assert due_at(prefs(delivery="daily", timezone="America/New_York"), NOON) == at(
        "2026-03-10T09:00:00-04:00"
    )
    # In Tokyo it is 21:20: tomorrow's 09:00 there.
    assert due_at(prefs(delivery="daily", timezone="Asia/Tokyo"), NOON) == at("2026-03-11T09:00:00+09:00")


def test_daily_waits_for_quiet_hours_that_end_after_nine() -> None:
    late_sleeper = prefs(delivery="daily", quiet_hours="23:00-10:30")
    assert due_at(late_sleeper, NOON) == at("2026-03-11T10:30:00+00:00")


def test_quiet_hours_that_wrap_midnight_hold_until_they_end() -> None:
    night = prefs(quiet_hours="22:00-07:00", timezone="Europe/Paris")  # CET, UTC+1, in March
    # 23:30 and 03:00 in Paris are quiet; both wait for 07:00 Paris time.
    assert due_at(night, at("2026-03-10T23:30:00+01:00")) == at("2026-03-11T07:00:00+01:00")
    assert due_at(night, at("2026-03-11T03:00:00+01:00")) == at("2026-03-11T07:00:00+01:00")
    # The window's edges: 21:59 is before it, 07:00 is after it.
    assert due_at(night, at("2026-03-10T21:59:00+01:00")) == at("2026-03-10T21:59:00+01:00")
    assert due_at(night, at("2026-03-11T07:00:00+01:00")) == at("2026-03-11T07:00:00+01:00")
    # 21:30 UTC is 22:30 in Paris: quiet there, though not for someone keeping the same hours in UTC.
    evening = at("2026-03-10T21:30:00+00:00")
    assert due_at(prefs(quiet_hours="22:00-07:00"), evening) == evening
    assert due_at(night, evening) == at("2026-03-11T07:00:00+01:00")


def test_quiet_hours_within_a_day_and_an_hourly_digest_that_falls_in_them() -> None:
    lunch = prefs(delivery="hourly", quiet_hours="13:00-14:15")
    # The next full hour (13:00) is quiet: the digest goes when it ends.
    assert due_at(lunch, NOON) == at("2026-03-10T14:15:00+00:00")


def test_an_unknown_time_zone_counts_as_utc() -> None:
    assert due_at(prefs(delivery="daily", timezone="Mars/Olympus"), NOON) == at("2026-03-11T09:00:00+00:00")


def test_the_plan_splits_recipients() -> None:
    now_one, hourly, sleeper = (
        person("ann"),
        person("bob", delivery="hourly"),
        person("cy", quiet_hours="12:00-13:00"),
    )
    plan = plan_delivery(note(), [now_one, hourly, sleeper], NOON)
    assert plan.now == [now_one]
    assert plan.later == [
        (hourly, at("2026-03-10T13:00:00+00:00")),
        (sleeper, at("2026-03-10T13:00:00+00:00")),
    ]


def test_a_reminder_before_its_sla_respects_preferences_and_after_it_goes_now() -> None:
    sleeper = person("cy", quiet_hours="12:00-13:00")
    sla_later = (NOON + timedelta(hours=2)).isoformat()
    sla_passed = (NOON - timedelta(minutes=1)).isoformat()
    assert plan_delivery(note(NotificationKind.REMINDER, sla_later), [sleeper], NOON).later
    late = plan_delivery(note(NotificationKind.REMINDER, sla_passed), [sleeper], NOON)
    assert (late.now, late.later) == ([sleeper], [])
    escalation = plan_delivery(note(NotificationKind.ESCALATION, sla_passed), [sleeper], NOON)
    assert escalation.now == [sleeper]
    assert urgent(note(NotificationKind.PENDING, NOON.isoformat()), NOON)  # due exactly now is past it


def test_a_dead_letter_goes_now_and_an_outcome_waits() -> None:
    digest_reader = person("dee", delivery="daily")
    assert plan_delivery(note(NotificationKind.DEAD_LETTER), [digest_reader], NOON).now == [digest_reader]
    assert plan_delivery(note(NotificationKind.OUTCOME), [digest_reader], NOON).later == [
        (digest_reader, at("2026-03-11T09:00:00+00:00"))
    ]

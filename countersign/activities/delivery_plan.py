"""Who is told now and who later: a reviewer's delivery preferences (immediate, an hourly or a daily
digest; quiet hours in their own time zone) applied to one notification at one moment.

Pure: the moment is passed in, so the rules are tested without clocks. What cannot wait goes at once
whatever the preferences: a dead letter (an ADMIN's operational problem), and a message asking for a
decision on a step already past its SLA (a reminder or an escalation that is late already).
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from countersign.models.channels import ChannelPreferences
from countersign.models.notifications import Notification, NotificationKind
from countersign.models.principals import Recipient

# When a daily digest goes out, in the reviewer's time zone.
DAILY_AT = time(9, 0)


@dataclass(frozen=True)
class DeliveryPlan:
    now: list[Recipient] = field(default_factory=list)
    # Each deferred recipient with when their digest including this notification is due (UTC).
    later: list[tuple[Recipient, datetime]] = field(default_factory=list)


def plan_delivery(note: Notification, recipients: list[Recipient], now: datetime) -> DeliveryPlan:
    """Split `recipients` of `note` at `now` (timezone-aware) into those told now and those deferred."""
    if urgent(note, now):
        return DeliveryPlan(now=list(recipients))
    plan = DeliveryPlan()
    for recipient in recipients:
        due = due_at(recipient.preferences, now)
        if due <= now:
            plan.now.append(recipient)
        else:
            plan.later.append((recipient, due))
    return plan


def urgent(note: Notification, now: datetime) -> bool:
    """Goes at once whatever anyone's preferences: a dead letter, or a decision already past its SLA."""
    if note.kind == NotificationKind.DEAD_LETTER:
        return True
    if note.prompt is None or not note.prompt.sla_due_at:
        return False
    try:
        sla = datetime.fromisoformat(note.prompt.sla_due_at)
    except ValueError:
        return False
    if sla.tzinfo is None:  # the workflows write UTC; a naive value is read as such
        sla = sla.replace(tzinfo=UTC)
    return sla <= now


def due_at(preferences: ChannelPreferences, now: datetime) -> datetime:
    """When someone with `preferences` should be told of a notification made at `now`: `now` itself for
    immediate delivery outside quiet hours; the next full hour (hourly) or the next DAILY_AT (daily),
    local time; in any case not before the quiet hours around that moment end."""
    zone = zone_of(preferences.timezone)
    local = now.astimezone(zone)
    if preferences.delivery == "hourly":
        wanted = _wall(zone, local.date(), time(local.hour)) + timedelta(hours=1)
    elif preferences.delivery == "daily":
        wanted = _next_wall(zone, local, DAILY_AT)
    else:
        wanted = local
    quiet = _quiet_hours(preferences.quiet_hours)
    if quiet is not None and _is_quiet(wanted.astimezone(zone), *quiet):
        wanted = _next_wall(zone, wanted.astimezone(zone), quiet[1])
    return wanted.astimezone(UTC) if wanted > now else now


def zone_of(name: str) -> tzinfo:
    """The reviewer's zone; an unknown name (the preference is only length-checked) counts as UTC."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _quiet_hours(spec: str | None) -> tuple[time, time] | None:
    """`"22:00-07:00"` as (start, end); None for none, or for an empty window (start == end)."""
    if not spec:
        return None
    start, _, end = spec.partition("-")
    begins, ends = time.fromisoformat(start), time.fromisoformat(end)
    return None if begins == ends else (begins, ends)


def _is_quiet(local: datetime, start: time, end: time) -> bool:
    clock = local.time().replace(tzinfo=None)
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end  # the window wraps midnight


def _wall(zone: tzinfo, day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=zone)


def _next_wall(zone: tzinfo, local: datetime, at: time) -> datetime:
    """The first moment after `local` when the clock in `zone` reads `at`. Built from the calendar date,
    not by adding 24 hours, so a daylight-saving change does not shift it."""
    candidate = _wall(zone, local.date(), at)
    if candidate <= local:
        candidate = _wall(zone, local.date() + timedelta(days=1), at)
    return candidate

"""A reviewer's channels as `GET /principals/me` shows them, and the preferences they set themselves
(`PUT /principals/me/channels`).

Addresses (an email, a Slack member id) are an administrator's to map (`countersign principal
add/update`): a reviewer who could set their own Slack id could have another person's clicks count as
theirs. What a reviewer may set is how they are told: immediately or in a digest, quiet hours, time zone.
"""

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from countersign.config.settings import ChannelSettings
from countersign.models.channels import ChannelPreferences, DecisionChannel
from countersign.models.errors import Invalid, NotFound
from countersign.models.principals import Principal, PrincipalChannels
from countersign.store.principals import PrincipalStore


def known_timezone(name: str) -> str:
    """`name` when it is an IANA time zone (Europe/Berlin, UTC); Invalid otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC",
            code="InvalidTimezone",
        ) from None
    return name


def check_preferences(preferences: ChannelPreferences) -> ChannelPreferences:
    """Invalid for what the model's patterns let through: an unknown time zone, empty quiet hours."""
    known_timezone(preferences.timezone)
    if preferences.quiet_hours is not None:
        start, end = preferences.quiet_hours.split("-")
        if start == end:
            raise Invalid("quiet hours must start and end at different times", code="InvalidQuietHours")
    return preferences


def decides_from(principal: Principal, channels: PrincipalChannels, settings: ChannelSettings) -> list[str]:
    """The channels a decision of this reviewer may come from, given what is on file for them and what
    this deployment configured. The API and the inbox always; a Teams card opens the inbox."""
    found = [DecisionChannel.API, DecisionChannel.INBOX]
    if channels.email:
        found.append(DecisionChannel.EMAIL_LINK)
        if settings.reply_domain and settings.reply_smtp_port:
            found.append(DecisionChannel.EMAIL_REPLY)
    if channels.slack_user_id and settings.slack_bot_token and settings.slack_signing_secret:
        found.append(DecisionChannel.SLACK)
    if any(role in settings.teams_webhooks for role in principal.roles):
        found.append(DecisionChannel.TEAMS)
    return [channel.value for channel in found]


async def my_channels(
    store: PrincipalStore, principal: Principal, settings: ChannelSettings
) -> PrincipalChannels:
    on_file = await store.channels(principal.id)
    if on_file is None:  # a principal the gateway authenticated is on file: it was deleted meanwhile
        raise NotFound(f"no principal {principal.id}")
    return on_file.model_copy(update={"decides_from": decides_from(principal, on_file, settings)})


async def set_my_preferences(
    store: PrincipalStore, principal: Principal, preferences: ChannelPreferences, settings: ChannelSettings
) -> PrincipalChannels:
    """The caller's own delivery preferences, and nobody else's: the principal is the authenticated one."""
    check_preferences(preferences)
    if not await store.set_channels(principal.id, preferences=preferences):
        raise NotFound(f"no principal {principal.id}")
    return await my_channels(store, principal, settings)

"""`countersign principal update`: where a principal is told and may decide (email, Slack member id) and
how (at once or in a digest, quiet hours, time zone). Audited like every other principal change.

Only an administrator maps addresses: a Slack member id decides as the principal it is mapped to, so a
reviewer may not choose their own (they set only their preferences, `PUT /principals/me/channels`).
"""

from typing import Annotated, Literal

import typer
from pydantic import EmailStr, TypeAdapter, ValidationError

from countersign.api.services.principal_channels import check_preferences
from countersign.cli.audited_admin import audit_event, exit_unaudited, run_audited
from countersign.cli.common import DataDir, err
from countersign.cli.common import settings_from as _settings
from countersign.cli.principals import PrincipalIdArg, SlackUserOption, preferences_text, principal_app
from countersign.models.channels import ChannelPreferences
from countersign.models.errors import Invalid
from countersign.models.principals import PrincipalRecord
from countersign.store.admin_audit import AdminAudit, Data
from countersign.store.principals import KEEP, PrincipalStore

Delivery = Literal["immediate", "hourly", "daily"]
_email = TypeAdapter(EmailStr)


def _address(value: str | None) -> str | None:
    if value is not None:
        try:
            _email.validate_python(value)
        except ValidationError:
            raise typer.BadParameter(f"{value!r} is not an email address") from None
    return value


@principal_app.command("update")
def principal_update(
    principal_id: PrincipalIdArg,
    email: Annotated[
        str | None, typer.Option("--email", callback=_address, help="Where notifications go.")
    ] = None,
    no_email: Annotated[bool, typer.Option("--no-email", help="No email for this principal.")] = False,
    slack_user: SlackUserOption = None,
    no_slack_user: Annotated[
        bool, typer.Option("--no-slack-user", help="Unmap the principal's Slack member id.")
    ] = False,
    delivery: Annotated[
        Delivery | None,
        typer.Option("--delivery", help="Told at once (immediate) or in an hourly or daily digest."),
    ] = None,
    quiet_hours: Annotated[
        str | None,
        typer.Option("--quiet-hours", metavar="HH:MM-HH:MM", help="e.g. 22:00-07:00, in --timezone."),
    ] = None,
    no_quiet_hours: Annotated[bool, typer.Option("--no-quiet-hours", help="No quiet hours.")] = False,
    timezone: Annotated[
        str | None, typer.Option("--timezone", help="An IANA time zone, e.g. Europe/Berlin.")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Change a principal's email, Slack member id and delivery preferences (what is not given stays)."""
    for given, cleared, what in (
        (email, no_email, "--email"),
        (slack_user, no_slack_user, "--slack-user"),
        (quiet_hours, no_quiet_hours, "--quiet-hours"),
    ):
        if given is not None and cleared:
            raise typer.BadParameter(f"{what} and its --no- form contradict each other", param_hint=what)
    changing = (email, slack_user, delivery, quiet_hours, timezone)
    if all(v is None for v in changing) and not (no_email or no_slack_user or no_quiet_hours):
        raise typer.BadParameter("say what to change, e.g. --slack-user U0123ABCD or --delivery daily")
    # Checked before anything is opened: a bad value changes nothing and is not audited.
    if timezone is not None or quiet_hours is not None:
        _preferences(ChannelPreferences(), None, quiet_hours, False, timezone)
    settings = _settings(data_dir=data_dir)

    async def update(store: PrincipalStore, audit: AdminAudit) -> str | None:
        before = await store.record(principal_id)
        preferences = _preferences(before.preferences, delivery, quiet_hours, no_quiet_hours, timezone)
        try:
            await store.set_channels(
                principal_id,
                email=None if no_email else KEEP if email is None else email,
                slack_user_id=None if no_slack_user else KEEP if slack_user is None else slack_user,
                preferences=preferences,
            )
        except ValueError as error:  # a Slack member id another principal has (bad values are pydantic's)
            if isinstance(error, ValidationError):
                raise
            raise Invalid(str(error)) from None
        after = await store.record(principal_id)
        changes = _changes(before, after)
        if not changes:
            err.print(f"{principal_id} ({before.name}): nothing changed", markup=False)
            return None
        err.print(f"{principal_id} ({before.name}): {_describe(after)}", markup=False)
        return await audit_event(
            audit,
            after,
            "principal_channels_changed",
            f"channels of {principal_id} ({after.name}) changed: {', '.join(changes)}",
            changes,
        )

    exit_unaudited(run_audited(settings, update))


def _preferences(
    current: ChannelPreferences,
    delivery: Delivery | None,
    quiet_hours: str | None,
    no_quiet_hours: bool,
    timezone: str | None,
) -> ChannelPreferences:
    values = current.model_dump()
    if delivery is not None:
        values["delivery"] = delivery
    if quiet_hours is not None or no_quiet_hours:
        values["quiet_hours"] = quiet_hours
    if timezone is not None:
        values["timezone"] = timezone
    try:
        return check_preferences(ChannelPreferences.model_validate(values))
    except ValidationError as error:
        field = str(error.errors()[0]["loc"][0]) if error.errors()[0]["loc"] else "delivery"
        why = "quiet hours are HH:MM-HH:MM, e.g. 22:00-07:00" if field == "quiet_hours" else "not valid"
        raise typer.BadParameter(
            f"{values.get(field)!r}: {why}", param_hint=f"--{field.replace('_', '-')}"
        ) from None
    except Invalid as error:
        hint = "--quiet-hours" if error.code == "InvalidQuietHours" else "--timezone"
        raise typer.BadParameter(error.message, param_hint=hint) from None


def _changes(before: PrincipalRecord, after: PrincipalRecord) -> Data:
    """What changed, for the audit: the Slack mapping both ways (who could decide as whom), the email
    only as set or cleared (an address is personal data, and the audit log is kept forever)."""
    changes: Data = {}
    if before.email != after.email:
        changes["email"] = "set" if after.email else "cleared"
    if before.slack_user_id != after.slack_user_id:
        changes["slack_user_id_before"] = before.slack_user_id
        changes["slack_user_id"] = after.slack_user_id
    for name in ("delivery", "quiet_hours", "timezone"):
        old, new = getattr(before.preferences, name), getattr(after.preferences, name)
        if old != new:
            changes[name] = new
    return changes


def _describe(record: PrincipalRecord) -> str:
    return (
        f"email {record.email or '-'}, Slack user {record.slack_user_id or '-'}, "
        f"told {preferences_text(record.preferences)}"
    )

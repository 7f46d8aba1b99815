"""A principal's channels: its Slack member id and how it likes to be told (immediate or a digest,
quiet hours). Set by an administrator (`countersign principal add/update`) or, for preferences, by the
principal (`PUT /principals/me/channels`)."""

import sqlalchemy as sa
from pydantic import EmailStr, TypeAdapter
from sqlalchemy.exc import IntegrityError

from countersign.models.channels import ChannelPreferences
from countersign.models.principals import Principal, PrincipalChannels, SlackUserId
from countersign.store.principals.connection import PrincipalConnection
from countersign.store.principals.rows import preferences_of_row, principal_of_row
from countersign.store.principals.schema import principals

_p = principals.c
_slack_user = TypeAdapter(SlackUserId)
_email = TypeAdapter(EmailStr)
# Nothing to change: `set_channels` leaves the column as it is.
KEEP = object()


class PrincipalChannelSettings(PrincipalConnection):
    async def channels(self, principal_id: str) -> PrincipalChannels | None:
        row = await self._one(
            sa.select(_p.email, _p.slack_user_id, _p.delivery, _p.quiet_hours, _p.timezone).where(
                _p.id == principal_id
            )
        )
        if row is None:
            return None
        email, slack_user_id, delivery, quiet_hours, timezone = row
        return PrincipalChannels(
            email=email,
            slack_user_id=slack_user_id,
            preferences=preferences_of_row(delivery, quiet_hours, timezone),
        )

    async def set_channels(
        self,
        principal_id: str,
        *,
        email: str | object | None = KEEP,
        slack_user_id: str | object | None = KEEP,
        preferences: ChannelPreferences | None = None,
    ) -> bool:
        """Change what is given (None clears an address); False when there is no such principal.
        Raises pydantic's ValidationError for an address that is not one, and ValueError for a Slack
        member id another principal already has (a Slack user decides as one principal only: the
        database's unique index holds that against two administrators mapping it at once)."""
        changes: dict[str, str | None] = {}
        if email is not KEEP:
            changes["email"] = None if email is None else _email.validate_python(email)
        if slack_user_id is not KEEP:
            changes["slack_user_id"] = (
                None if slack_user_id is None else _slack_user.validate_python(slack_user_id)
            )
        if preferences is not None:
            changes["delivery"] = None if preferences.delivery == "immediate" else preferences.delivery
            changes["quiet_hours"] = preferences.quiet_hours
            changes["timezone"] = None if preferences.timezone == "UTC" else preferences.timezone
        if not changes:
            return await self._one(sa.select(_p.id).where(_p.id == principal_id)) is not None
        try:
            async with self._transaction() as conn:
                # Column names are the literal keys above, bound as values by SQLAlchemy.
                changed = await conn.execute(
                    sa.update(principals).where(_p.id == principal_id).values(changes)
                )
        except IntegrityError:
            raise ValueError(
                f"Slack user {changes.get('slack_user_id')} belongs to another principal"
            ) from None
        return changed.rowcount == 1

    async def by_slack_user(self, slack_user_id: str) -> Principal | None:
        """The enabled principal a Slack member id is mapped to, if any."""
        row = await self._one(
            sa.select(_p.id, _p.name, _p.roles, _p.tenant, _p.email).where(
                _p.slack_user_id == slack_user_id, _p.disabled_at.is_(None)
            )
        )
        return None if row is None else principal_of_row(row)

"""How the principal store writes values and reads rows back into the models."""

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from countersign.models.channels import ChannelPreferences
from countersign.models.enums import Role
from countersign.models.principals import (
    ApiKeyRecord,
    Delegation,
    KeyState,
    Principal,
    PrincipalRecord,
    Recipient,
)

API_KEY_SOURCE, JWT_SOURCE = "api-key", "jwt"


def instant_text(moment: datetime) -> str:
    """UTC, fixed width, so that the database compares instants as strings correctly."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no place here: pass an aware one")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def principal_of_row(row: Iterable[Any]) -> Principal | None:
    """None for a row no Principal can be made of: a tenant stored before its name was reserved."""
    id_, name, roles, tenant, _ = row
    try:
        return Principal(id=id_, name=name, roles=json.loads(roles), tenant=tenant)
    except ValidationError:
        return None


def preferences_of_row(
    delivery: str | None, quiet_hours: str | None, timezone: str | None
) -> ChannelPreferences:
    try:
        return ChannelPreferences.model_validate(
            {"delivery": delivery or "immediate", "quiet_hours": quiet_hours, "timezone": timezone or "UTC"}
        )
    except ValidationError:
        return ChannelPreferences()  # a row no current version wrote: told at once, as by default


def recipient_of_row(row: Iterable[Any]) -> Recipient | None:
    id_, name, roles, tenant, email, slack_user_id, delivery, quiet_hours, timezone = row
    try:
        return Recipient(
            id=id_,
            name=name,
            email=email,
            roles=json.loads(roles),
            tenant=tenant,
            slack_user_id=slack_user_id,
            preferences=preferences_of_row(delivery, quiet_hours, timezone),
        )
    except ValidationError:
        return None


def delegation_of_row(row: Iterable[Any]) -> Delegation:
    delegator_id, delegate_id, tenant, starts_at, ends_at, reason, created_at = row
    return Delegation(
        delegator_id=delegator_id,
        delegate_id=delegate_id,
        tenant=tenant,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        created_at=created_at,
    )


def key_record_of_row(row: Iterable[Any], now: datetime) -> ApiKeyRecord:
    _, prefix, created_at, expires_at, revoked_at = row
    expires, revoked = parse_moment(expires_at), parse_moment(revoked_at)
    state: KeyState
    if revoked is not None:
        state = "revoked"
    elif expires is None:
        state = "active"
    else:
        state = "grace" if expires > now else "expired"
    created = parse_moment(created_at)
    assert created is not None  # NOT NULL
    return ApiKeyRecord(
        prefix=prefix, created_at=created, expires_at=expires, revoked_at=revoked, state=state
    )


def record_of_row(row: Iterable[Any], keys: list[ApiKeyRecord]) -> PrincipalRecord:
    id_, name, roles, tenant, email, source, created_at, disabled_at, slack_user_id, *preferences = row
    return PrincipalRecord(
        id=id_,
        name=name,
        tenant=tenant,
        roles=json.loads(roles),
        email=email,
        source=source,
        created_at=parse_moment(created_at),
        disabled_at=parse_moment(disabled_at),
        keys=keys,
        slack_user_id=slack_user_id,
        preferences=preferences_of_row(*preferences),
    )


def roles_text(roles: Iterable[Role]) -> str:
    return json.dumps(sorted(set(roles)))

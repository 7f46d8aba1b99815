"""API-key principals: adding one with its first key, and signing in with a key.

Keys are stored as SHA-256 digests. API keys are 256-bit random tokens, so a plain digest is enough:
there is nothing to brute-force that a slow hash would protect, and lookups stay one indexed read.
"""

import hashlib
import secrets

import sqlalchemy as sa
from pydantic import EmailStr, TypeAdapter
from sqlalchemy.exc import IntegrityError

from countersign.models.enums import Role
from countersign.models.errors import Conflict
from countersign.models.principals import NewPrincipal, Principal, SlackUserId, is_reserved_tenant
from countersign.store.principals.connection import PrincipalConnection
from countersign.store.principals.rows import API_KEY_SOURCE, instant_text, principal_of_row, roles_text
from countersign.store.principals.schema import api_keys, principals

_p, _k = principals.c, api_keys.c
_email = TypeAdapter(EmailStr)
_slack_user = TypeAdapter(SlackUserId)
# `cs_` and 7 characters of the key's 43: 42 of its 256 bits, enough to tell a principal's keys apart
# and far too few to help guess the rest.
PREFIX_LENGTH = 10


class PrincipalExists(Conflict):
    """A principal of that id is on file already (in any tenant)."""

    code = "PrincipalExists"


def key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    api_key = f"cs_{secrets.token_urlsafe(32)}"
    return api_key, api_key[:PREFIX_LENGTH]


def add_key(api_key: str, principal_id: str, prefix: str, created_at: str) -> sa.Insert:
    return sa.insert(api_keys).values(
        key_hash=key_digest(api_key), principal_id=principal_id, prefix=prefix, created_at=created_at
    )


def working(now: str) -> sa.ColumnElement[bool]:
    """A key that works at `now` (instant text): neither revoked nor past its grace period."""
    return sa.and_(_k.revoked_at.is_(None), sa.or_(_k.expires_at.is_(None), _k.expires_at > now))


class ApiKeyPrincipals(PrincipalConnection):
    """Principals made by `countersign principal add` (or `POST /principals`), who sign in with a key."""

    async def add(
        self,
        name: str,
        roles: list[Role],
        tenant: str = "default",
        email: str | None = None,
        slack_user_id: str | None = None,
        *,
        principal_id: str | None = None,
    ) -> NewPrincipal:
        """A new principal with its first key; its id is `principal_id`, or a new `p-<hex>` one.

        Raises pydantic's ValidationError for a bad id, name, tenant (a reserved one too), email or
        Slack member id; PrincipalExists for an id on file already; and ValueError for a Slack member id
        another principal has. Either way nothing is added: the database's constraints decide, so two
        gateways adding the same id (or mapping the same Slack user) at once cannot both succeed."""
        principal = Principal(
            id=principal_id or f"p-{secrets.token_hex(5)}", name=name, roles=sorted(set(roles)), tenant=tenant
        )
        address = None if email is None else _email.validate_python(email)
        slack = None if slack_user_id is None else _slack_user.validate_python(slack_user_id)
        api_key, prefix = new_key()
        now = instant_text(self._now())
        row = {
            "id": principal.id,
            "name": name,
            "roles": roles_text(principal.roles),
            "tenant": tenant,
            "email": address,
            "source": API_KEY_SOURCE,
            "created_at": now,
            "slack_user_id": slack,
        }
        try:
            async with self._transaction() as conn:
                await conn.execute(sa.insert(principals).values(row))
                await conn.execute(add_key(api_key, principal.id, prefix, now))
        except IntegrityError:
            if await self._one(sa.select(_p.id).where(_p.id == principal.id)) is not None:
                raise PrincipalExists(f"a principal {principal.id} exists already") from None
            if slack is not None and await self._one(sa.select(_p.id).where(_p.slack_user_id == slack)):
                raise ValueError(f"Slack user {slack} belongs to another principal") from None
            raise
        return NewPrincipal(principal=principal, api_key=api_key)

    async def authenticate(self, api_key: str) -> Principal | None:
        """The principal of a working key: not revoked, not past its grace, its principal not disabled.

        One indexed read. A key made before prefixes were kept gets its prefix on its first use here:
        the only time the store sees the key itself.
        """
        digest = key_digest(api_key)
        row = await self._one(
            sa.select(_p.id, _p.name, _p.roles, _p.tenant, _p.email, _k.prefix)
            .select_from(api_keys.join(principals, _p.id == _k.principal_id))
            .where(_k.key_hash == digest, working(instant_text(self._now())), _p.disabled_at.is_(None))
        )
        if row is None:
            return None
        if row.prefix is None:
            async with self._transaction() as conn:
                await conn.execute(
                    sa.update(api_keys)
                    .where(_k.key_hash == digest, _k.prefix.is_(None))
                    .values(prefix=api_key[:PREFIX_LENGTH])
                )
        return principal_of_row(row[:5])

    async def key_problem(self, api_key: str) -> str:
        """Why `authenticate` refused this key, fit to show to its bearer (who holds the key already)."""
        row = await self._one(
            sa.select(_k.revoked_at, _k.expires_at, _p.disabled_at, _p.tenant)
            .select_from(api_keys.outerjoin(principals, _p.id == _k.principal_id))
            .where(_k.key_hash == key_digest(api_key))
        )
        if row is None:
            return "a valid API key is required: Authorization: Bearer <key>"
        revoked_at, expires_at, disabled_at, tenant = row
        if revoked_at is not None:
            return "this API key has been revoked"
        if expires_at is not None and expires_at <= instant_text(self._now()):
            return "this API key has expired: it was replaced by a newer key"
        if disabled_at is not None:
            return "this API key's principal is disabled"
        if tenant is not None and is_reserved_tenant(tenant):
            return f"this API key's principal has the reserved tenant {tenant!r} and cannot sign in"
        return "a valid API key is required: Authorization: Bearer <key>"

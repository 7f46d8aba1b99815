"""API-key principals: adding one with its first key, and signing in with a key.

Keys are stored as SHA-256 digests. API keys are 256-bit random tokens, so a plain digest is enough:
there is nothing to brute-force that a slow hash would protect, and lookups stay one indexed read.
"""

import hashlib
import secrets

from pydantic import EmailStr, TypeAdapter

from countersign.models.enums import Role
from countersign.models.principals import NewPrincipal, Principal, SlackUserId, is_reserved_tenant
from countersign.store.principals.connection import PrincipalConnection
from countersign.store.principals.rows import API_KEY_SOURCE, instant_text, principal_of_row, roles_text

# Literal statements only: nothing from outside is ever spliced into SQL.
_PRINCIPAL_BY_KEY = (
    "SELECT p.id, p.name, p.roles, p.tenant, p.email, k.prefix "
    "FROM api_keys k JOIN principals p ON p.id = k.principal_id "
    "WHERE k.key_hash = ? AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > ?) "
    "AND p.disabled_at IS NULL"
)
_KEY_BY_DIGEST = (
    "SELECT k.revoked_at, k.expires_at, p.disabled_at, p.tenant "
    "FROM api_keys k LEFT JOIN principals p ON p.id = k.principal_id WHERE k.key_hash = ?"
)
ADD_KEY = "INSERT INTO api_keys (key_hash, principal_id, prefix, created_at) VALUES (?, ?, ?, ?)"
_email = TypeAdapter(EmailStr)
_slack_user = TypeAdapter(SlackUserId)
# `cs_` and 7 characters of the key's 43: 42 of its 256 bits, enough to tell a principal's keys apart
# and far too few to help guess the rest.
PREFIX_LENGTH = 10


def key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    api_key = f"cs_{secrets.token_urlsafe(32)}"
    return api_key, api_key[:PREFIX_LENGTH]


class ApiKeyPrincipals(PrincipalConnection):
    """Principals made by `countersign principal add`, who sign in with a key."""

    async def add(
        self,
        name: str,
        roles: list[Role],
        tenant: str = "default",
        email: str | None = None,
        slack_user_id: str | None = None,
    ) -> NewPrincipal:
        """Raises pydantic's ValidationError for a bad name, tenant (a reserved one too), email or Slack
        member id, and ValueError for a Slack member id another principal has (nothing is added)."""
        principal = Principal(
            id=f"p-{secrets.token_hex(5)}", name=name, roles=sorted(set(roles)), tenant=tenant
        )
        address = None if email is None else _email.validate_python(email)
        slack = None if slack_user_id is None else _slack_user.validate_python(slack_user_id)
        api_key, prefix = new_key()
        now = instant_text(self._now())
        async with self._transaction():
            if slack is not None:
                cursor = await self._db.execute("SELECT 1 FROM principals WHERE slack_user_id = ?", (slack,))
                if await cursor.fetchone() is not None:
                    raise ValueError(f"Slack user {slack} belongs to another principal")
            await self._db.execute(
                "INSERT INTO principals (id, name, roles, tenant, email, source, created_at, slack_user_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    principal.id,
                    name,
                    roles_text(principal.roles),
                    tenant,
                    address,
                    API_KEY_SOURCE,
                    now,
                    slack,
                ),
            )
            await self._db.execute(ADD_KEY, (key_digest(api_key), principal.id, prefix, now))
        return NewPrincipal(principal=principal, api_key=api_key)

    async def authenticate(self, api_key: str) -> Principal | None:
        """The principal of a working key: not revoked, not past its grace, its principal not disabled.

        One indexed read. A key made before prefixes were kept gets its prefix on its first use here:
        the only time the store sees the key itself.
        """
        digest = key_digest(api_key)
        row = await self._one(_PRINCIPAL_BY_KEY, digest, instant_text(self._now()))
        if row is None:
            return None
        if row[5] is None:
            async with self._transaction():
                await self._db.execute(
                    "UPDATE api_keys SET prefix = ? WHERE key_hash = ? AND prefix IS NULL",
                    (api_key[:PREFIX_LENGTH], digest),
                )
        return principal_of_row(row[:5])

    async def key_problem(self, api_key: str) -> str:
        """Why `authenticate` refused this key, fit to show to its bearer (who holds the key already)."""
        row = await self._one(_KEY_BY_DIGEST, key_digest(api_key))
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

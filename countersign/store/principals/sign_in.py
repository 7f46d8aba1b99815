"""Token principals: recording a JWT's subject on its first request, and keeping it current.

Principals who sign in with a JWT (api/tokens.py) are recorded here so they have an email on file,
receive notifications, and can delegate and be delegated to like anyone else. They have no API key:
their roles and tenant are the identity provider's to say, and are as of their latest request.
"""

import json

from countersign.models.errors import CountersignError
from countersign.models.principals import Principal
from countersign.store.principals.connection import PrincipalConnection
from countersign.store.principals.rows import JWT_SOURCE, instant_text, roles_text

_SIGN_IN = "SELECT name, roles, tenant, email, source, disabled_at FROM principals WHERE id = ?"


class SignInRefused(CountersignError):
    """Why a token's subject may not sign in, fit to show to its bearer."""


class TokenPrincipals(PrincipalConnection):
    """Principals whose identity provider vouches for them with a JWT."""

    async def sign_in(self, principal: Principal, email: str | None) -> None:
        """Record a token's principal: inserted on its first request, updated when its name, roles,
        tenant or email changed, untouched (one indexed read, no write) otherwise.

        Raises SignInRefused when the principal is disabled, or when its id is an API-key principal's:
        a token never takes over a principal `countersign principal add` made, in any tenant.
        """
        row = await self._one(_SIGN_IN, principal.id)
        if row is None:
            async with self._transaction():
                cursor = await self._db.execute(
                    "INSERT INTO principals (id, name, roles, tenant, email, source, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    (
                        principal.id,
                        principal.name,
                        roles_text(principal.roles),
                        principal.tenant,
                        email,
                        JWT_SOURCE,
                        instant_text(self._now()),
                    ),
                )
            if cursor.rowcount == 1:
                return
            row = await self._one(_SIGN_IN, principal.id)  # another request recorded it just now
            if row is None:
                raise SignInRefused(f"principal {principal.id} could not be recorded; try again")
        name, roles, tenant, stored_email, source, disabled_at = row
        if source != JWT_SOURCE:
            if tenant != principal.tenant:
                raise SignInRefused(
                    "token claim 'sub' names a principal of another tenant; it cannot sign in here"
                )
            raise SignInRefused("token claim 'sub' names a principal that signs in with an API key")
        if disabled_at is not None:
            raise SignInRefused(f"principal {principal.id} is disabled")
        stored = (name, sorted(json.loads(roles)), tenant, stored_email)
        if stored == (principal.name, sorted(principal.roles), principal.tenant, email):
            return
        async with self._transaction():
            await self._db.execute(
                "UPDATE principals SET name = ?, roles = ?, tenant = ?, email = ? "
                "WHERE id = ? AND source = ? AND disabled_at IS NULL",
                (
                    principal.name,
                    roles_text(principal.roles),
                    principal.tenant,
                    email,
                    principal.id,
                    JWT_SOURCE,
                ),
            )

"""Token principals: recording a JWT's subject on its first request, and keeping it current.

Principals who sign in with a JWT (api/tokens.py) are recorded here so they have an email on file,
receive notifications, and can delegate and be delegated to like anyone else. They have no API key:
their roles and tenant are the identity provider's to say, and are as of their latest request.
"""

import json

import sqlalchemy as sa

from countersign.models.errors import CountersignError
from countersign.models.principals import Principal
from countersign.store.principals.connection import PrincipalConnection
from countersign.store.principals.rows import JWT_SOURCE, instant_text, roles_text
from countersign.store.principals.schema import principals

_p = principals.c
_SIGN_IN = sa.select(_p.name, _p.roles, _p.tenant, _p.email, _p.source, _p.disabled_at)


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
        row = await self._one(_SIGN_IN.where(_p.id == principal.id))
        if row is None:
            # Two first requests at once (on two gateways, say): the primary key lets one insert.
            insert = self._insert(principals).values(
                id=principal.id,
                name=principal.name,
                roles=roles_text(principal.roles),
                tenant=principal.tenant,
                email=email,
                source=JWT_SOURCE,
                created_at=instant_text(self._now()),
            )
            async with self._transaction() as conn:
                inserted = await conn.execute(insert.on_conflict_do_nothing(index_elements=[_p.id]))
            if inserted.rowcount == 1:
                return
            row = await self._one(_SIGN_IN.where(_p.id == principal.id))  # the other one recorded it
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
        async with self._transaction() as conn:
            await conn.execute(
                sa.update(principals)
                .where(_p.id == principal.id, _p.source == JWT_SOURCE, _p.disabled_at.is_(None))
                .values(
                    name=principal.name,
                    roles=roles_text(principal.roles),
                    tenant=principal.tenant,
                    email=email,
                )
            )

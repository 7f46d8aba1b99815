"""Principals, their API keys and their out-of-office delegations, kept in Countersign's one SQL
database (settings.database_url), so that every gateway and worker, on any host, sees the same ones.

A principal made by `countersign principal add` has API keys in a table of their own (`api_keys`):
several at once during a rotation's grace period, each with when it was made, when it stops working
(`expires_at`, set by a rotation with a grace period) and when it was revoked, and its first few
characters (`prefix`) so that an administrator can tell keys apart without ever seeing one. Revoked and
expired rows stay, for history. A disabled principal signs in neither with a key nor with a token.

Principals who sign in with a JWT (api/tokens.py) are recorded on their first request (`sign_in`).

The store is one class made of its parts, each a module of its own: `schema` (the tables, in `metadata`),
`api_keys`, `sign_in` (token principals), `administration`, `reading`, `delegation` and `channels`, all on one
engine (`connection`). This module is its public face. A `principals.db` file of an earlier release is
imported by store/legacy/principals_file.py.
"""

from countersign.store.principals.administration import PrincipalAdministration
from countersign.store.principals.api_keys import PREFIX_LENGTH, ApiKeyPrincipals, PrincipalExists
from countersign.store.principals.channels import KEEP, PrincipalChannelSettings
from countersign.store.principals.connection import Clock
from countersign.store.principals.delegation import Delegations
from countersign.store.principals.rows import API_KEY_SOURCE, JWT_SOURCE
from countersign.store.principals.sign_in import SignInRefused, TokenPrincipals

__all__ = [
    "API_KEY_SOURCE",
    "JWT_SOURCE",
    "KEEP",
    "PREFIX_LENGTH",
    "Clock",
    "PrincipalExists",
    "PrincipalStore",
    "SignInRefused",
]


class PrincipalStore(
    ApiKeyPrincipals, TokenPrincipals, PrincipalAdministration, Delegations, PrincipalChannelSettings
):
    """The principal store: API keys, token sign-in, administration, reading and delegation."""

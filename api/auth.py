"""Bearer API-key authentication: every route but /healthz and /docs depends on `current_principal`."""

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from countersign.principals import PrincipalStore
from models.principals import Principal

_bearer = HTTPBearer(auto_error=False, description="An API key from `countersign principal add`")


def _store(request: Request) -> PrincipalStore:
    store: PrincipalStore = request.app.state.principals
    return store


async def current_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    store: Annotated[PrincipalStore, Depends(_store)],
) -> Principal:
    unauthorized = HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="a valid API key is required: Authorization: Bearer <key>",
        headers={"WWW-Authenticate": "Bearer"},
    )
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized
    principal = await store.authenticate(credentials.credentials)
    if principal is None:
        raise unauthorized
    return principal

"""Bearer authentication: every route but /healthz and /docs depends on `current_principal`.

The credential is a JWT when it has a JWT's shape and `jwt_algorithm` is set (countersign/tokens.py
verifies it), an API key from `countersign principal add` otherwise.
"""

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from countersign.principals import PrincipalStore
from countersign.settings import Settings
from countersign.tokens import TokenRejected, TokenVerifier, looks_like_jwt
from models.principals import Principal

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `countersign principal add`, or a JWT when COUNTERSIGN_JWT_ALGORITHM is set",
)


def _store(request: Request) -> PrincipalStore:
    store: PrincipalStore = request.app.state.principals
    return store


def _tokens(request: Request) -> TokenVerifier | None:
    """Built on first use from `app.state.settings`, then kept; no settings there means API keys only."""
    state = request.app.state
    if not hasattr(state, "tokens"):
        settings: Settings | None = getattr(state, "settings", None)
        state.tokens = TokenVerifier.from_settings(settings) if settings else None
    tokens: TokenVerifier | None = state.tokens
    return tokens


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def current_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    store: Annotated[PrincipalStore, Depends(_store)],
    tokens: Annotated[TokenVerifier | None, Depends(_tokens)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("a valid API key or token is required: Authorization: Bearer <credential>")
    credential = credentials.credentials
    if tokens is not None and looks_like_jwt(credential):
        try:
            return tokens.verify(credential)
        except TokenRejected as rejected:
            raise _unauthorized(str(rejected)) from None
    principal = await store.authenticate(credential)
    if principal is None:
        raise _unauthorized("a valid API key is required: Authorization: Bearer <key>")
    return principal

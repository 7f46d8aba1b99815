"""Bearer authentication: every route but /healthz and /docs depends on `current_principal`.

The credential is a JWT when it has a JWT's shape and `jwt_algorithm` is set (api/tokens.py
verifies it), an API key from `countersign principal add` otherwise. Either way the principal store has
the last word: a token's principal is recorded there (or refused, when disabled or when its `sub` is an
API-key principal's), and a key must be neither revoked, past its grace period, nor a disabled
principal's.
"""

import asyncio
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, WebSocket, WebSocketDisconnect, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from countersign.api.tokens import TokenRejected, TokenVerifier, looks_like_jwt
from countersign.config.settings import Settings
from countersign.models.principals import Principal
from countersign.store.principals import PrincipalStore, SignInRefused

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `countersign principal add`, or a JWT when COUNTERSIGN_JWT_ALGORITHM is set",
)


async def _store(request: Request) -> PrincipalStore:
    store: PrincipalStore = request.app.state.principals
    return store


def token_verifier(state: Any) -> TokenVerifier | None:
    """Built on first use from `app.state.settings`, then kept; no settings there means API keys only."""
    if not hasattr(state, "tokens"):
        settings: Settings | None = getattr(state, "settings", None)
        state.tokens = TokenVerifier.from_settings(settings) if settings else None
    tokens: TokenVerifier | None = state.tokens
    return tokens


# Dependencies are `async def`: FastAPI runs a plain `def` one in its thread pool, a thread hop per
# request each (a third of the gateway's CPU per lifecycle in the benchmark, py-spy).
async def _tokens(request: Request) -> TokenVerifier | None:
    return token_verifier(request.app.state)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def current_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    store: Annotated[PrincipalStore, Depends(_store)],
    tokens: Annotated[TokenVerifier | None, Depends(_tokens)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("a valid API key or token is required: Authorization: Bearer <credential>")
    principal, problem = await principal_for(credentials.credentials, store, tokens)
    if principal is None:
        raise _unauthorized(problem)
    return principal


async def principal_for(
    credential: str, store: PrincipalStore, tokens: TokenVerifier | None
) -> tuple[Principal | None, str]:
    """The principal a credential (API key or JWT) stands for, or None and why not."""
    if tokens is not None and looks_like_jwt(credential):
        try:
            verified = tokens.verify(credential)
            # One indexed read per request; a write only on the first, or when the token says something
            # new (its roles, name, tenant or email), so notifications and delegations see the same.
            await store.sign_in(verified.principal, verified.email)
        except (TokenRejected, SignInRefused) as rejected:
            return None, str(rejected)
        return verified.principal, ""
    principal = await store.authenticate(credential)
    if principal is None:
        # A second read, on refusals only: a revoked or expired key is told so.
        return None, await store.key_problem(credential)
    return principal, ""


async def websocket_principal(websocket: WebSocket) -> Principal | None:
    """Accept the socket and return its principal: from its `Authorization: Bearer` header, or (browsers
    cannot set that header) from a first message `{"authorization": "Bearer <credential>"}` sent within
    10 seconds. Credentials never travel in the URL, where proxies and logs would keep them."""
    store: PrincipalStore = websocket.app.state.principals
    tokens = token_verifier(websocket.app.state)
    await websocket.accept()
    header = websocket.headers.get("authorization", "")
    if not header:
        try:
            first = await asyncio.wait_for(websocket.receive_json(), timeout=10)
        except (TimeoutError, ValueError, KeyError, WebSocketDisconnect):
            return None
        header = str(first.get("authorization", "")) if isinstance(first, dict) else ""
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    principal, _ = await principal_for(credential.strip(), store, tokens)
    return principal

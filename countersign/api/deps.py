"""Annotated dependencies shared by the routes, and the refusals each route documents in the OpenAPI."""

from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, status
from pydantic import BaseModel
from temporalio.client import Client

from countersign.api.auth import current_principal
from countersign.api.services.approvals import ApprovalService
from countersign.api.services.audit_log import AuditLog
from countersign.api.services.declared_tools import DeclaredToolService
from countersign.api.services.graph_runs import GraphService
from countersign.api.services.principal_admin import PrincipalAdminService
from countersign.models.channels import CLAIMABLE_CHANNELS, DecisionChannel
from countersign.models.principals import Principal
from countersign.store.principals import PrincipalStore


# `async def`, not `def`: FastAPI runs plain functions in its thread pool, one hop per request each.
async def _client(request: Request) -> Client:
    client: Client = request.app.state.client
    return client


async def _service(request: Request) -> ApprovalService:
    service: ApprovalService = request.app.state.service
    return service


async def _graphs(request: Request) -> GraphService:
    service: GraphService = request.app.state.graphs
    return service


async def _principals(request: Request) -> PrincipalStore:
    store: PrincipalStore = request.app.state.principals
    return store


async def _audit(request: Request) -> AuditLog:
    audit: AuditLog = request.app.state.audit
    return audit


async def _declared_tools(request: Request) -> DeclaredToolService:
    service: DeclaredToolService = request.app.state.declared_tools
    return service


async def _principal_admin(request: Request) -> PrincipalAdminService:
    service: PrincipalAdminService = request.app.state.principal_admin
    return service


async def _channel(
    x_countersign_channel: Annotated[
        str | None,
        Header(
            description="Where the caller decides from: `api` (the default), `inbox` (the keyboard inbox), "
            "or `teams` (the inbox, opened from a Teams card)."
        ),
    ] = None,
) -> DecisionChannel:
    """The channel a decision is audited with. A client may say `api`, `inbox` or `teams` (the inbox,
    opened from a Teams card's button): where, never who. The others are set by the gateway's own
    handlers (email links and replies, Slack), never claimed."""
    if x_countersign_channel is None:
        return DecisionChannel.API
    try:
        channel = DecisionChannel(x_countersign_channel.strip().lower())
    except ValueError:
        channel = None
    if channel not in CLAIMABLE_CHANNELS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail="X-Countersign-Channel must be `api`, `inbox` or `teams`",
        )
    assert channel is not None
    return channel


ClientDep = Annotated[Client, Depends(_client)]
ChannelDep = Annotated[DecisionChannel, Depends(_channel)]
ServiceDep = Annotated[ApprovalService, Depends(_service)]
GraphServiceDep = Annotated[GraphService, Depends(_graphs)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]
PrincipalStoreDep = Annotated[PrincipalStore, Depends(_principals)]
AuditLogDep = Annotated[AuditLog, Depends(_audit)]
DeclaredToolsDep = Annotated[DeclaredToolService, Depends(_declared_tools)]
PrincipalAdminDep = Annotated[PrincipalAdminService, Depends(_principal_admin)]


class ErrorBody(BaseModel):
    """A refusal: why, and for the service's refusals a stable machine-readable code."""

    detail: str
    code: str | None = None


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    """A malformed request: one entry per field that is wrong."""

    detail: list[FieldError]


_WHY = {
    400: "The body is not JSON: not UTF-8, a syntax error, NaN, Infinity or a lone surrogate, or a "
    "Content-Type that is not JSON (detail: a message, or field errors of type json_invalid)",
    401: "No credential, or not a valid API key or token",
    403: "The caller may not do this: a role they lack, or their own request",
    404: "No such resource for the caller (another tenant's answers the same)",
    409: "Not in a state that allows this: finished, already decided, a stale version",
    413: "The request body is larger than the gateway accepts",
    422: "JSON that does not fit the request (field errors, nesting past 64 levels) or a request the "
    "service refuses (detail and code)",
    429: "Too many failed authentications from this address or with this credential; see Retry-After",
    503: "Temporal cannot be reached",
}


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that may answer these error statuses."""
    return {
        code: {
            "model": ErrorBody | ValidationErrorBody if code in (400, 422) else ErrorBody,
            "description": _WHY[code],
        }
        for code in codes
    }


# The usual sets: any authenticated route; one that reads a JSON body too.
AUTHENTICATED = (401, 422, 429)
WITH_BODY = (400, 401, 413, 422, 429)

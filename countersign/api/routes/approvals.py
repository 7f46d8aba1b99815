from typing import Annotated

from fastapi import APIRouter, Query

from countersign.api.deps import AUTHENTICATED, WITH_BODY, ChannelDep, PrincipalDep, ServiceDep, refusals
from countersign.models.decisions import BatchRequest, BatchResponse
from countersign.models.views import InboxFilter, WorkflowList

router = APIRouter(prefix="/approvals", tags=["approvals"])


@router.get(
    "/inbox",
    summary="What the caller may decide now, earliest SLA first",
    responses=refusals(*AUTHENTICATED),
)
async def inbox(
    principal: PrincipalDep,
    service: ServiceDep,
    filters: Annotated[InboxFilter, Query()],
) -> WorkflowList:
    return WorkflowList(items=await service.inbox(principal, filters))


@router.post(
    "/batch",
    summary="One decision on up to 100 proposals, each named with its version",
    responses=refusals(*WITH_BODY),
)
async def batch(
    body: BatchRequest, principal: PrincipalDep, service: ServiceDep, channel: ChannelDep
) -> BatchResponse:
    return await service.batch(principal, body, channel)


dead_letters_router = APIRouter(tags=["workflows"])


@dead_letters_router.get(
    "/dead-letters",
    summary="Failed workflows an ADMIN may retry, in the caller's tenant",
    responses=refusals(*AUTHENTICATED),
)
async def dead_letters(
    principal: PrincipalDep, service: ServiceDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> WorkflowList:
    return WorkflowList(items=await service.dead_letters(principal, limit=limit))

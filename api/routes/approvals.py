from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import PrincipalDep, ServiceDep
from models.decisions import BatchRequest, BatchResponse
from models.views import InboxFilter, WorkflowList

router = APIRouter(prefix="/approvals", tags=["approvals"])


@router.get("/inbox", summary="What the caller may decide now, earliest SLA first")
async def inbox(
    principal: PrincipalDep,
    service: ServiceDep,
    filters: Annotated[InboxFilter, Query()],
) -> WorkflowList:
    return WorkflowList(items=await service.inbox(principal, filters))


@router.post("/batch", summary="One decision on up to 100 proposals, each named with its version")
async def batch(body: BatchRequest, principal: PrincipalDep, service: ServiceDep) -> BatchResponse:
    return await service.batch(principal, body)

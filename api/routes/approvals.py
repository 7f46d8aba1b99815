from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import PrincipalDep, ServiceDep
from models.views import WorkflowList

router = APIRouter(prefix="/approvals", tags=["approvals"])


@router.get("/inbox", summary="Workflows waiting on one of the caller's roles, not their own")
async def inbox(
    principal: PrincipalDep,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> WorkflowList:
    return WorkflowList(items=await service.inbox(principal, limit=limit))

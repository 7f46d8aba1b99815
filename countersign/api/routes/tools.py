from fastapi import APIRouter, Request

from countersign.api.deps import PrincipalDep, refusals
from countersign.models.tools import ToolList
from countersign.tools.registry import ToolRegistry

router = APIRouter(prefix="/tools", tags=["tools"], responses=refusals(401))


@router.get("", summary="Every tool the planner may propose: args and result schemas, side effect, risk")
async def list_tools(_: PrincipalDep, request: Request) -> ToolList:
    registry: ToolRegistry = request.app.state.registry
    return ToolList(items=registry.specs())

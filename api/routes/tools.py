from fastapi import APIRouter, Request

from api.deps import PrincipalDep, refusals
from models.tools import ToolList
from tools.registry import ToolRegistry

router = APIRouter(prefix="/tools", tags=["tools"], responses=refusals(401))


@router.get("", summary="Every tool the planner may propose: args and result schemas, side effect, risk")
async def list_tools(_: PrincipalDep, request: Request) -> ToolList:
    registry: ToolRegistry = request.app.state.registry
    return ToolList(items=registry.specs())

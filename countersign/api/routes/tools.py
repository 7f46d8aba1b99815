"""`/tools`: the registered tools and the tools a tenant declared (api/services/declared_tools.py)."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from countersign.api.deps import WITH_BODY, DeclaredToolsDep, PrincipalDep, refusals
from countersign.models.declared_tools import MAX_VERSION, NAME_PATTERN, DeclareToolRequest
from countersign.models.tools import ToolList, ToolSpec

router = APIRouter(prefix="/tools", tags=["tools"], responses=refusals(401))

ToolName = Annotated[str, Path(pattern=NAME_PATTERN)]


@router.get(
    "",
    summary="Every tool a request may propose: the registered ones (execution: countersign) and the "
    "latest version of each the caller's tenant declared (execution: caller)",
)
async def list_tools(principal: PrincipalDep, tools: DeclaredToolsDep) -> ToolList:
    return ToolList(items=await tools.specs(principal))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Declare a tool the caller executes after approval (ADMIN); declaring a name again makes "
    "its next version",
    responses=refusals(*WITH_BODY, 403),
)
async def declare_tool(
    principal: PrincipalDep, body: DeclareToolRequest, tools: DeclaredToolsDep
) -> ToolSpec:
    return await tools.declare(principal, body)


@router.get(
    "/{name}",
    summary="One tool: a registered one, or the tenant's declared one (its latest version, or `?version=N`)",
    responses=refusals(401, 404, 422),
)
async def get_tool(
    principal: PrincipalDep,
    name: ToolName,
    tools: DeclaredToolsDep,
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
) -> ToolSpec:
    return await tools.one(principal, name, version)

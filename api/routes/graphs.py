"""Graph workflows: seed 003's and seed 004's routes, kept (`/graph/create`, `/graph/run`,
`/graph/state/{run_id}`, `/ws/{run_id}`, `/ws-test/{run_id}`), plus `/graphs` and approval decisions."""

from pathlib import Path as FilePath
from typing import Annotated

from fastapi import (
    APIRouter,
    Depends,
    HTTPException,
    Path,
    Query,
    Request,
    WebSocket,
    WebSocketDisconnect,
    status,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from api.auth import websocket_principal
from api.deps import GraphServiceDep, PrincipalDep
from countersign.errors import CountersignError
from countersign.graph_runs import GraphService
from graphs.validation import parse_definition
from models.decisions import ApproveRequest
from models.graph import (
    GRAPH_ID_PATTERN,
    GraphDefinition,
    GraphList,
    GraphRecord,
    GraphRunView,
    RunGraphRequest,
    RunStarted,
)

router = APIRouter(tags=["graphs"])

GraphId = Annotated[str, Path(pattern=GRAPH_ID_PATTERN)]
RunId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")]
_WS_TEST_PAGE = FilePath(__file__).parent.parent / "static" / "ws-test.html"
# WebSocket close codes: 1008 policy violation (no or bad credential), 4404 no such run for this caller.
_WS_UNAUTHORIZED, _WS_NOT_FOUND = 1008, 4404


_DEFINITION_BODY = {
    "required": True,
    "content": {
        media: {"schema": {"$ref": "#/components/schemas/GraphDefinition"}}
        for media in ("application/json", "application/yaml")
    },
}


async def _definition(request: Request) -> GraphDefinition:
    """The body as a definition: JSON, or YAML when the Content-Type says so."""
    text = (await request.body()).decode("utf-8", errors="replace")
    try:
        if "yaml" in request.headers.get("content-type", ""):
            return parse_definition(text)
        return GraphDefinition.model_validate_json(text)
    except ValidationError as error:
        raise RequestValidationError(error.errors(include_url=False)) from None
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None


@router.post(
    "/graph/create",
    status_code=status.HTTP_201_CREATED,
    summary="Store a graph definition, JSON or YAML (ADMIN); each create of an id is a new version",
    openapi_extra={"requestBody": _DEFINITION_BODY},
)
@router.post("/graphs", status_code=status.HTTP_201_CREATED, include_in_schema=False)
async def create_graph(
    principal: PrincipalDep,
    definition: Annotated[GraphDefinition, Depends(_definition)],
    service: GraphServiceDep,
) -> GraphRecord:
    # The principal comes first: an unauthenticated caller learns nothing about the body.
    return await service.create(principal, definition)


@router.get("/graphs", summary="The latest version of every graph the caller's tenant can run")
async def list_graphs(principal: PrincipalDep, service: GraphServiceDep) -> GraphList:
    return GraphList(items=await service.graphs(principal))


@router.get("/graph/{graph_id}", summary="A graph definition: the latest version, or `?version=N`")
async def get_graph(
    graph_id: GraphId,
    principal: PrincipalDep,
    service: GraphServiceDep,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> GraphRecord:
    return await service.get(principal, graph_id, version)


@router.post(
    "/graph/run", status_code=status.HTTP_202_ACCEPTED, summary="Start a run; returns its run_id at once"
)
async def run_graph(body: RunGraphRequest, principal: PrincipalDep, service: GraphServiceDep) -> RunStarted:
    return await service.run(principal, body)


@router.get("/graph/state/{run_id}", summary="A run's status, current node, logs and data (seed 003)")
async def graph_state(run_id: RunId, principal: PrincipalDep, service: GraphServiceDep) -> GraphRunView:
    return await service.state(principal, run_id)


@router.post("/graph/runs/{run_id}/approve", summary="Approve or reject the approval node a run waits on")
async def approve_node(
    run_id: RunId, body: ApproveRequest, principal: PrincipalDep, service: GraphServiceDep
) -> GraphRunView:
    return await service.decide(principal, run_id, body)


@router.websocket("/ws/{run_id}")
async def stream_run(websocket: WebSocket, run_id: str, from_seq: int = 0) -> None:
    """Every node event of the run as JSON, once each and in order: the backlog first, then live; the
    socket closes after the `run_ended` event. Authenticate with `Authorization: Bearer` or a first message
    `{"authorization": "Bearer <credential>"}`."""
    principal = await websocket_principal(websocket)
    if principal is None:
        await websocket.close(_WS_UNAUTHORIZED, "a valid API key or token is required")
        return
    service: GraphService = websocket.app.state.graphs
    try:
        async for event in service.events(principal, run_id, max(0, from_seq)):
            await websocket.send_text(event.model_dump_json())
    except CountersignError as error:
        await websocket.close(_WS_NOT_FOUND, error.message[:120])
        return
    except WebSocketDisconnect:
        return  # the subscriber left; the run goes on
    await websocket.close()


@router.get(
    "/ws-test/{run_id}",
    response_class=HTMLResponse,
    summary="A page that shows a run's live stream (seed 004)",
)
async def stream_test_page(run_id: RunId) -> HTMLResponse:
    # Static HTML with no data of its own: it asks for a key and authenticates the socket with it.
    return HTMLResponse(_WS_TEST_PAGE.read_text(encoding="utf-8").replace("{{RUN_ID}}", run_id))

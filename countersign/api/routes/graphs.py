"""Graph workflows: seed 003's and seed 004's routes, kept (`/graph/create`, `/graph/run`,
`/graph/state/{run_id}`, `/ws/{run_id}`, `/ws-test/{run_id}`), plus `/graphs` and approval decisions."""

import html
from pathlib import Path as FilePath
from typing import Annotated

import yaml
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

from countersign.api.auth import websocket_principal
from countersign.api.deps import AUTHENTICATED, WITH_BODY, ChannelDep, GraphServiceDep, PrincipalDep, refusals
from countersign.api.services.graph_runs import RUN_ID_PREFIX, GraphService
from countersign.graphs.validation import parse_definition
from countersign.models.decisions import NodeDecisionRequest, ReassignRequest
from countersign.models.errors import NotFound, RequestError
from countersign.models.graph import (
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
# Versions are counted per graph id; the bound keeps a made-up one inside what the SQL store can compare.
MAX_VERSION = 2**31 - 1
# A definition is a few levels deep (nodes, a node's approval, its fields); anything deeper is not one.
MAX_YAML_DEPTH = 32


_DEFINITION_BODY = {
    "required": True,
    "content": {
        media: {"schema": {"$ref": "#/components/schemas/GraphDefinition"}}
        for media in ("application/json", "application/yaml")
    },
}


async def _definition(request: Request) -> GraphDefinition:
    """The body as a definition: JSON, or YAML when the Content-Type says so."""
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as error:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"the body is not UTF-8: {error.reason} at byte {error.start}"
        ) from None
    try:
        if "yaml" in request.headers.get("content-type", ""):
            _plain_yaml(text)
            return parse_definition(text)
        return GraphDefinition.model_validate_json(text)
    except _NotYaml as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
    except ValidationError as error:
        raise RequestValidationError(error.errors(include_url=False)) from None
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None


def graph_run(run_id: str) -> str:
    """The id, when it can name a graph run; anything else is not found, like a missing run. Approval
    workflows share query and update names with runs: an approval's id here would reach the wrong type."""
    if not run_id.startswith(RUN_ID_PREFIX):
        raise NotFound(f"no workflow {run_id}")
    return run_id


def _plain_yaml(text: str) -> None:
    """Refuse, before anything is built from it, YAML a definition never needs and an attacker would send:
    aliases (a few hundred bytes of `*a` expand into billions of values, and a validation error echoing
    them never ends) and deep nesting (the YAML composer recurses). The event stream is read iteratively."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise ValueError("YAML aliases (*name) are not accepted in a graph definition")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise ValueError(f"the YAML is nested deeper than {MAX_YAML_DEPTH} levels")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as error:
        raise _NotYaml(f"not JSON or YAML: {error}".splitlines()[0]) from None


class _NotYaml(ValueError):
    """Not YAML at all: a 400, as a body that is not JSON is; a definition that is YAML but not one
    this API takes (aliases, too deep, the wrong shape) is a 422."""


@router.post(
    "/graph/create",
    status_code=status.HTTP_201_CREATED,
    summary="Store a graph definition, JSON or YAML (ADMIN); each create of an id is a new version",
    openapi_extra={"requestBody": _DEFINITION_BODY},
    responses=refusals(400, 401, 403, 413, 422),
)
@router.post(
    "/graphs",
    status_code=status.HTTP_201_CREATED,
    include_in_schema=False,
    responses=refusals(400, 401, 403, 413, 422),
)
async def create_graph(
    principal: PrincipalDep,
    definition: Annotated[GraphDefinition, Depends(_definition)],
    service: GraphServiceDep,
) -> GraphRecord:
    # The principal comes first: an unauthenticated caller learns nothing about the body.
    return await service.create(principal, definition)


@router.get(
    "/graphs",
    summary="The latest version of every graph the caller's tenant can run",
    responses=refusals(401),
)
async def list_graphs(principal: PrincipalDep, service: GraphServiceDep) -> GraphList:
    return GraphList(items=await service.graphs(principal))


@router.get(
    "/graph/{graph_id}",
    summary="A graph definition: the latest version, or `?version=N`",
    responses=refusals(*AUTHENTICATED, 404),
)
async def get_graph(
    graph_id: GraphId,
    principal: PrincipalDep,
    service: GraphServiceDep,
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
) -> GraphRecord:
    return await service.get(principal, graph_id, version)


@router.post(
    "/graph/run",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Start a run; returns its run_id at once",
    responses=refusals(*WITH_BODY, 404, 409),
)
async def run_graph(body: RunGraphRequest, principal: PrincipalDep, service: GraphServiceDep) -> RunStarted:
    if body.version is not None and body.version > MAX_VERSION:
        raise NotFound(f"no graph {body.graph_id} version {body.version}")  # nor could there be
    return await service.run(principal, body)


@router.get(
    "/graph/state/{run_id}",
    summary="A run's status, current node, logs and data (seed 003)",
    responses=refusals(*AUTHENTICATED, 404),
)
async def graph_state(run_id: RunId, principal: PrincipalDep, service: GraphServiceDep) -> GraphRunView:
    return await service.state(principal, graph_run(run_id))


@router.post(
    "/graph/runs/{run_id}/approve",
    summary="Approve or reject the approval node a run waits on",
    responses=refusals(*WITH_BODY, 403, 404, 409),
)
async def approve_node(
    run_id: RunId,
    body: NodeDecisionRequest,
    principal: PrincipalDep,
    service: GraphServiceDep,
    channel: ChannelDep,
) -> GraphRunView:
    return await service.decide(principal, graph_run(run_id), body, channel=channel)


@router.post(
    "/graph/runs/{run_id}/reassign",
    summary="Hand the approval node a run waits on to another role or one person (ADMIN)",
    responses=refusals(*WITH_BODY, 403, 404, 409),
)
async def reassign_node(
    run_id: RunId, body: ReassignRequest, principal: PrincipalDep, service: GraphServiceDep
) -> GraphRunView:
    return await service.reassign(principal, graph_run(run_id), body)


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
        async for event in service.events(principal, graph_run(run_id), max(0, from_seq)):
            await websocket.send_text(event.model_dump_json())
    except RequestError as error:
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
    # Static HTML with no data of its own: it asks for a key and authenticates the socket with it. Its
    # script and style are files under /ui (the CSP allows no inline ones); the run id reaches the script
    # through an attribute, escaped although the id's pattern already leaves nothing to escape.
    page = _WS_TEST_PAGE.read_text(encoding="utf-8")
    return HTMLResponse(page.replace("{{RUN_ID}}", html.escape(run_id, quote=True)))

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, status

from countersign.api.deps import AUTHENTICATED, WITH_BODY, ChannelDep, PrincipalDep, ServiceDep, refusals
from countersign.api.services.submissions import WORKFLOW_ID_PREFIX
from countersign.models.decisions import (
    ApproveRequest,
    CancelRequest,
    EditRequest,
    ReassignRequest,
    ResultRequest,
    RetryRequest,
)
from countersign.models.enums import RequestType, WorkflowState
from countersign.models.errors import NotFound
from countersign.models.requests import SubmitRequest
from countersign.models.views import SubmitResponse, Until, WorkflowList, WorkflowView

router = APIRouter(prefix="/workflows", tags=["workflows"])
# A submit (or a decision) that waits holds an HTTP request open; past a minute a client is better off
# polling.
MAX_SUBMIT_WAIT_SECONDS = 60
# What a decision on one workflow may answer besides 200 (the README's "Refusals").
DECISION = refusals(*WITH_BODY, 403, 404, 409)

WorkflowId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")]


def approval(workflow_id: str) -> str:
    """The id, when it can name an approval workflow; anything else is not found, like a missing one.
    Graph runs share query and update names with approvals: a run's id here would reach the wrong type."""
    if not workflow_id.startswith(WORKFLOW_ID_PREFIX):
        raise NotFound(f"no workflow {workflow_id}")
    return workflow_id


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Submit a request in plain words",
    responses=refusals(*WITH_BODY, 409),
)
async def submit(
    body: SubmitRequest,
    principal: PrincipalDep,
    service: ServiceDep,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
    wait_seconds: Annotated[
        float | None,
        Query(
            gt=0,
            le=MAX_SUBMIT_WAIT_SECONDS,
            description="Wait up to this long for the proposal (or an end) and answer with the "
            "workflow's view; past it, the answer is as without waiting and the client polls.",
        ),
    ] = None,
) -> SubmitResponse:
    wait = None if wait_seconds is None else timedelta(seconds=wait_seconds)
    return await service.submit(principal, body, idempotency_key, wait)


@router.get(
    "",
    summary="List workflows of the caller's tenant, from Temporal visibility",
    responses=refusals(*AUTHENTICATED),
)
async def list_workflows(
    principal: PrincipalDep,
    service: ServiceDep,
    state: WorkflowState | None = None,
    type: RequestType | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> WorkflowList:
    items = await service.list_workflows(principal, state=state, request_type=type, limit=limit)
    return WorkflowList(items=items)


@router.get(
    "/{workflow_id}", summary="The whole view of one workflow", responses=refusals(*AUTHENTICATED, 404)
)
async def get_workflow(
    workflow_id: WorkflowId,
    principal: PrincipalDep,
    service: ServiceDep,
    wait_seconds: Annotated[
        float | None,
        Query(
            gt=0,
            le=MAX_SUBMIT_WAIT_SECONDS,
            description="Long-poll: answer once the workflow reaches `until`, or after this many seconds "
            "with the view as it is then (a caller without a public URL for callbacks).",
        ),
    ] = None,
    until: Annotated[
        Until,
        Query(description="`decided`: approved (by people or a policy rule) or ended; `final`: ended."),
    ] = Until.FINAL,
) -> WorkflowView:
    wait = None if wait_seconds is None else timedelta(seconds=wait_seconds)
    return await service.view(principal, approval(workflow_id), wait, until)


@router.post(
    "/{workflow_id}/approve",
    summary="Approve or reject the proposal awaiting the caller",
    responses=DECISION,
)
async def approve(
    workflow_id: WorkflowId,
    body: ApproveRequest,
    principal: PrincipalDep,
    service: ServiceDep,
    channel: ChannelDep,
    wait_seconds: Annotated[
        float | None,
        Query(
            gt=0,
            le=MAX_SUBMIT_WAIT_SECONDS,
            description="When this decision starts the action, wait up to this long for its outcome "
            "(executed, or failed as a dead letter) and answer with that view; without it, or past it, "
            "the answer comes once the decision is applied and the client polls.",
        ),
    ] = None,
) -> WorkflowView:
    wait = None if wait_seconds is None else timedelta(seconds=wait_seconds)
    return await service.decide(principal, approval(workflow_id), body, wait, channel)


@router.post(
    "/{workflow_id}/edit",
    summary="Approve with changes: new args make a new proposal version",
    responses=DECISION,
)
async def edit(
    workflow_id: WorkflowId, body: EditRequest, principal: PrincipalDep, service: ServiceDep
) -> WorkflowView:
    return await service.edit(principal, approval(workflow_id), body)


@router.post(
    "/{workflow_id}/cancel",
    summary="Withdraw a request before its action starts (requester or ADMIN)",
    responses=DECISION,
)
async def cancel(
    workflow_id: WorkflowId, body: CancelRequest, principal: PrincipalDep, service: ServiceDep
) -> WorkflowView:
    return await service.cancel(principal, approval(workflow_id), body)


@router.post(
    "/{workflow_id}/reassign",
    summary="Hand the waiting step to a role or a person (ADMIN)",
    responses=DECISION,
)
async def reassign(
    workflow_id: WorkflowId, body: ReassignRequest, principal: PrincipalDep, service: ServiceDep
) -> WorkflowView:
    return await service.reassign(principal, approval(workflow_id), body)


@router.post(
    "/{workflow_id}/retry",
    summary="Retry a dead letter: the approved action, or planning (ADMIN)",
    responses=DECISION,
)
async def retry(
    workflow_id: WorkflowId, body: RetryRequest, principal: PrincipalDep, service: ServiceDep
) -> WorkflowView:
    return await service.retry(principal, approval(workflow_id), body)


@router.post(
    "/{workflow_id}/result",
    summary="Report the result of an approved action the caller executed (a tool its tenant declared)",
    responses=DECISION,
)
async def report_result(
    workflow_id: WorkflowId, body: ResultRequest, principal: PrincipalDep, service: ServiceDep
) -> WorkflowView:
    return await service.report_result(principal, approval(workflow_id), body)

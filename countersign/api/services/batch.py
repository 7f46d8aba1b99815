"""`POST /approvals/batch`: one decision on many proposals, concurrently; each item succeeds or is
refused on its own, with the status it would have had alone."""

import asyncio
from collections import Counter

from temporalio.client import Client

from countersign.api.services.approval_updates import ApprovalUpdates, carried
from countersign.api.services.graph_runs import decide_node
from countersign.models.channels import DecisionChannel
from countersign.models.decisions import (
    GRAPH_RUN_ID_PREFIX,
    BatchItemResult,
    BatchRequest,
    BatchResponse,
    DecideInput,
    NodeDecisionRequest,
)
from countersign.models.enums import Decision
from countersign.models.errors import Conflict, Forbidden, Invalid, NotFound, RequestError
from countersign.models.principals import Principal
from countersign.store.principals import PrincipalStore
from countersign.workflows.approval import ApprovalWorkflow

_HTTP_STATUS = {NotFound: 404, Forbidden: 403, Conflict: 409, Invalid: 422}


async def decide_batch(
    client: Client,
    updates: ApprovalUpdates,
    principals: PrincipalStore,
    principal: Principal,
    acting_for: list[Principal],
    body: BatchRequest,
    channel: DecisionChannel = DecisionChannel.API,
) -> BatchResponse:
    """`acting_for`: whoever delegates to `principal` now, read once for every item."""
    counts = Counter(item.workflow_id for item in body.items)
    duplicates = {workflow_id for workflow_id, seen in counts.items() if seen > 1}
    if duplicates:
        raise Invalid(f"each workflow may appear once per batch: {', '.join(sorted(duplicates))}")

    carried(DecideInput(reviewer=principal, decision=body.decision, notes=body.notes))

    async def one(workflow_id: str, version: int | None) -> BatchItemResult:
        if workflow_id.startswith(GRAPH_RUN_ID_PREFIX):
            return await _graph_item(client, principals, principal, workflow_id, version, body, channel)
        decision = DecideInput(
            reviewer=principal,
            decision=body.decision,
            notes=body.notes,
            proposal_version=version,
            acting_for=acting_for,
            channel=channel,
        )
        try:
            view = await updates.run(
                principal, workflow_id, lambda h: h.execute_update(ApprovalWorkflow.decide, decision)
            )
        except RequestError as error:
            return _refused(workflow_id, error)
        return BatchItemResult(workflow_id=workflow_id, ok=True, state=view.state.value)

    results = await asyncio.gather(*(one(i.workflow_id, i.proposal_version) for i in body.items))
    accepted = sum(r.ok for r in results)
    return BatchResponse(
        results=list(results),
        approved=accepted if body.decision == Decision.APPROVED else 0,
        rejected=accepted if body.decision == Decision.REJECTED else 0,
        refused=len(results) - accepted,
    )


async def _graph_item(
    client: Client,
    principals: PrincipalStore,
    principal: Principal,
    run_id: str,
    version: int | None,
    body: BatchRequest,
    channel: DecisionChannel,
) -> BatchItemResult:
    """A batch item naming a graph run: decided as `POST /graph/runs/{id}/approve` decides it (an
    approval workflow's update would be refused by the run, or applied and then misread)."""
    node = NodeDecisionRequest(decision=body.decision, notes=body.notes)
    try:
        view = await decide_node(client, principals, principal, run_id, node, version or 1, channel)
    except RequestError as error:
        return _refused(run_id, error)
    return BatchItemResult(workflow_id=run_id, ok=True, state=view.status.value)


def _refused(workflow_id: str, error: RequestError) -> BatchItemResult:
    return BatchItemResult(
        workflow_id=workflow_id,
        ok=False,
        code=error.code,
        status=next((code for kind, code in _HTTP_STATUS.items() if isinstance(error, kind)), 500),
        detail=error.message,
    )

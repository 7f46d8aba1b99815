from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from countersign.api.deps import AUTHENTICATED, PrincipalDep, ServiceDep, refusals
from countersign.api.routes.workflows import WorkflowId
from countersign.models.audit import StoredAuditEvent

router = APIRouter(tags=["audit"])


@router.get(
    "/workflows/{workflow_id}/audit",
    summary="The workflow's audit trail from the SQL audit log",
    responses=refusals(*AUTHENTICATED, 404),
)
async def workflow_audit(
    workflow_id: WorkflowId, principal: PrincipalDep, service: ServiceDep
) -> list[StoredAuditEvent]:
    return await service.trail(principal, workflow_id)


@router.get(
    "/audit",
    summary="Audit events of the caller's tenant, by actor and time (since ≤ at < until): ADMIN, AUDITOR",
    responses=refusals(*AUTHENTICATED, 403),
)
async def search_audit(
    principal: PrincipalDep,
    service: ServiceDep,
    actor: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[StoredAuditEvent]:
    return await service.search_audit(principal, actor=actor, since=since, until=until, limit=limit)

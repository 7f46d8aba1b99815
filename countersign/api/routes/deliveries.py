"""Signed callbacks (docs/callbacks.md): the tenant's webhook secret, a workflow's delivery log, and
an ADMIN's redelivery of one event."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from countersign.api.deps import AUTHENTICATED, PrincipalDep, refusals
from countersign.api.routes.workflows import WorkflowId
from countersign.api.services.deliveries import DeliveryService
from countersign.models.callbacks import DeliveryAttempt, WebhookSecret

router = APIRouter(tags=["callbacks"])

DeliveryId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


async def _deliveries(request: Request) -> DeliveryService:
    service: DeliveryService = request.app.state.deliveries
    return service


DeliveryServiceDep = Annotated[DeliveryService, Depends(_deliveries)]


@router.get(
    "/tenants/me/webhook-secret",
    summary="The tenant's secret for verifying signed callbacks (created on first use): ADMIN",
    responses=refusals(*AUTHENTICATED, 403),
)
async def webhook_secret(principal: PrincipalDep, service: DeliveryServiceDep) -> WebhookSecret:
    return await service.secret(principal)


@router.post(
    "/tenants/me/webhook-secret/rotate",
    summary="A new webhook secret; the previous one keeps signing beside it for a grace period: ADMIN",
    responses=refusals(*AUTHENTICATED, 403),
)
async def rotate_webhook_secret(principal: PrincipalDep, service: DeliveryServiceDep) -> WebhookSecret:
    return await service.rotate(principal)


@router.get(
    "/workflows/{workflow_id}/deliveries",
    summary="Every attempt to deliver the workflow's callbacks, oldest first: its requester, ADMIN",
    responses=refusals(*AUTHENTICATED, 403, 404),
)
async def deliveries(
    workflow_id: WorkflowId, principal: PrincipalDep, service: DeliveryServiceDep
) -> list[DeliveryAttempt]:
    return await service.attempts(principal, workflow_id)


@router.post(
    "/workflows/{workflow_id}/deliveries/{delivery_id}/redeliver",
    summary="Deliver that attempt's event again, now, with the same webhook-id: ADMIN",
    responses=refusals(*AUTHENTICATED, 403, 404),
)
async def redeliver(
    workflow_id: WorkflowId, delivery_id: DeliveryId, principal: PrincipalDep, service: DeliveryServiceDep
) -> DeliveryAttempt:
    return await service.redeliver(principal, workflow_id, delivery_id)

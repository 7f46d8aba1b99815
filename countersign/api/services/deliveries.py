"""Signed callbacks at the gateway: the tenant's webhook secret (ADMIN), a workflow's delivery log (its
requester and the tenant's ADMINs), and an ADMIN's redelivery of one event.

Every path is tenant-scoped first: another tenant's workflow, or its delivery, answers 404 exactly as
one that does not exist; only then is the caller's standing checked (403). A redelivery is one attempt,
made here and recorded like the activity's (same `webhook-id`, signed with the secrets that sign now),
to the event's URL only while it is still allowed."""

from collections.abc import Sequence
from datetime import timedelta

from temporalio.client import Client
from temporalio.service import RPCError

from countersign.activities.callbacks import CallbackSender
from countersign.api.services.callback_urls import check_callback_url
from countersign.api.services.submissions import WORKFLOW_ID_PREFIX
from countersign.api.services.temporal_errors import rpc_error
from countersign.models.callbacks import DeliveryAttempt, WebhookSecret
from countersign.models.decisions import Refusal
from countersign.models.enums import Role
from countersign.models.errors import Forbidden, NotFound
from countersign.models.principals import Principal
from countersign.store.callbacks import CallbackStore
from countersign.workflows.approval import ApprovalWorkflow


def _admin(principal: Principal, what: str) -> None:
    if Role.ADMIN not in principal.roles:
        raise Forbidden(f"{what} is for ADMIN", Refusal.ROLE_MISSING)


class DeliveryService:
    def __init__(
        self,
        client: Client,
        store: CallbackStore,
        sender: CallbackSender,
        *,
        allowed_urls: Sequence[str],
        secret_grace: timedelta,
        query_timeout: timedelta = timedelta(seconds=10),
    ) -> None:
        self._client = client
        self._store = store
        self._sender = sender
        self._allowed = allowed_urls
        self._grace = secret_grace
        self._query_timeout = query_timeout

    async def secret(self, principal: Principal) -> WebhookSecret:
        _admin(principal, "the webhook secret")
        return await self._store.secret(principal.tenant)

    async def rotate(self, principal: Principal) -> WebhookSecret:
        _admin(principal, "rotating the webhook secret")
        return await self._store.rotate(principal.tenant, self._grace)

    async def attempts(self, principal: Principal, workflow_id: str) -> list[DeliveryAttempt]:
        await self._may_read(principal, workflow_id)
        return await self._store.attempts(principal.tenant, workflow_id)

    async def redeliver(self, principal: Principal, workflow_id: str, delivery_id: str) -> DeliveryAttempt:
        await self._requester(principal, workflow_id)  # another tenant's: 404 before any role check
        _admin(principal, "redelivering a callback")
        try:
            delivery, latest = await self._store.delivery(principal.tenant, workflow_id, delivery_id)
        except LookupError:
            raise NotFound(f"no delivery {delivery_id} of workflow {workflow_id}") from None
        # The allow-list may have narrowed since the request was submitted.
        check_callback_url(delivery.url, self._allowed)
        return await self._sender.attempt(
            self._store, delivery, attempt=latest + 1, last=True, redelivered_by=principal.id
        )

    async def _may_read(self, principal: Principal, workflow_id: str) -> None:
        requester = await self._requester(principal, workflow_id)
        if principal.id != requester and Role.ADMIN not in principal.roles:
            raise Forbidden("a workflow's deliveries are for its requester and ADMIN", Refusal.ROLE_MISSING)

    async def _requester(self, principal: Principal, workflow_id: str) -> str:
        """Who requested the tenant's workflow: from its delivery log, which outlives Temporal's
        retention, else from the workflow itself; NotFound when it is not the caller's tenant's."""
        if not workflow_id.startswith(WORKFLOW_ID_PREFIX):
            raise NotFound(f"no workflow {workflow_id}")
        requester = await self._store.requester_of(principal.tenant, workflow_id)
        if requester is not None:
            return requester
        handle = self._client.get_workflow_handle_for(ApprovalWorkflow.run, workflow_id)
        try:
            view = await handle.query(ApprovalWorkflow.view, rpc_timeout=self._query_timeout)
        except RPCError as error:
            raise rpc_error(error, workflow_id) from error
        if view.requester.tenant != principal.tenant:
            raise NotFound(f"no workflow {workflow_id}")
        return view.requester.id

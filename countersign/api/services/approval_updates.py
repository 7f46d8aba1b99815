"""Sending an approval workflow an Update, and what its refusals become: domain errors for the caller,
and an entry in the workflow's own trail. Every message is checked to survive Temporal's data
converter before it is sent."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from countersign.api.services.temporal_errors import REFUSAL_ERRORS, finished_workflow, rpc_error
from countersign.models import search_attributes as sa
from countersign.models.decisions import Refusal, RefusalInput
from countersign.models.errors import Invalid, NotFound, RequestError, WorkflowFinished
from countersign.models.principals import Principal
from countersign.models.wire import WireError, check_round_trip
from countersign.workflows.approval import ApprovalWorkflow

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)


def carried(message: M) -> M:
    """`message`, when Temporal's data converter carries it to the workflow unchanged; else refused
    (422) before anything is sent: a workflow whose input it cannot decode could never be read,
    decided or cancelled again."""
    try:
        check_round_trip(message)
    except WireError as error:
        raise Invalid(str(error), "Undeliverable") from None
    return message


class ApprovalUpdates:
    def __init__(self, client: Client) -> None:
        self._client = client

    def handle(self, workflow_id: str) -> Any:
        return self._client.get_workflow_handle_for(ApprovalWorkflow.run, workflow_id)

    async def run(
        self,
        principal: Principal,
        workflow_id: str,
        call: Callable[[Any], Awaitable[T]],
        closed: Refusal = Refusal.NOT_WAITING,
        what: str = "decision",
        in_trail: bool = True,
    ) -> T:
        """Run one Update, turning the workflow's refusals into domain errors (and audit entries).

        `closed` is the refusal for a workflow that has already finished (or is finishing).
        `in_trail`: a refusal is kept in the workflow's own trail (Signal `refused`); False when the
        caller audits it itself (a message refused as the workflow ends would find no trail to join).
        """
        try:
            return await call(self.handle(workflow_id))
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type == Refusal.WRONG_TENANT:
                # Another tenant's workflow must look exactly like one that does not exist.
                raise NotFound(f"no workflow {workflow_id}") from error
            if isinstance(cause, ApplicationError) and cause.type == Refusal.UNAUTHENTICATED:
                # This gateway signed it: the workflow does not trust this gateway's keys (a rotation
                # that dropped a key too early?). The workflow has audited it; an operator must act.
                log.error("workflow %s refused this gateway's signature: %s", workflow_id, cause.message)
                raise RequestError(
                    "the workflow does not accept this gateway's signature; see the gateway's log",
                    str(cause.type),
                ) from error
            if isinstance(cause, ApplicationError) and cause.type in REFUSAL_ERRORS:
                if in_trail:
                    await self._record_refusal(principal, workflow_id, what, str(cause.type), cause.message)
                raise REFUSAL_ERRORS[cause.type](cause.message, cause.type) from error
            raise
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND and finished_workflow(error.message):
                # Only the owning tenant may learn that the workflow exists and has finished.
                await self._require_tenant(principal, workflow_id)
                raise WorkflowFinished(f"workflow {workflow_id} has finished", closed) from error
            raise rpc_error(error, workflow_id) from error

    async def _record_refusal(
        self, principal: Principal, workflow_id: str, what: str, code: str, message: str
    ) -> None:
        """A validator refused before anything reached history: the workflow keeps the attempt in its
        own trail (Signal `refused`), so it reaches the audit log whenever that database can take it and
        a slow or locked database never turns a refusal into an error. Best effort: a workflow that
        closed meanwhile has nothing left to record."""
        refusal = RefusalInput(principal=principal, what=what, code=code, message=message[:1000])
        try:
            check_round_trip(refusal)
            await self.handle(workflow_id).signal(ApprovalWorkflow.refused, refusal)
        except (RPCError, WireError) as error:
            log.warning("refusal on %s not recorded in its trail: %s", workflow_id, error)

    async def _require_tenant(self, principal: Principal, workflow_id: str) -> None:
        try:
            description = await self.handle(workflow_id).describe()
        except RPCError as error:
            raise rpc_error(error, workflow_id) from error
        if description.typed_search_attributes.get(sa.TENANT) != principal.tenant:
            raise NotFound(f"no workflow {workflow_id}")

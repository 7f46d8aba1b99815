"""Deciding through an email's link (docs/channels.md), scanner-safe and bound to one person.

`show` (GET) changes nothing: a link scanner or a chat preview that fetches the link decides nothing.
It answers the confirmation page with the proposal and a form carrying a CSRF value.

`submit` (POST) re-checks everything before anything is decided: the CSRF value, the link (genuine,
unused, unexpired), that the workflow still waits on the step and proposal version the link was minted
for, and that its principal is still enabled. Then it uses the link up (atomically, with its sibling
buttons) and decides as the link's principal through `ApprovalService.decide`, which runs every check
the API runs (role, tenant, segregation of duties, version), with the link's channel. Temporal out of
reach: the link is released and the reviewer may try again. Every refused use is audited in the
workflow's refusal chain (a refusal by the workflow itself is recorded by the workflow).
"""

import dataclasses
import logging
import re
from datetime import UTC, datetime

from temporalio.client import Client, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from countersign.activities.decision_facts import inbox_url
from countersign.api.services import link_outcomes as pages
from countersign.api.services.access import may_read
from countersign.api.services.approvals import QUERY_TIMEOUT, ApprovalService
from countersign.api.services.audit_log import AuditLog
from countersign.api.services.link_checks import prompt_of_view, superseded
from countersign.api.services.link_outcomes import LinkForm, LinkPage, csrf_holds
from countersign.api.services.visibility import published_state
from countersign.models.channels import DecisionPrompt
from countersign.models.decisions import ApproveRequest
from countersign.models.enums import Decision, WorkflowState
from countersign.models.errors import Conflict, Forbidden, Invalid, NotFound, RequestError, WorkflowFinished
from countersign.models.links import TOKEN_PATTERN, CheckedLink, LinkGrant, LinkProblem
from countersign.models.principals import Principal
from countersign.models.views import WorkflowView
from countersign.store.decision_links import DecisionLinks
from countersign.store.principals import PrincipalStore
from countersign.workflows.approval import ApprovalWorkflow

log = logging.getLogger(__name__)
_TOKEN = re.compile(TOKEN_PATTERN)
_STATUS = {Conflict: 409, Forbidden: 403, Invalid: 422, NotFound: 404}
MAX_NOTES = 4000  # ApproveRequest.notes


class _Unreachable(Exception):
    """Temporal did not answer: nothing was decided, the reviewer may try again."""


class LinkDecisions:
    def __init__(
        self,
        links: DecisionLinks,
        service: ApprovalService,
        principals: PrincipalStore,
        client: Client,
        audit: AuditLog | None,
        public_url: str,
    ) -> None:
        self._links = links
        self._service = service
        self._principals = principals
        self._client = client
        self._audit = audit
        self._public_url = public_url

    async def close(self) -> None:
        await self._links.close()

    async def show(self, token: str, csrf: str) -> LinkPage:
        """The confirmation page, or why the link decides nothing. Reads only, audits nothing: a
        scanner's fetch is not a use."""
        link = await self._usable(token)
        if isinstance(link, LinkProblem):
            return pages.problem(link)
        grant, inbox = link.grant, self._inbox(link.grant)
        try:
            view = await self._read(grant)
        except _Unreachable:
            return pages.retry(inbox)
        why = pages.ENDED if view is None else superseded(view, grant)
        if view is None or why is not None:
            return pages.no_longer(why or pages.ENDED, inbox)
        principal = await self._principal(grant)
        if principal is None:
            return pages.disabled(inbox)
        prompt = prompt_of_view(view)
        if prompt is None or prompt.require_sign_in:
            return pages.sign_in(inbox)
        acting_for = await self._principals.delegators_for(principal, datetime.now(UTC))
        if not may_read(principal, view, acting_for):
            why = "The step no longer waits on you (your roles may have changed)."
            return LinkPage("refused", 403, "You may not decide this request now", why, inbox=inbox)
        return self._confirm(grant, prompt, csrf, view)

    async def submit(self, token: str, form: LinkForm) -> LinkPage:
        """Decide as the link's principal, once; or say why not, deciding nothing."""
        if not csrf_holds(form.csrf_cookie, form.csrf):
            await self._refused_token(token, "CsrfMismatch", "the confirmation's CSRF value did not match")
            return pages.unverified()
        link = await self._usable(token)
        if isinstance(link, LinkProblem):
            if link != LinkProblem.UNKNOWN:
                await self._refused_token(token, f"Link{link.value.title()}", f"the link is {link.value}")
            return pages.problem(link)
        grant, inbox = link.grant, self._inbox(link.grant)
        try:
            view = await self._read(grant)
        except _Unreachable:
            return pages.retry(inbox)
        why = pages.ENDED if view is None else superseded(view, grant)
        state = view.state if view is not None else None
        if view is None or why is not None:
            await self._refused(grant, "LinkSuperseded", why or pages.ENDED, state)
            return pages.no_longer(why or pages.ENDED, inbox)
        principal = await self._principal(grant)
        if principal is None:
            await self._refused(grant, "PrincipalDisabled", "the link's principal is disabled or gone", state)
            return pages.disabled(inbox)
        prompt = prompt_of_view(view)
        if prompt is None or prompt.require_sign_in:
            await self._refused(grant, "SignInRequired", "the step is decided after signing in", state)
            return pages.sign_in(inbox)
        notes = (form.notes or "").strip()[:MAX_NOTES] or None
        if grant.action == "reject" and notes is None:
            why = "A rejection needs a reason: say why, so that the requester knows what to change."
            page = self._confirm(grant, prompt, form.csrf or "", view)
            return dataclasses.replace(page, status=422, message=why)
        # Atomic, with the message's other links: two confirmations racing decide once.
        if not await self._links.use(link, f"{grant.action} via {grant.channel.value}"):
            await self._refused(grant, "LinkUsed", "the link was used at the same moment", state)
            return pages.problem(LinkProblem.USED)
        return await self._decide(link, principal, notes, inbox)

    async def _decide(
        self, link: CheckedLink, principal: Principal, notes: str | None, inbox: str
    ) -> LinkPage:
        grant = link.grant
        decision = Decision.APPROVED if grant.action == "approve" else Decision.REJECTED
        body = ApproveRequest(decision=decision, notes=notes, proposal_version=grant.proposal_version)
        try:
            view = await self._service.decide(principal, grant.workflow_id, body, channel=grant.channel)
        except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as error:
            # Not delivered: the link is usable again (a decision that did land meanwhile makes the
            # workflow refuse a second one, whatever the link says).
            log.warning("a link decision on %s was not delivered: %s", grant.workflow_id, error)
            await self._links.release(link)
            return pages.retry(inbox)
        except RequestError as refused:
            if isinstance(refused, WorkflowFinished | NotFound):  # the workflow could not record it
                await self._refused(grant, refused.code, refused.message)
            status = next((code for kind, code in _STATUS.items() if isinstance(refused, kind)), 409)
            return LinkPage("refused", status, "The decision was refused", refused.message, inbox=inbox)
        done = "Approved" if decision == Decision.APPROVED else "Rejected"
        return LinkPage(
            "done",
            200,
            f"{done}: {grant.workflow_id}",
            f"You {decision.value} version {grant.proposal_version} as {principal.name}. "
            f"The request is now {view.state.value}.",
            inbox=inbox,
        )

    def _confirm(self, grant: LinkGrant, prompt: DecisionPrompt, csrf: str, view: WorkflowView) -> LinkPage:
        verb = "Approve" if grant.action == "approve" else "Reject"
        return LinkPage(
            "confirm",
            200,
            f"{verb} {grant.workflow_id}?",
            f"Nothing is decided until you confirm below. You decide as yourself, on version "
            f"{grant.proposal_version} only.",
            prompt=prompt,
            action=grant.action,
            csrf=csrf,
            inbox=self._inbox(grant),
            request=view.request.described()[:1000],
        )

    def _inbox(self, grant: LinkGrant) -> str:
        return inbox_url(self._public_url, grant.workflow_id)

    async def _usable(self, token: str) -> CheckedLink | LinkProblem:
        """A genuine, unused, unexpired link of a decision button (a reply address is not one)."""
        if not _TOKEN.match(token):
            return LinkProblem.UNKNOWN
        link = await self._links.usable(token)
        if isinstance(link, CheckedLink) and link.grant.action == "reply":
            return LinkProblem.UNKNOWN
        return link

    async def _read(self, grant: LinkGrant) -> WorkflowView | None:
        """The workflow's view as it is, read on the link's authority (its tenant checked); None when
        it is no longer kept (or is another tenant's); raises _Unreachable when Temporal does not answer."""
        handle = self._client.get_workflow_handle_for(ApprovalWorkflow.run, grant.workflow_id)
        try:
            view: WorkflowView = await handle.query(ApprovalWorkflow.view, rpc_timeout=QUERY_TIMEOUT)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return None
            raise _Unreachable() from error
        return view if view.requester.tenant == grant.tenant else None

    async def _principal(self, grant: LinkGrant) -> Principal | None:
        """The link's principal, enabled and of the link's tenant; the link never lends anyone else."""
        principal = await self._principals.get(grant.principal_id)
        return principal if principal is not None and principal.tenant == grant.tenant else None

    async def _refused_token(self, token: str, code: str, message: str) -> None:
        checked = await self._links.check(token) if _TOKEN.match(token) else LinkProblem.UNKNOWN
        if isinstance(checked, CheckedLink):  # an unknown token names no workflow to audit it in
            await self._refused(checked.grant, code, message)

    async def _refused(
        self, grant: LinkGrant, code: str, message: str, state: WorkflowState | None = None
    ) -> None:
        """Audited in the workflow's refusal chain, as the link's principal. Best effort: the holder
        hears the refusal whatever the audit database is doing."""
        if self._audit is None:
            return
        try:
            who = await self._principals.get(grant.principal_id) or Principal(
                id=grant.principal_id, name=grant.principal_id, tenant=grant.tenant
            )
            state = state or await published_state(
                self._client, grant.workflow_id, WorkflowState.WAITING_FOR_APPROVAL
            )
            await self._audit.refused(who, grant.workflow_id, "link", code, message, state)
        except Exception as error:  # a refusal never turns into a 500
            log.warning("a refused link use on %s was not audited: %s", grant.workflow_id, error)

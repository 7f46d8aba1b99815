"""Reply to decide (docs/email-replies.md): a reply to a "decision needed" email, received by the
gateway's mail listener (api/mail_listener.py), decides the step its reply-to address names.

A reply decides only when every one of these holds: its recipient carries a genuine `reply` link
(store/decision_links.py) that is still usable; its From is the address on file for the link's principal;
the workflow's current step is the link's step and proposal version, still waiting, and its policy says
`email_reply: true`; its first line is `approve` or `reject: <reason>`. The link is then used up and the
decision goes through `ApprovalService.decide`, where the workflow runs every usual check.

Anything else is refused, audited, and explained by mail, always to the address on file and never to the
From of the message (which anyone can forge): no backscatter. A reply with no genuine link, or written by
a machine (an out-of-office note, a list), is only logged: nobody is told, so no loop can start.
"""

import logging
from dataclasses import dataclass
from enum import StrEnum

from temporalio.client import Client, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from countersign.api.services.approvals import ApprovalService
from countersign.api.services.audit_log import AuditLog
from countersign.api.services.reply_messages import (
    EXPLAINED,
    Incoming,
    Why,
    command_of,
    explanation,
    read,
    same_address,
    token_of,
)
from countersign.api.services.temporal_errors import REFUSAL_ERRORS
from countersign.api.services.visibility import published_state
from countersign.models.channels import DecisionChannel
from countersign.models.decisions import ApproveRequest, StepStatus
from countersign.models.enums import WorkflowState
from countersign.models.errors import NotFound, RequestError, WorkflowFinished
from countersign.models.links import CheckedLink, LinkProblem
from countersign.models.principals import Principal
from countersign.models.views import WorkflowView
from countersign.store.decision_links import DecisionLinks
from countersign.store.principals import PrincipalStore
from countersign.tools.smtp import SmtpConfig, send_message

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    DECIDED = "decided"
    REFUSED = "refused"  # audited, and explained to the address on file
    DROPPED = "dropped"  # no genuine link, or written by a machine: logged only
    RETRY = "retry"  # Temporal out of reach: the sending server is asked to try again later


@dataclass(frozen=True)
class ReplyResult:
    outcome: Outcome
    code: str = ""
    workflow_id: str | None = None


@dataclass(frozen=True)
class _Reply:
    """A reply whose link is genuine: what every later check and the explanation need."""

    incoming: Incoming
    token: str
    link: CheckedLink
    principal: Principal
    address: str | None  # on file


class ReplyDecisions:
    def __init__(
        self,
        *,
        service: ApprovalService,
        principals: PrincipalStore,
        links: DecisionLinks,
        client: Client,
        reply_domain: str,
        email_from: str,
        smtp: SmtpConfig | None,
        audit: AuditLog | None = None,
        public_url: str = "",
    ) -> None:
        self._service = service
        self._principals = principals
        self._links = links
        self._client = client
        self._domain = reply_domain
        self._from = email_from
        self._smtp = smtp
        self._audit = audit
        self._inbox = f"{public_url}/ui"

    def accepts(self, recipient: str) -> bool:
        """Whether `recipient` is a reply address at all (`decide+<token>@<reply domain>`)."""
        return token_of(recipient, self._domain) is not None

    async def receive(self, recipient: str, content: bytes) -> ReplyResult:
        token = token_of(recipient, self._domain)
        link = await self._links.check(token) if token else LinkProblem.UNKNOWN
        # Only a reply-to address decides by mail: a button's token is for its confirmation page.
        if isinstance(link, LinkProblem) or link.grant.action != "reply":
            log.info("reply to an unknown decision address dropped")
            return ReplyResult(Outcome.DROPPED, Why.NO_LINK)
        grant = link.grant
        principal = await self._principals.get(grant.principal_id)
        on_file = await self._principals.recipient(grant.principal_id)
        if principal is None or on_file is None or principal.tenant != grant.tenant:
            log.info("reply to link %s of a principal no longer enabled dropped", link.id)
            return ReplyResult(Outcome.DROPPED, Why.UNKNOWN_PRINCIPAL, grant.workflow_id)
        try:
            incoming = read(content)
        except ValueError as error:
            log.info("reply to link %s dropped: %s", link.id, error)
            return ReplyResult(Outcome.DROPPED, "Unreadable", grant.workflow_id)
        reply = _Reply(incoming, token or "", link, principal, on_file.email)
        if incoming.automatic:
            await self._audit_refusal(reply, Why.AUTOMATIC, "an automatic reply (not answered)")
            return ReplyResult(Outcome.DROPPED, Why.AUTOMATIC, grant.workflow_id)
        if not same_address(incoming.sender, reply.address):
            return await self._refuse(
                reply, Why.WRONG_SENDER, sender=incoming.sender or "an unreadable address"
            )
        usable = await self._links.usable(reply.token)
        if usable == LinkProblem.USED:
            return await self._refuse(reply, Why.LINK_USED)
        if isinstance(usable, LinkProblem):
            return await self._refuse(reply, Why.LINK_EXPIRED)
        return await self._decide(reply)

    async def _decide(self, reply: _Reply) -> ReplyResult:
        grant = reply.link.grant
        try:
            view = await self._service.view(reply.principal, grant.workflow_id)
        except NotFound:
            return await self._refuse(reply, Why.MOVED_ON)
        except RPCError as error:
            return self._retry(grant.workflow_id, error)
        moved = self._moved(reply, view)
        if moved is not None:
            return await self._refuse(reply, moved, view)
        if not view.chain[grant.step_index].email_reply:
            return await self._refuse(reply, Why.NOT_ALLOWED, view)
        command = command_of(reply.incoming.first_line)
        if command is None:
            return await self._refuse(reply, Why.UNREADABLE, view, keep_link=True)
        if not await self._links.use(reply.link, f"email_reply:{command.decision}"):
            return await self._refuse(reply, Why.LINK_USED, view)
        body = ApproveRequest(
            decision=command.decision, notes=command.notes, proposal_version=grant.proposal_version
        )
        try:
            await self._service.decide(
                reply.principal, grant.workflow_id, body, channel=DecisionChannel.EMAIL_REPLY
            )
        except RequestError as refused:
            # The workflow refused it (role, segregation of duties, a version or step it no longer
            # awaits): those refusals are already in its trail; anything else (it had ended) is audited here.
            if isinstance(refused, WorkflowFinished) or refused.code not in REFUSAL_ERRORS:
                await self._audit_refusal(reply, refused.code, refused.message, view.state)
            detail = f"The request refused the decision: {refused.message}"
            await self._explain(reply, detail)
            log.info("reply for %s refused by the workflow: %s", grant.workflow_id, refused.code)
            return ReplyResult(Outcome.REFUSED, refused.code, grant.workflow_id)
        except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as error:
            # Not delivered (or not known to be): the link is given back and the sending server retries.
            # A decision that did land meanwhile makes the retry a refusal (already decided), never a second.
            await self._links.release(reply.link)
            return self._retry(grant.workflow_id, error)
        log.info("reply decided %s: %s by %s", grant.workflow_id, command.decision, reply.principal.id)
        return ReplyResult(Outcome.DECIDED, str(command.decision), grant.workflow_id)

    def _retry(self, workflow_id: str, error: Exception) -> ReplyResult:
        log.warning("reply for %s: Temporal did not answer (%s); the sender will retry", workflow_id, error)
        return ReplyResult(Outcome.RETRY, "Unavailable", workflow_id)

    def _moved(self, reply: _Reply, view: WorkflowView) -> Why | None:
        """Why the step the link names no longer awaits this decision, if it does not."""
        grant = reply.link.grant
        if not view.state.is_waiting or view.current_step != grant.step_index:
            return Why.MOVED_ON
        if view.chain[grant.step_index].status != StepStatus.WAITING:
            return Why.MOVED_ON
        if view.proposal is None or view.proposal.version != grant.proposal_version:
            return Why.EDITED
        return None

    async def _refuse(
        self,
        reply: _Reply,
        why: Why,
        view: WorkflowView | None = None,
        *,
        sender: str = "",
        keep_link: bool = False,
    ) -> ReplyResult:
        grant = reply.link.grant
        current = view.proposal.version if view is not None and view.proposal is not None else "?"
        detail = EXPLAINED[why].format(
            asked=grant.proposal_version, current=current, inbox=self._inbox, sender=sender[:254]
        )
        await self._audit_refusal(reply, why, detail.split("\n")[0], view.state if view else None)
        # Still usable: a reply to the explanation is a reply to the same link.
        reply_to = f"decide+{reply.token}@{self._domain}" if keep_link else None
        await self._explain(reply, detail, reply_to)
        log.info("reply for %s refused: %s", grant.workflow_id, why)
        return ReplyResult(Outcome.REFUSED, why, grant.workflow_id)

    async def _explain(self, reply: _Reply, detail: str, reply_to: str | None = None) -> None:
        """Tell the principal, at the address on file only, why nothing happened. Best effort: the
        refusal stands, and is audited, whether or not the mail server takes the explanation."""
        if not reply.address:
            log.info("no address on file for %s: refusal not explained", reply.principal.id)
            return
        if self._smtp is None:
            log.warning("no SMTP server configured (COUNTERSIGN_SMTP_HOST): refusal not explained")
            return
        grant = reply.link.grant
        body = (
            f"Hello {reply.principal.name},\n\nNothing was decided by a reply about request "
            f"{grant.workflow_id} (step {grant.step_index + 1}, proposal version "
            f"{grant.proposal_version}).\n\n{detail}\n\n-- Countersign\n"
        )
        message = explanation(
            reply.incoming,
            sender=self._from,
            to=reply.address,
            body=body,
            domain=self._domain,
            reply_to=reply_to,
        )
        try:
            await send_message(self._smtp, message)
        except Exception as error:  # the refusal must stand whatever the mail server does
            log.warning("explanation for %s not sent: %s", grant.workflow_id, error)

    async def _audit_refusal(
        self, reply: _Reply, code: str, message: str, state: WorkflowState | None = None
    ) -> None:
        """In the workflow's refusal chain of the SQL audit log (as ApprovalService._audit_refusal does),
        whether the workflow still runs or not. Best effort, as every refusal's audit."""
        if self._audit is None:
            return
        workflow_id = reply.link.grant.workflow_id
        try:
            current = state or await published_state(
                self._client, workflow_id, WorkflowState.WAITING_FOR_APPROVAL
            )
            await self._audit.refused(reply.principal, workflow_id, "email_reply", code, message, current)
        except Exception as error:  # a refusal must never fail because the audit database is away
            log.warning("refused reply for %s not audited: %s", workflow_id, error)

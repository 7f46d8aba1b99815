"""Deciding from Slack (docs/slack.md): what the gateway does with a signed interaction.

Slack wants an answer within 3 seconds, and a decision waits for the workflow (and its first step
after). So `receive` verifies, reads the payload and answers at once; the rest runs in the background:

- Approve: the Slack user is mapped to a principal (`PrincipalStore.by_slack_user`), then the decision
  is applied with `ApprovalService.decide(..., channel=slack)`, which runs every usual check in the
  workflow (role, tenant, segregation of duties, the proposal version the message showed).
- Reject: a modal asks for the reason (`views.open` at once: a trigger id lasts 3 seconds); its
  submission rejects with the reason as the decision's notes.
- Then every recorded message of the request is updated (`chat.update`) to show the outcome; a
  refusal (an unknown user, a wrong role, a stale version, already decided) is logged, audited, and
  told to the user alone (`chat.postEphemeral`), and nothing is decided.

Audited: the workflow keeps its own refusals in its trail (approval_updates.py); refusals it never
sees (an unknown Slack user, a message about a step that is over, a finished workflow) go to the
workflow's refusal chain in the SQL audit log, as the owning tenant's.
"""

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.client import Client
from temporalio.service import RPCError

from countersign.activities.slack_blocks import reject_modal
from countersign.activities.slack_channel import call_slack, update_message, web_client
from countersign.api.services.approvals import ApprovalService
from countersign.api.services.audit_log import AuditLog
from countersign.api.services.slack_requests import Interaction, SlackRequestVerifier, parse
from countersign.config.settings import Settings
from countersign.models import search_attributes as sa
from countersign.models.channels import DecisionChannel
from countersign.models.decisions import ApproveRequest
from countersign.models.enums import Decision, WorkflowState
from countersign.models.errors import Conflict, NotFound, RequestError, WorkflowFinished
from countersign.models.principals import Principal
from countersign.store.principals import PrincipalStore
from countersign.store.slack_messages import SlackMessages

log = logging.getLogger(__name__)
UNKNOWN_USER = "UnknownSlackUser"
STALE_STEP = "StaleStep"
# What a refusal's ephemeral reply starts with: the user must not think anything happened.
NOTHING = "Nothing was decided"


@dataclass(frozen=True)
class Ack:
    """What Slack is answered at once (None: an empty 200), and what to start once it is sent."""

    body: dict[str, Any] | None = None
    then: Callable[[], Awaitable[None]] | None = None


class SlackInteractions:
    def __init__(
        self,
        *,
        verifier: SlackRequestVerifier,
        slack: AsyncWebClient,
        messages: SlackMessages,
        service: ApprovalService,
        principals: PrincipalStore,
        audit: AuditLog | None,
        client: Client,
    ) -> None:
        self._verifier = verifier
        self._slack = slack
        self._messages = messages
        self._service = service
        self._principals = principals
        self._audit = audit
        self._client = client
        self._running: set[asyncio.Task[None]] = set()

    async def receive(self, body: bytes, timestamp: str | None, signature: str | None) -> Ack:
        """The acknowledgement, and the work to start once it is sent. Raises SlackUnauthenticated,
        SlackMalformed or ReplayGuardFull (slack_requests.py) before anything runs."""
        self._verifier.verify(body, timestamp, signature)
        interaction = parse(body)
        if interaction.kind == "ignored":
            return Ack()
        if interaction.kind == "reject_reason" and not interaction.reason:
            return Ack(
                {"response_action": "errors", "errors": {"reason": "Say why the request is rejected."}}
            )
        return Ack(then=functools.partial(self._spawn, interaction))

    async def _spawn(self, interaction: Interaction) -> None:
        """Started after the answer went out (the route's background), and kept so that closing the
        gateway lets it finish: it does not hold the answer's connection."""
        task = asyncio.create_task(self._handle(interaction))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def close(self, grace: float = 10.0) -> None:
        """Let decisions under way finish (briefly), then stop."""
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=grace)
            for task in pending:
                task.cancel()
        await self._messages.close()
        if self._slack.session is not None:
            await self._slack.session.close()

    async def _handle(self, interaction: Interaction) -> None:
        try:
            principal = await self._principals.by_slack_user(interaction.user_id)
            if principal is None:
                await self._unknown_user(interaction)
            elif interaction.kind == "reject":
                await self._ask_reason(interaction)
            else:
                approve = interaction.kind == "approve"
                await self._decide(principal, interaction, approve)
        except Exception:  # a background task: nobody else would see it
            log.exception("Slack interaction on %s failed", interaction.workflow_id)

    async def _ask_reason(self, interaction: Interaction) -> None:
        # What the modal's submission will say it is about (and where to reply): as the button said.
        target = {
            "w": interaction.workflow_id,
            "s": interaction.step_index,
            "v": interaction.proposal_version,
        }
        if interaction.channel_id:
            target["c"] = interaction.channel_id
        metadata = json.dumps(target, separators=(",", ":"))
        opened = await call_slack(
            self._slack.views_open,
            "views.open",
            trigger_id=interaction.trigger_id,
            view=reject_modal(interaction.workflow_id, metadata),
        )
        if opened is None:
            await self._tell(interaction, f"{NOTHING}: Slack did not open the form; use Open instead.")

    async def _decide(self, principal: Principal, interaction: Interaction, approve: bool) -> None:
        workflow_id, step = interaction.workflow_id, interaction.step_index
        try:
            await self._current_step(principal, interaction)
            body = ApproveRequest(
                decision=Decision.APPROVED if approve else Decision.REJECTED,
                notes=None if approve else interaction.reason,
                proposal_version=interaction.proposal_version,
            )
            view = await self._service.decide(principal, workflow_id, body, channel=DecisionChannel.SLACK)
        except RequestError as refused:
            log.info("Slack decision by %s on %s refused: %s", principal.id, workflow_id, refused.code)
            # The workflow keeps the refusals it saw in its own trail; these two it never sees.
            if refused.code == STALE_STEP or isinstance(refused, WorkflowFinished):
                await self._audit_refusal(principal, workflow_id, refused)
            await self._tell(interaction, f"{NOTHING}: {refused.message}")
            return
        except RPCError as error:
            log.warning("Slack decision on %s not delivered: %s", workflow_id, error.message)
            await self._tell(interaction, f"{NOTHING}: Countersign could not reach the request; try again.")
            return
        open_step = view.state.is_waiting and view.current_step == step
        verb = "approved" if approve else "rejected"
        status = f"Step {step + 1} {verb} by {principal.name} in Slack."
        if open_step:
            chain = view.chain[step]
            status += f" {chain.approvals()} of {chain.quorum} approvals so far."
        for message in await self._messages.of_workflow(workflow_id):
            same = (message.step_index, message.proposal_version) == (step, interaction.proposal_version)
            try:
                await update_message(
                    self._slack, self._messages, message, status, still_open=open_step and same
                )
            except Exception as error:  # Slack busy: the workflow's next notification updates it again
                log.warning("Slack message %s of %s not updated: %s", message.ts, workflow_id, error)

    async def _current_step(self, principal: Principal, interaction: Interaction) -> None:
        """Refuses a message about a step that is over (the request moved on at the same version). Who
        may decide is the workflow's to say: a request the reviewer may not read is left to it."""
        try:
            view = await self._service.view(principal, interaction.workflow_id)
        except NotFound:
            return
        if (
            view.state.is_waiting
            and view.current_step is not None
            and view.current_step != interaction.step_index
        ):
            raise Conflict(
                f"this message is about step {interaction.step_index + 1}; the request has moved on to step "
                f"{view.current_step + 1}",
                STALE_STEP,
            )

    async def _unknown_user(self, interaction: Interaction) -> None:
        log.warning(
            "Slack user %s is no principal: refused on %s", interaction.user_id, interaction.workflow_id
        )
        await self._tell(
            interaction,
            f"{NOTHING}: your Slack account is not linked to a Countersign principal. Ask an administrator.",
        )
        # Audited as the owning tenant's, in the request's refusal chain (an unknown user has no tenant).
        try:
            described = await self._client.get_workflow_handle(interaction.workflow_id).describe()
        except RPCError:
            return  # no such request: nothing to attach the refusal to (logged above)
        tenant = described.typed_search_attributes.get(sa.TENANT)
        if not tenant:
            return
        stranger = Principal(
            id=f"slack:{interaction.user_id}", name=f"Slack user {interaction.user_id}", tenant=tenant
        )
        refused = Conflict("this Slack user is not linked to a principal", UNKNOWN_USER)
        await self._audit_refusal(
            stranger, interaction.workflow_id, refused, described.typed_search_attributes.get(sa.STATE)
        )

    async def _audit_refusal(
        self, principal: Principal, workflow_id: str, refused: RequestError, state: str | None = None
    ) -> None:
        if self._audit is None:
            return
        try:
            if state is None:
                described = await self._client.get_workflow_handle(workflow_id).describe()
                state = described.typed_search_attributes.get(sa.STATE)
            current = WorkflowState(state) if state else WorkflowState.WAITING_FOR_APPROVAL
            await self._audit.refused(
                principal, workflow_id, "decision", refused.code, refused.message, current
            )
        except Exception as error:  # the user has heard the refusal whatever the audit database does
            log.warning("Slack refusal on %s not audited: %s", workflow_id, error)

    async def _tell(self, interaction: Interaction, text: str) -> None:
        """A reply only the user sees, where they clicked (or in their DM with the app)."""
        await call_slack(
            self._slack.chat_postEphemeral,
            "chat.postEphemeral",
            channel=interaction.channel_id or interaction.user_id,
            user=interaction.user_id,
            text=text,
        )


async def open_slack(
    settings: Settings,
    service: ApprovalService,
    principals: PrincipalStore,
    audit: AuditLog | None,
    client: Client,
) -> SlackInteractions | None:
    """The gateway's Slack side when COUNTERSIGN_SLACK_SIGNING_SECRET is set, else None. Without a bot
    token it still verifies and decides, but can neither open the reason's modal nor reply."""
    if settings.slack_signing_secret is None:
        return None
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
    return SlackInteractions(
        verifier=SlackRequestVerifier(settings.slack_signing_secret.get_secret_value()),
        # One session for the gateway's calls: a decision updates every message of its request.
        slack=web_client(token, settings.slack_api_url, aiohttp.ClientSession()),
        messages=await SlackMessages.open(settings.audit_url),
        service=service,
        principals=principals,
        audit=audit,
        client=client,
    )

"""The Slack notification channel (slack_sdk's Web API client): "decision needed" messages with Approve,
Reject and Open buttons, and updates to every earlier message of a request once it no longer asks for
a decision. On only with COUNTERSIGN_SLACK_BOT_TOKEN (activities/plugins.py); docs/slack.md.

A notification with a prompt is posted to each recipient with a Slack member id (a DM: the user id as
the channel) and to the channel of each role the step waits on (COUNTERSIGN_SLACK_ROLE_CHANNELS). Every
message is recorded (store/slack_messages.py), which makes a delivery idempotent on the notification key
and lets any later notification of the request update what went before: the next step, an edit, a
reassignment, the outcome. A decision made anywhere (the API, an email, Slack) is followed by one of
those, so no message keeps live buttons for a step that is over.

Slack's rate limits, 5xx answers and unreachability raise (the activity retries, after Retry-After when
Slack gave one); a channel or user Slack does not know, or any other refusal retrying cannot change,
is logged and skipped, never failing the notification.
"""

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from temporalio.exceptions import ApplicationError

from countersign.activities import slack_blocks
from countersign.models.channels import DecisionPrompt
from countersign.models.enums import Role, WorkflowState
from countersign.models.notifications import Notification, NotificationKind
from countersign.models.principals import Recipient
from countersign.store.slack_messages import SlackMessage, SlackMessages
from countersign.store.sql import OpenedOnFirstUse

log = logging.getLogger(__name__)
# Refusals about one target: it is gone or out of reach, and retrying will not bring it back.
GONE = frozenset(
    {
        "channel_not_found",
        "user_not_found",
        "not_in_channel",
        "is_archived",
        "account_inactive",
        "user_disabled",
        "cannot_dm_bot",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
    }
)
# Refusals that say "not now".
BUSY = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"})


def web_client(token: str, api_url: str, session: aiohttp.ClientSession | None = None) -> AsyncWebClient:
    """slack_sdk's async Web API client at `api_url` (COUNTERSIGN_SLACK_API_URL): the SDK joins method
    names to it as a relative URL, so it must end with a slash. With `session`, its calls share that
    session's connections; without, each call opens (and closes) its own."""
    base = api_url if api_url.endswith("/") else api_url + "/"
    return AsyncWebClient(token=token, base_url=base, session=session)


async def call_slack(
    call: Callable[..., Awaitable[AsyncSlackResponse]], what: str, **kwargs: Any
) -> AsyncSlackResponse | None:
    """One Web API call: its answer; None when Slack refused it for good (logged); raises
    ApplicationError (retryable, after Slack's Retry-After if any) when Slack is busy or away."""
    try:
        return await call(**kwargs)
    except SlackApiError as error:
        status = error.response.status_code
        code = str(error.response.get("error") or "") if isinstance(error.response.data, dict) else ""
        if status == 429 or status >= 500 or code in BUSY:
            retry_after = error.response.headers.get("Retry-After") if error.response.headers else None
            delay = timedelta(seconds=float(retry_after)) if retry_after and retry_after.isdigit() else None
            raise ApplicationError(
                f"Slack {what}: {code or status}, try again", type="SlackUnavailable", next_retry_delay=delay
            ) from None
        if code in GONE:
            log.warning("Slack %s skipped: %s", what, code)
        else:
            log.error("Slack refused %s: %s (HTTP %s)", what, code or "no error code", status)
        return None
    except (aiohttp.ClientError, TimeoutError) as error:
        raise ApplicationError(f"Slack {what}: {type(error).__name__}", type="SlackUnavailable") from None


def outcome_status(kind: NotificationKind, subject: str | None) -> str:
    """What an earlier message says once a notification without a prompt arrives. Only words of ours:
    the state is read from the outcome's subject (`STATE: …`) and kept only if it is one."""
    if kind == NotificationKind.OUTCOME:
        state = (subject or "").split(":", 1)[0].strip()
        known = state in {s.value for s in WorkflowState}
        return f"This request has ended: {state}." if known else "This request has ended."
    if kind == NotificationKind.DEAD_LETTER:
        return "This request failed after its decision; an ADMIN may retry it."
    return "This message is out of date."


def stale_because(message: SlackMessage, note: Notification) -> str | None:
    """Why `message` no longer asks for a decision now that `note` arrived; None: it still does (a
    reminder or an escalation of the same step and version leaves the first message standing)."""
    prompt = note.prompt
    if prompt is None:
        return outcome_status(note.kind, note.subject)
    if message.proposal_version < prompt.proposal_version:
        return (
            f"The proposal was edited (now version {prompt.proposal_version}): this message is out of date."
        )
    if message.proposal_version == prompt.proposal_version and message.step_index < prompt.step_index:
        moved = prompt.step_index + 1
        return f"Step {message.step_index + 1} was decided; the request moved on to step {moved}."
    same = (message.proposal_version, message.step_index) == (prompt.proposal_version, prompt.step_index)
    if same and note.kind == NotificationKind.REASSIGNED:
        return "An administrator reassigned this step: this message is out of date."
    return None


def _superseded(prompt: DecisionPrompt, earlier: list[SlackMessage]) -> bool:
    """A later step or version was already posted: this notification arrived out of order."""
    here = (prompt.proposal_version, prompt.step_index)
    return any((m.proposal_version, m.step_index) > here for m in earlier)


class SlackChannel:
    name = "slack"

    def __init__(
        self,
        client: AsyncWebClient,
        store_url: str,
        *,
        public_url: str,
        role_channels: Mapping[Role, str] | None = None,
        schema: str | None = None,
    ) -> None:
        self._client = client
        self._store = OpenedOnFirstUse(lambda: SlackMessages.open(store_url, schema=schema))
        self._public_url = public_url
        self._role_channels = dict(role_channels or {})

    async def close(self) -> None:
        await self._store.close()

    async def deliver(self, note: Notification, recipients: list[Recipient]) -> int:
        store = await self._store.get()
        earlier = await store.of_workflow(note.workflow_id)
        if note.kind == NotificationKind.OUTCOME:
            await store.end(note.workflow_id, note.tenant, note.subject)  # before updating: see _post
        await self._update_stale(store, note, earlier)
        prompt = note.prompt
        if prompt is None:
            return 0
        if await store.ended(note.workflow_id) is not None or _superseded(prompt, earlier):
            log.info("%s: not posted to Slack, the request has moved on", note.key)
            return 0
        posted = await self._post(store, note, prompt, recipients)
        # An outcome delivered meanwhile (deliveries run side by side) may have missed what was just
        # posted: it marked the end first, so one of the two sees the other.
        subject = await store.ended(note.workflow_id) if posted else None
        for message in posted if subject is not None else []:
            await update_message(
                self._client, store, message, outcome_status(NotificationKind.OUTCOME, subject)
            )
        return len(posted)

    def _targets(self, prompt: DecisionPrompt, recipients: list[Recipient]) -> dict[str, str]:
        """target key -> the channel to post to: each reviewer's DM, then each waiting role's channel."""
        targets = {f"user:{r.slack_user_id}": r.slack_user_id for r in recipients if r.slack_user_id}
        for role in prompt.awaiting:
            channel = self._role_channels.get(role)
            if channel:
                targets[f"channel:{channel}"] = channel
        return targets

    async def _post(
        self, store: SlackMessages, note: Notification, prompt: DecisionPrompt, recipients: list[Recipient]
    ) -> list[SlackMessage]:
        text = slack_blocks.fallback_text(prompt)
        blocks = slack_blocks.decision_blocks(prompt, self._public_url)
        posted = []
        for target, channel in self._targets(prompt, recipients).items():
            if await store.sent(note.key, target):
                continue  # an activity retry: posted before
            answer = await call_slack(
                self._client.chat_postMessage, "chat.postMessage", channel=channel, text=text, blocks=blocks
            )
            if answer is None:
                continue
            message = answer.get("message") or {}
            posted.append(
                await store.record(
                    SlackMessage(
                        note_key=note.key,
                        target=target,
                        team_id=message.get("team") if isinstance(message, dict) else None,
                        channel_id=str(answer.get("channel") or channel),
                        ts=str(answer["ts"]),
                        workflow_id=note.workflow_id,
                        tenant=note.tenant,
                        step_index=prompt.step_index,
                        proposal_version=prompt.proposal_version,
                        kind=note.kind.value,
                        blocks=blocks,
                        sent_at=datetime.now(UTC),
                    )
                )
            )
        return posted

    async def _update_stale(
        self, store: SlackMessages, note: Notification, earlier: list[SlackMessage]
    ) -> None:
        for message in earlier:
            if message.closed is not None or message.note_key == note.key:
                continue
            why = stale_because(message, note)
            if why is None:
                continue
            await update_message(self._client, store, message, why)


async def update_message(
    client: AsyncWebClient,
    store: SlackMessages,
    message: SlackMessage,
    status: str,
    *,
    still_open: bool = False,
) -> bool:
    """Show `status` on a recorded message (and drop its decision buttons unless `still_open`); False
    when Slack refused it for good. Raises ApplicationError when Slack is busy or away."""
    blocks = slack_blocks.with_status(message.blocks, status, still_open=still_open)
    answer = await call_slack(
        client.chat_update,
        "chat.update",
        channel=message.channel_id,
        ts=message.ts,
        text=status,
        blocks=blocks,
    )
    if not still_open:
        await store.mark_closed(message.id, status)
    return answer is not None

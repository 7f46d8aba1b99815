"""What the gateway believes of a request to `POST /integrations/slack/interactions`, and what it asks.

Believed only when Slack signed it: `v0=HMAC-SHA256(signing secret, "v0:<timestamp>:<raw body>")` in
`X-Slack-Signature` (slack_sdk's SignatureVerifier), with `X-Slack-Request-Timestamp` within five
minutes of now, and a signature not seen before in that window. Replays are caught in memory, per
gateway process (ReplayGuard): behind a balancer, a replay sent to another gateway within the five
minutes is not, and a restart forgets (docs/slack.md says so).

Then the form's `payload` (JSON) is read into an `Interaction`: who (Slack's user id, which Slack signs),
and what (the button or the modal, with the workflow id, step and proposal version our message carried:
those say what the message showed, never who may decide).
"""

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from slack_sdk.signature import SignatureVerifier

from countersign.activities.slack_blocks import APPROVE, REJECT

# Slack's window for a request's timestamp, either way.
WINDOW_SECONDS = 300
# Signatures kept for the window: past this many the guard refuses (503) rather than forget one.
MAX_REMEMBERED = 100_000


class SlackUnauthenticated(Exception):
    """Not a request Slack signed just now (or one seen before): answered 401, nothing decided."""


class SlackMalformed(Exception):
    """Signed by Slack, but not an interaction this gateway can read: answered 400."""


class ReplayGuardFull(Exception):
    """More signed requests in five minutes than the guard keeps: answered 503 (Slack may retry)."""


class ReplayGuard:
    """Signatures seen in the last WINDOW_SECONDS (plus a minute for clocks), oldest first."""

    def __init__(self, window: float = WINDOW_SECONDS + 60, limit: int = MAX_REMEMBERED) -> None:
        self._window = window
        self._limit = limit
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, signature: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        while self._seen:
            oldest, until = next(iter(self._seen.items()))
            if until > now:
                break
            del self._seen[oldest]
        if signature in self._seen:
            return False
        if len(self._seen) >= self._limit:
            raise ReplayGuardFull("too many Slack interactions in five minutes")
        self._seen[signature] = now + self._window
        return True


class SlackRequestVerifier:
    def __init__(self, signing_secret: str, guard: ReplayGuard | None = None) -> None:
        self._verifier = SignatureVerifier(signing_secret)
        self._guard = guard or ReplayGuard()

    def verify(
        self, body: bytes, timestamp: str | None, signature: str | None, now: float | None = None
    ) -> None:
        """Raises SlackUnauthenticated unless Slack signed this body just now, for the first time."""
        if not timestamp or not signature:
            raise SlackUnauthenticated("no Slack signature")
        if not timestamp.isdigit() or len(timestamp) > 12:
            raise SlackUnauthenticated("the Slack timestamp is not one")
        if abs((time.time() if now is None else now) - int(timestamp)) > WINDOW_SECONDS:
            raise SlackUnauthenticated("the Slack timestamp is not within five minutes of now")
        try:
            # Also checks the timestamp (on its own clock): the check above names the reason.
            valid = self._verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
        except (ValueError, UnicodeDecodeError):
            valid = False
        if not valid:
            raise SlackUnauthenticated("the Slack signature does not match")
        if not self._guard.first_time(signature):
            raise SlackUnauthenticated("this Slack request was seen before (a replay)")


# ---- what the payload says ---------------------------------------------------------------------------


class _Ref(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9]+$")


class _Target(BaseModel):
    """What our button or modal carried: the message's request, step and proposal version."""

    model_config = ConfigDict(extra="forbid")
    w: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    s: int = Field(ge=0, le=1000)
    v: int = Field(ge=1)
    c: str | None = Field(default=None, max_length=40, pattern=r"^[A-Za-z0-9]+$")  # modal: where to reply


class _Action(BaseModel):
    model_config = ConfigDict(extra="ignore")
    action_id: str = Field(max_length=255)
    value: str | None = Field(default=None, max_length=2000)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str = Field(max_length=64)
    user: _Ref
    team: _Ref | None = None
    channel: _Ref | None = None
    trigger_id: str | None = Field(default=None, max_length=255)
    actions: list[_Action] = Field(default_factory=list, max_length=25)
    view: dict[str, Any] | None = None


@dataclass(frozen=True)
class Interaction:
    kind: Literal["approve", "reject", "reject_reason", "ignored"]
    user_id: str
    team_id: str | None = None
    workflow_id: str = ""
    step_index: int = 0
    proposal_version: int = 1
    channel_id: str | None = None  # where an ephemeral reply goes
    trigger_id: str | None = None
    reason: str | None = None


def _target(text: str | None) -> _Target:
    try:
        return _Target.model_validate_json(text or "")
    except ValidationError as error:
        raise SlackMalformed("the interaction does not name a request of ours") from error


def parse(body: bytes) -> Interaction:
    """The interaction in a signed body; SlackMalformed if it is not one this gateway reads."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=10)
        payload = _Payload.model_validate(json.loads(form["payload"][0]))
    except (UnicodeDecodeError, ValueError, KeyError, ValidationError) as error:
        raise SlackMalformed("not a Slack interaction payload") from error
    user_id, team_id = payload.user.id, payload.team.id if payload.team else None
    if payload.type == "block_actions":
        ours = [a for a in payload.actions if a.action_id in (APPROVE, REJECT)]
        if not ours:
            return Interaction(
                "ignored", user_id, team_id
            )  # the Open button (a link): Slack tells us of it too
        target = _target(ours[0].value)
        return Interaction(
            "approve" if ours[0].action_id == APPROVE else "reject",
            workflow_id=target.w,
            step_index=target.s,
            proposal_version=target.v,
            channel_id=payload.channel.id if payload.channel else None,
            trigger_id=payload.trigger_id,
            user_id=user_id,
            team_id=team_id,
        )
    view = payload.view or {}
    if payload.type == "view_submission" and view.get("callback_id") == REJECT:
        target = _target(view.get("private_metadata"))
        try:
            reason = view["state"]["values"]["reason"]["reason"]["value"]
        except (KeyError, TypeError):
            reason = None
        return Interaction(
            "reject_reason",
            workflow_id=target.w,
            step_index=target.s,
            proposal_version=target.v,
            channel_id=target.c,
            reason=reason.strip()[:4000] if isinstance(reason, str) else None,
            user_id=user_id,
            team_id=team_id,
        )
    return Interaction("ignored", user_id, team_id)

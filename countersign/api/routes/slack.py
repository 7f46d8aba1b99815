"""Slack's interactivity endpoint (docs/slack.md): authenticated by Slack's request signature, not by an
API key. The logic is in api/services/slack_interactions.py; this maps its answers to HTTP."""

import logging

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask

from countersign.api.deps import ErrorBody
from countersign.api.services.slack_interactions import SlackInteractions
from countersign.api.services.slack_requests import ReplayGuardFull, SlackMalformed, SlackUnauthenticated

router = APIRouter(tags=["integrations"])
log = logging.getLogger(__name__)


def _refusal(code: int, detail: str, reason: str, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": reason}, status_code=code, headers=headers or None)


@router.post(
    "/integrations/slack/interactions",
    summary="Slack's Request URL for interactivity: Approve, Reject and the reason's modal",
    description=(
        "Called by Slack, signed with the app's signing secret (`X-Slack-Signature`, "
        "`X-Slack-Request-Timestamp`), with a form whose `payload` is the interaction. Answers at once "
        "(an empty 200, or the modal's errors); the decision is applied in the background and its "
        "outcome shown by updating the messages."
    ),
    response_class=Response,
    responses={
        200: {"description": "Acknowledged (an empty body, or Slack's `response_action` for a modal)"},
        400: {
            "model": ErrorBody,
            "description": "Signed by Slack, but not an interaction this gateway reads",
        },
        401: {"model": ErrorBody, "description": "No valid Slack signature, a stale timestamp, or a replay"},
        404: {"model": ErrorBody, "description": "Slack is not configured on this gateway"},
        413: {"model": ErrorBody, "description": "The request body is larger than the gateway accepts"},
        503: {"model": ErrorBody, "description": "Too many Slack interactions at once; Slack may retry"},
    },
)
async def slack_interactions(request: Request) -> Response:
    slack: SlackInteractions | None = getattr(request.app.state, "slack", None)
    if slack is None:
        return _refusal(status.HTTP_404_NOT_FOUND, "Slack is not configured on this gateway", "NotFound")
    body = await request.body()
    headers = request.headers
    try:
        ack = await slack.receive(
            body, headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature")
        )
    except SlackUnauthenticated as refused:
        log.warning("Slack interaction refused: %s", refused)
        return _refusal(status.HTTP_401_UNAUTHORIZED, str(refused), "SlackSignature")
    except SlackMalformed as refused:
        return _refusal(status.HTTP_400_BAD_REQUEST, str(refused), "SlackPayload")
    except ReplayGuardFull as refused:
        log.warning("Slack interaction refused: %s", refused)
        return _refusal(
            status.HTTP_503_SERVICE_UNAVAILABLE, str(refused), "Unavailable", **{"Retry-After": "1"}
        )
    # The decision starts once the answer is sent: Slack waits for the answer only.
    after = BackgroundTask(ack.then) if ack.then is not None else None
    if ack.body is None:
        return Response(status_code=status.HTTP_200_OK, background=after)
    return JSONResponse(ack.body, background=after)

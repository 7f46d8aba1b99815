"""Long-polling a workflow's view: `GET /workflows/{id}?wait_seconds=N&until=decided|final`.

For a caller without a public URL for callbacks. The gateway asks the workflow's `view` query again,
backing off from a tenth of a second to one, until the point is reached or the wait ends; a query
writes nothing to the workflow's history, so a client that polls for an hour costs the history nothing.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from countersign.models.enums import WorkflowState
from countersign.models.views import Until, WorkflowView

FIRST_POLL = 0.1
LAST_POLL = 1.0
# Before a decision: planning, validation, and the wait for reviewers (escalated included).
_UNDECIDED = frozenset(
    {
        WorkflowState.RECEIVED,
        WorkflowState.AI_ANALYZED,
        WorkflowState.WAITING_FOR_APPROVAL,
        WorkflowState.ESCALATED,
    }
)


def reached(state: WorkflowState, until: Until) -> bool:
    """`decided`: approved (by people or a policy rule) or ended; `final`: ended."""
    if until == Until.DECIDED:
        return state not in _UNDECIDED
    return state.is_final


async def wait_for(
    read: Callable[[], Awaitable[WorkflowView]], until: Until, wait: timedelta
) -> WorkflowView:
    """The view once `until` is reached, or the latest one when `wait` has passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait.total_seconds()
    delay = FIRST_POLL
    while True:
        view = await read()
        left = deadline - loop.time()
        if reached(view.state, until) or left <= 0:
            return view
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, LAST_POLL)

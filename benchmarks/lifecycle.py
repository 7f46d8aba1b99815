"""One Countersign lifecycle through the HTTP gateway, as a client sees it: submit, wait until the
proposal awaits approval, approve, wait until the action has executed."""

import asyncio
import time
from typing import Any

import httpx

TEXT = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"
WAITING, EXECUTED = "WAITING_FOR_APPROVAL", "ACTION_EXECUTED"
# Long enough for c=200 on two cores; a submit past it falls back to polling.
SUBMIT_WAIT_SECONDS = 60
FINAL = {"ACTION_EXECUTED", "REJECTED", "EXPIRED", "CANCELLED", "FAILED"}


class LifecycleFailed(Exception):
    pass


# 503s a client retried (Temporal did not answer a query in time): reported beside the figures.
RETRIED_503: list[str] = []


async def _await_state(
    http: httpx.AsyncClient, headers: dict[str, str], workflow_id: str, wanted: str, poll: float
) -> dict[str, Any]:
    for _ in range(int(120 / poll)):
        reply = await http.get(f"/workflows/{workflow_id}", headers=headers)
        if reply.status_code == 200:
            view: dict[str, Any] = reply.json()
            if view["state"] == wanted:
                return view
            if view["state"] in FINAL:
                raise LifecycleFailed(f"{workflow_id} ended {view['state']}, expected {wanted}")
        elif reply.status_code == 503:  # the gateway's "try again": what a well-behaved client does
            RETRIED_503.append(workflow_id)
        elif reply.status_code != 404:  # 404: not started yet as far as a query can tell
            raise LifecycleFailed(f"GET {workflow_id}: {reply.status_code} {reply.text[:200]}")
        await asyncio.sleep(poll)
    raise LifecycleFailed(f"{workflow_id} never reached {wanted}")


async def lifecycle(
    http: httpx.AsyncClient,
    requester: dict[str, str],
    manager: dict[str, str],
    poll: float,
    approve_latencies: list[float] | None = None,
    workflow_ids: list[str] | None = None,
    wait: bool = True,
) -> float:
    """Seconds from submit to seeing ACTION_EXECUTED; raises LifecycleFailed on anything else.

    `wait`: the submit waits for the proposal (`wait_seconds`), as a client that wants it does;
    without, the client polls GET /workflows/{id} every `poll` seconds until it appears."""
    started = time.perf_counter()
    params = {"wait_seconds": SUBMIT_WAIT_SECONDS} if wait else {}
    reply = await http.post("/workflows", json={"text": TEXT}, headers=requester, params=params)
    if reply.status_code != 201:
        raise LifecycleFailed(f"submit: {reply.status_code} {reply.text[:200]}")
    workflow_id = reply.json()["workflow_id"]
    if workflow_ids is not None:
        workflow_ids.append(workflow_id)
    view = reply.json().get("view")
    if view is None or view["state"] != WAITING:  # not settled within the wait, or not asked to wait
        view = await _await_state(http, requester, workflow_id, WAITING, poll)
    body = {"decision": "approved", "proposal_version": view["proposal"]["version"]}
    asked = time.perf_counter()
    reply = await http.post(f"/workflows/{workflow_id}/approve", json=body, headers=manager)
    if approve_latencies is not None:
        approve_latencies.append(time.perf_counter() - asked)
    if reply.status_code != 200:
        raise LifecycleFailed(f"approve: {reply.status_code} {reply.text[:200]}")
    if reply.json()["state"] != EXECUTED:  # the decision answers once settled; a slow tool needs a poll
        await _await_state(http, requester, workflow_id, EXECUTED, poll)
    return time.perf_counter() - started

"""Many workflows waiting for approval at once: the worker's memory with its configured workflow cache,
the reviewer's inbox (first page, read from the inbox's projection in the database) with 100 and with
all of them pending, and one decision among them."""

import asyncio
import time
from typing import Any

import httpx

from benchmarks.harness import Stack, rss_megabytes
from benchmarks.lifecycle import SUBMIT_WAIT_SECONDS, TEXT, WAITING
from benchmarks.stats import percentile
from countersign.config.settings import Settings
from countersign.inbox_reconciler import InboxReconciler
from countersign.models import search_attributes as sa
from countersign.store.leases import Leases

SUBMITTERS = 50
INBOX_SAMPLES = 10
DECISIONS = 5
FIRST_PAGE = 50


async def _submit(http: httpx.AsyncClient, requester: dict[str, str], count: int) -> list[str]:
    ids: list[str] = []
    remaining = count

    async def submitter() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            # Waiting for the proposal keeps at most SUBMITTERS workflows planning at once, as a steady
            # stream of requests would: a burst of thousands only measures the backlog.
            reply = await http.post(
                "/workflows",
                json={"text": TEXT},
                headers=requester,
                params={"wait_seconds": SUBMIT_WAIT_SECONDS},
            )
            reply.raise_for_status()
            ids.append(reply.json()["workflow_id"])

    await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
    return ids


async def _all_waiting(bench: Stack, count: int, within: float) -> float:
    """Seconds until visibility counts `count` workflows of this run waiting for approval."""
    started = time.perf_counter()
    query = f"WorkflowType = 'ApprovalWorkflow' AND {sa.STATE.name} = '{WAITING}'"
    while (await bench.env.client.count_workflows(query)).count < count:
        if time.perf_counter() - started > within:
            raise TimeoutError(f"fewer than {count} workflows waiting after {within:.0f} s")
        await asyncio.sleep(1)
    return time.perf_counter() - started


async def _projected(bench: Stack, count: int, within: float) -> float:
    """Seconds until the inbox's projection holds `count` rows (it follows the audit batches)."""
    started = time.perf_counter()
    while await bench.app.state.pending.count() < count:
        if time.perf_counter() - started > within:
            raise TimeoutError(f"fewer than {count} rows in the inbox's projection after {within:.0f} s")
        await asyncio.sleep(0.5)
    return time.perf_counter() - started


async def _inbox_latency(http: httpx.AsyncClient, manager: dict[str, str]) -> dict[str, Any]:
    seconds: list[float] = []
    rows = 0
    for _ in range(INBOX_SAMPLES):
        started = time.perf_counter()
        reply = await http.get("/approvals/inbox", params={"limit": FIRST_PAGE}, headers=manager)
        seconds.append(time.perf_counter() - started)
        reply.raise_for_status()
        rows = len(reply.json()["items"])
    return {
        "rows": rows,
        "p50_seconds": round(percentile(seconds, 0.5), 4),
        "p95_seconds": round(percentile(seconds, 0.95), 4),
    }


async def pending(bench: Stack, count: int) -> dict[str, Any]:
    http = bench.http
    requester, manager = bench.headers["requester"], bench.headers["manager"]
    first = await _submit(http, requester, 100)
    await _all_waiting(bench, 100, within=300)
    await _projected(bench, 100, within=120)
    inbox_100 = await _inbox_latency(http, manager)

    started = time.perf_counter()
    rest = await _submit(http, requester, count - 100)
    await _all_waiting(bench, count, within=3600)
    filled = time.perf_counter() - started
    # Every waiting workflow in the projection too, or the page would be read from fewer rows.
    lag = await _projected(bench, count, within=300)
    assert bench.worker_pid is not None
    rss = rss_megabytes(bench.worker_pid)
    inbox_all = await _inbox_latency(http, manager)
    # One reconciler pass over all of them, as a worker runs it every 30 s (here without its lease).
    async with await Leases.open(bench.app.state.settings.database_url) as leases:
        reconciler = InboxReconciler(bench.env.client, bench.app.state.pending, leases, interval=30)
        asked = time.perf_counter()
        swept = await reconciler.reconcile()
        sweep_seconds = time.perf_counter() - asked

    decisions: list[float] = []
    for workflow_id in (first + rest)[:: max(1, count // DECISIONS)][:DECISIONS]:
        view = (await http.get(f"/workflows/{workflow_id}", headers=requester)).json()
        body = {"decision": "approved", "proposal_version": view["proposal"]["version"]}
        asked = time.perf_counter()
        reply = await http.post(f"/workflows/{workflow_id}/approve", json=body, headers=manager)
        decisions.append(time.perf_counter() - asked)
        reply.raise_for_status()
    return {
        "pending": count,
        "fill_seconds": round(filled, 1),
        "projection_behind_visibility_seconds": round(lag, 1),
        "worker_rss_mb": rss,
        "worker_max_cached_workflows": Settings(_env_file=None).max_cached_workflows,
        "worker_workflow_sandbox": Settings(_env_file=None).workflow_sandbox,
        "inbox_first_page_at_100": inbox_100,
        "inbox_first_page_at_all": inbox_all,
        "inbox_ratio": round(inbox_all["p50_seconds"] / inbox_100["p50_seconds"], 2),
        "reconcile_pass": {
            "seconds": round(sweep_seconds, 2),
            "waiting_listed": swept.waiting,
            "rows": swept.stored,
            "repaired": swept.repaired,
        },
        "approve_at_pending": {
            "samples": len(decisions),
            "p50_seconds": round(percentile(decisions, 0.5), 4),
            "max_seconds": round(max(decisions), 4),
        },
    }

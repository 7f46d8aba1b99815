"""Countersign against the Temporal floor, in one run, as JSON.

    uv run python -m benchmarks [--quick] [--json FILE] [--skip-pending | --only-pending]

Starts its own dev server, a worker process (Countersign's worker and a bare one for the floor) and the
gateway over TCP, then measures: `floor` (a bare workflow of the lifecycle's shape, driven by a Temporal
client), `lifecycle` (the full lifecycle through the gateway, the submit waiting for the proposal),
their `ratio`, `floor_unsandboxed_c50` (the floor on a worker without the SDK's workflow sandbox, as
Countersign's runs by default), `lifecycle_polling_c50` (the lifecycle for a client that polls instead),
`decision_latency` (the approve call vs a raw update round trip) and `pending_10k` (many workflows
waiting for approval). Only stdout carries the JSON. Figures are for comparing within one run; no
test asserts on them.
"""

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.floor import (
    PLAIN_FLOOR_QUEUE_SUFFIX,
    FloorShape,
    floor_lifecycle,
    raw_update_round_trip,
    shape_of,
)
from benchmarks.harness import Stack, machine, stack
from benchmarks.lifecycle import RETRIED_503, lifecycle
from benchmarks.pending import pending
from benchmarks.stats import level, percentile
from countersign.models.enums import Role

FULL = {"c1": 50, "c50": 500, "c200": 1000, "decisions": 50, "pending": 10_000}
QUICK = {"c1": 10, "c50": 100, "c200": 200, "decisions": 10, "pending": 1_000}
# How often a client polls GET /workflows/{id} while it waits for a state (--poll).
POLL_SECONDS = 0.05


async def _shape(bench: Stack, poll: float) -> FloorShape:
    requester, manager = bench.headers["requester"], bench.headers["manager"]
    ids: list[str] = []
    # Also warms the worker up (imports, the sandbox, connections).
    await lifecycle(bench.http, requester, manager, poll, workflow_ids=ids)
    handle = bench.env.client.get_workflow_handle(ids[0])
    await handle.result()  # the outcome notification runs after ACTION_EXECUTED
    return await shape_of(handle)


async def run(
    counts: dict[str, int], with_pending: bool, poll: float, only_pending: bool = False
) -> dict[str, Any]:
    principals = {"requester": [], "manager": [Role.MANAGER]}
    async with stack(principals, over_tcp=True, worker_process=True) as bench:
        if only_pending:
            return {"pending_10k": await pending(bench, counts["pending"])}
        client, queue = bench.env.client, bench.task_queue
        requester, manager = bench.headers["requester"], bench.headers["manager"]
        shape = await _shape(bench, poll)
        await floor_lifecycle(client, queue, shape)  # warm-up
        await floor_lifecycle(client, queue, shape, PLAIN_FLOOR_QUEUE_SUFFIX)

        def ours() -> Any:
            return lifecycle(bench.http, requester, manager, poll)

        def bare() -> Any:
            return floor_lifecycle(client, queue, shape)

        floor = {
            "c1": await level(bare, 1, counts["c1"]),
            "c50": await level(bare, 50, counts["c50"]),
        }
        ours_by_level = {
            "c1": await level(ours, 1, counts["c1"]),
            "c50": await level(ours, 50, counts["c50"]),
            "c200": await level(ours, 200, counts["c200"]),
        }
        floor["c200"] = await level(bare, 200, counts["c200"])
        ratio = {key: round(ours_by_level[key]["per_second"] / floor[key]["per_second"], 3) for key in floor}
        # The floor without the SDK's sandbox, which Countersign's worker runs without by default.
        plain = await level(
            lambda: floor_lifecycle(client, queue, shape, PLAIN_FLOOR_QUEUE_SUFFIX), 50, counts["c50"]
        )
        # The same lifecycle for a client that does not ask the submit to wait and polls instead.
        polling = await level(
            lambda: lifecycle(bench.http, requester, manager, poll, wait=False), 50, counts["c50"]
        )

        approve: list[float] = []
        raw: list[float] = []
        for _ in range(counts["decisions"]):
            await lifecycle(bench.http, requester, manager, poll, approve_latencies=approve)
            raw.append(await raw_update_round_trip(client, queue, shape))
        decision_latency = {
            "approve_p50_seconds": round(percentile(approve, 0.5), 4),
            "approve_p95_seconds": round(percentile(approve, 0.95), 4),
            "raw_update_p50_seconds": round(percentile(raw, 0.5), 4),
            "raw_update_p95_seconds": round(percentile(raw, 0.95), 4),
            "ratio_p50": round(percentile(raw, 0.5) / percentile(approve, 0.5), 3),
        }
        result: dict[str, Any] = {
            "shape": shape.model_dump(),
            "floor": floor,
            "lifecycle": ours_by_level,
            "ratio": ratio,
            "floor_unsandboxed_c50": {
                **plain,
                "ratio": round(ours_by_level["c50"]["per_second"] / plain["per_second"], 3),
            },
            "lifecycle_polling_c50": {
                **polling,
                "ratio": round(polling["per_second"] / floor["c50"]["per_second"], 3),
            },
            "decision_latency": decision_latency,
            "polls_answered_503_and_retried": len(RETRIED_503),
        }
        if with_pending:
            result["pending_10k"] = await pending(bench, counts["pending"])
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts: the same keys in minutes")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    parser.add_argument("--skip-pending", action="store_true", help="leave out pending_10k")
    parser.add_argument("--only-pending", action="store_true", help="measure pending_10k alone")
    parser.add_argument(
        "--poll", type=float, default=POLL_SECONDS, help="seconds between a client's state polls"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    counts = QUICK if args.quick else FULL
    if args.poll <= 0:
        parser.error("--poll must be positive")
    if args.skip_pending and args.only_pending:
        parser.error("--skip-pending and --only-pending exclude each other")
    result = asyncio.run(run(counts, not args.skip_pending, args.poll, args.only_pending))
    result = {
        "mode": "quick" if args.quick else "full",
        "counts": counts,
        "poll_seconds": args.poll,
        **result,
        "machine": machine(),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

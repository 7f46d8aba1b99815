"""How many `demo-review` runs per second does the gateway complete, at concurrency 1 and 50?

Measured as seed 003's engine was: each client starts a run (`POST /graph/run`) and polls
`GET /graph/state/{run_id}` until the run has finished, then starts the next; a run counts only if it
ends COMPLETED. Everything is real and in one process: the Temporal dev server, a worker, and the
gateway served by uvicorn over TCP (so HTTP parsing and connections are part of the cost).

It reports only what this run measured: read its figures as ratios within one run (seed 003's engine,
or any other, is compared by measuring it in the same session, not by a figure copied here); no test
asserts on them.
"""

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import machine, stack

# Seed 003's own example input.
CODE = (
    "def messy_function():\n    if x:\n        for i in list:\n"
    "            while True:\n                nested=True"
)
POLL_SECONDS = 0.01
FINAL = {"COMPLETED", "FAILED", "REJECTED", "EXPIRED", "CANCELLED"}


async def one_run(http: httpx.AsyncClient, headers: dict[str, str]) -> tuple[float, bool]:
    """(seconds from POST to seeing it finished, whether it completed)."""
    started = time.perf_counter()
    reply = await http.post(
        "/graph/run", json={"graph_id": "demo-review", "input_data": CODE}, headers=headers
    )
    if reply.status_code != 202:
        return time.perf_counter() - started, False
    run_id = reply.json()["run_id"]
    while True:
        state = await http.get(f"/graph/state/{run_id}", headers=headers)
        status = state.json().get("status") if state.status_code == 200 else None
        if status in FINAL:
            return time.perf_counter() - started, status == "COMPLETED"
        if time.perf_counter() - started > 120:
            return time.perf_counter() - started, False
        await asyncio.sleep(POLL_SECONDS)


async def level(
    http: httpx.AsyncClient, headers: dict[str, str], concurrency: int, runs: int
) -> dict[str, Any]:
    """`concurrency` clients share `runs` runs, each client one run at a time."""
    remaining = runs
    latencies: list[float] = []
    failures = 0

    async def client() -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            seconds, ok = await one_run(http, headers)
            latencies.append(seconds)
            failures += not ok

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    quantiles = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else latencies * 19
    return {
        "concurrency": concurrency,
        "runs": runs,
        "failures": failures,
        "seconds": round(elapsed, 3),
        "runs_per_second": round((runs - failures) / elapsed, 2),
        "p50_seconds": round(statistics.median(latencies), 3),
        "p95_seconds": round(quantiles[18], 3),
    }


async def bench(runs_at_1: int, runs_at_50: int) -> dict[str, Any]:
    async with stack({"requester": []}, over_tcp=True) as bench_stack:
        headers = bench_stack.headers["requester"]
        await level(bench_stack.http, headers, 1, 3)  # warm-up: imports, caches, connections
        at_1 = await level(bench_stack.http, headers, 1, runs_at_1)
        at_50 = await level(bench_stack.http, headers, 50, runs_at_50)
    return {
        "graph": "demo-review",
        "concurrency_1": at_1,
        "concurrency_50": at_50,
        "ratio_50_to_1": round(at_50["runs_per_second"] / at_1["runs_per_second"], 2),
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs-at-1", type=int, default=50, help="runs at concurrency 1 (default 50)")
    parser.add_argument("--runs-at-50", type=int, default=500, help="runs at concurrency 50 (default 500)")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    args = parser.parse_args()
    if args.runs_at_1 < 2 or args.runs_at_50 < 50:
        parser.error("use at least 2 runs at concurrency 1 and 50 at concurrency 50")
    result = json.dumps(asyncio.run(bench(args.runs_at_1, args.runs_at_50)), indent=2)
    print(result)
    if args.json:
        args.json.write_text(result + "\n")


if __name__ == "__main__":
    main()

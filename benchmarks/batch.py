"""How much faster is one `POST /approvals/batch` than N single `POST /workflows/{id}/approve` calls?

Everything is real and in one process: a Temporal dev server started for the run, a worker with the rules
planner, and the gateway app served over ASGI. 3 x N requests are submitted and brought to
WAITING_FOR_APPROVAL; then, each on its own N workflows, we time (a) batch calls of up to 100 items,
(b) N single approvals one after another, (c) N single approvals fired at once with asyncio.gather.
Each approval waits for its workflow to settle, so the send_email action is part of every timing.

Absolute seconds depend on the machine and its load, so the result is the ratio of the three timings
measured in the same run, never a pass/fail threshold.
"""

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import machine, stack
from countersign.models.enums import Role

TEXT = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"
BATCH_LIMIT = 100  # BatchRequest.items max_length
Pending = list[tuple[str, int]]  # (workflow_id, proposal_version)


async def prepare(http: httpx.AsyncClient, requester: dict[str, str], count: int) -> Pending:
    """Submit `count` requests and wait until each awaits approval; return ids with proposal versions."""
    submit = [http.post("/workflows", json={"text": TEXT}, headers=requester) for _ in range(count)]
    ids = [r.raise_for_status().json()["workflow_id"] for r in await asyncio.gather(*submit)]
    deadline = time.monotonic() + 120
    while True:
        views = [
            r.json()
            for r in await asyncio.gather(*(http.get(f"/workflows/{i}", headers=requester) for i in ids))
        ]
        if all(v.get("state") == "WAITING_FOR_APPROVAL" for v in views):
            return [(v["workflow_id"], v["proposal"]["version"]) for v in views]
        if time.monotonic() > deadline:
            raise TimeoutError(f"not all waiting: {sorted({str(v.get('state')) for v in views})}")
        await asyncio.sleep(0.2)


async def timed(run: Callable[[], Awaitable[int]]) -> tuple[float, int]:
    start = time.perf_counter()
    failures = await run()
    return time.perf_counter() - start, failures


async def bench(items: int) -> dict[str, Any]:
    async with stack({"requester": [], "manager": [Role.MANAGER]}) as bench_stack:
        http, env = bench_stack.http, bench_stack.env
        requester, manager = bench_stack.headers["requester"], bench_stack.headers["manager"]
        pending = await prepare(http, requester, 3 * items)
        batch_set, seq_set, conc_set = (pending[k * items : (k + 1) * items] for k in range(3))

        async def single(workflow_id: str, version: int) -> int:
            body = {"decision": "approved", "proposal_version": version}
            reply = await http.post(f"/workflows/{workflow_id}/approve", json=body, headers=manager)
            return 0 if reply.is_success else 1

        async def batch() -> int:
            failures = 0
            for at in range(0, len(batch_set), BATCH_LIMIT):
                chunk = batch_set[at : at + BATCH_LIMIT]
                body = {
                    "items": [{"workflow_id": w, "proposal_version": v} for w, v in chunk],
                    "decision": "approved",
                    "notes": "bench",
                }
                reply = await http.post("/approvals/batch", json=body, headers=manager)
                ok = reply.is_success
                failures += sum(not r["ok"] for r in reply.json()["results"]) if ok else len(chunk)
            return failures

        async def sequential() -> int:
            return sum([await single(w, v) for w, v in seq_set])

        async def concurrent() -> int:
            return sum(await asyncio.gather(*(single(w, v) for w, v in conc_set)))

        (batch_s, f1), (seq_s, f2), (conc_s, f3) = [
            await timed(run) for run in (batch, sequential, concurrent)
        ]
        # Untimed: let every workflow finish (notifications) so the teardown cuts nothing off.
        results = (env.client.get_workflow_handle(w).result() for w, _ in pending)
        await asyncio.wait_for(asyncio.gather(*results, return_exceptions=True), timeout=120)
    return {
        "items": items,
        "batch_seconds": round(batch_s, 3),
        "single_sequential_seconds": round(seq_s, 3),
        "single_concurrent_seconds": round(conc_s, 3),
        "speedup_vs_sequential": round(seq_s / batch_s, 2),
        "speedup_vs_concurrent": round(conc_s / batch_s, 2),
        "failures": f1 + f2 + f3,
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=100, help="approvals per set (default 100)")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    args = parser.parse_args()
    if args.items < 1:
        parser.error("--items must be at least 1")
    result = json.dumps(asyncio.run(bench(args.items)), indent=2)
    print(result)
    if args.json:
        args.json.write_text(result + "\n")


if __name__ == "__main__":
    main()

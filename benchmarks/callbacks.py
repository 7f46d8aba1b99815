"""Signed callbacks: how long after a decision its callbacks reach the receiver.

    uv run python -m benchmarks.callbacks [--approvals 100] [--json FILE]

Runs the benchmark stack (a dev server, the gateway over ASGI, an in-process worker) with a real HTTP
receiver on 127.0.0.1, and for each of `--approvals` requests, one after another: submits it with a
`callback_url` (waiting for the proposal), approves it, and notes when the approve call returned and
when `approval.decided` and `action.executed` arrived. Deliveries run in the background, so the decided
event may arrive before the approve call has returned (a negative figure). Only stdout carries the
JSON; no test asserts on the figures.
"""

import argparse
import asyncio
import http.server
import json
import os
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.harness import machine, stack
from benchmarks.stats import percentile
from countersign.models.enums import Role

TEXT = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"
Key = tuple[str, str]  # (workflow id, event type)


class Arrivals:
    """Futures the receiver thread resolves with the time (perf_counter) each event arrived."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._futures: dict[Key, asyncio.Future[float]] = {}
        self._lock = threading.Lock()

    def future(self, key: Key) -> asyncio.Future[float]:
        with self._lock:
            return self._futures.setdefault(key, self._loop.create_future())

    def arrived(self, key: Key, at: float) -> None:
        future = self.future(key)

        def settle() -> None:
            if not future.done():  # a retried or redelivered event arrives again: the first counts
                future.set_result(at)

        self._loop.call_soon_threadsafe(settle)


@contextmanager
def receiver(arrivals: Arrivals) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            at = time.perf_counter()
            event = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            self.send_response(204)
            self.end_headers()
            arrivals.arrived((event["data"]["workflow_id"], event["type"]), at)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/"
    finally:
        server.shutdown()
        server.server_close()


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(percentile(ordered, 0.9), 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
    }


async def run(approvals: int) -> dict[str, Any]:
    arrivals = Arrivals(asyncio.get_running_loop())
    with receiver(arrivals) as base:
        # The stack's Settings read the environment: the receiver is the one allowed callback URL.
        os.environ["COUNTERSIGN_CALLBACK_ALLOWED_URLS"] = base
        people = {"requester": [], "manager": [Role.MANAGER]}
        async with stack(people) as bench:
            requester, manager = bench.headers["requester"], bench.headers["manager"]
            approve_ms: list[float] = []
            decided_ms: list[float] = []
            executed_ms: list[float] = []
            for number in range(approvals + 1):  # the first warms the worker and the connections up
                submitted = await bench.http.post(
                    "/workflows",
                    json={"text": TEXT, "callback_url": base + "in"},
                    headers=requester,
                    params={"wait_seconds": 30},
                )
                assert submitted.status_code == 201, submitted.text
                workflow_id = submitted.json()["workflow_id"]
                await asyncio.wait_for(arrivals.future((workflow_id, "approval.waiting")), timeout=60)
                called = time.perf_counter()
                decided = await bench.http.post(
                    f"/workflows/{workflow_id}/approve",
                    json={"decision": "approved", "proposal_version": 1},
                    headers=manager,
                )
                returned = time.perf_counter()
                assert decided.status_code == 200, decided.text
                at_decided = await asyncio.wait_for(
                    arrivals.future((workflow_id, "approval.decided")), timeout=60
                )
                at_executed = await asyncio.wait_for(
                    arrivals.future((workflow_id, "action.executed")), timeout=60
                )
                if number:
                    approve_ms.append((returned - called) * 1000)
                    decided_ms.append((at_decided - returned) * 1000)
                    executed_ms.append((at_executed - returned) * 1000)
    return {
        "machine": machine(),
        "approvals": approvals,
        "approve_call": summary(approve_ms),
        "approve_returned_to_decided_callback": summary(decided_ms),
        "approve_returned_to_executed_callback": summary(executed_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approvals", type=int, default=100)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args.approvals))
    text = json.dumps(result, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

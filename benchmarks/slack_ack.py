"""Slack interactions: how long the gateway takes to acknowledge a signed Approve click.

    uv run python -m benchmarks.slack_ack [--interactions 200] [--concurrency 20] [--json FILE]

Slack wants an answer within 3 seconds. Runs the benchmark stack: a dev server, the gateway served by
uvicorn over TCP, the worker in a process of its own as in production, its Slack channel posting to a
local server speaking Slack's Web API (tests/slack_fake.py, in this process). Submits `--interactions`
requests and waits until each has its Slack messages, then sends each request's Approve click from the
linked reviewer, signed as Slack signs it, over HTTP, `--concurrency` at a time, timing each from send
to the gateway's answer. The decisions run in the background after the answer; the run then waits until
every request was decided through Slack and its messages updated, so a fast answer that decided nothing
would show as a failure. Only stdout carries the JSON; no test asserts on the figures.
"""

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import Stack, machine, stack
from benchmarks.stats import percentile
from countersign.activities.slack_blocks import APPROVE
from countersign.models.enums import Role
from tests.slack_fake import Call, FakeSlack, block_action, form, sign

TEXT = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"
SECRET = "bench-signing-secret"  # noqa: S105 (the benchmark's own, for its fake Slack)
TOKEN = "xoxb-bench"  # noqa: S105 (likewise)
REVIEWER = "U0BENCHREVIEWER"
ROUTE = "/integrations/slack/interactions"


async def _until(probe: Any, what: str, seconds: float = 300) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {seconds}s")
        await asyncio.sleep(0.2)


async def _submit_all(bench: Stack, count: int, concurrency: int) -> list[str]:
    """`count` requests waiting for a MANAGER, `concurrency` submitted at a time."""
    ids: list[str] = []
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            submitted = await bench.http.post(
                "/workflows",
                json={"text": TEXT},
                headers=bench.headers["requester"],
                params={"wait_seconds": 60},
            )
            assert submitted.status_code == 201, submitted.text
            ids.append(submitted.json()["workflow_id"])

    await asyncio.gather(*(one() for _ in range(count)))
    return ids


async def run(interactions: int, concurrency: int) -> dict[str, Any]:
    with FakeSlack() as fake:
        # The stack's Settings read the environment: Slack on, pointed at the fake.
        os.environ.update(
            COUNTERSIGN_SLACK_BOT_TOKEN=TOKEN,
            COUNTERSIGN_SLACK_SIGNING_SECRET=SECRET,
            COUNTERSIGN_SLACK_API_URL=fake.base,
            COUNTERSIGN_SLACK_ROLE_CHANNELS="MANAGER=C0BENCH",
        )
        people = {"requester": [], "manager": [Role.MANAGER]}
        async with stack(people, over_tcp=True, worker_process=True) as bench:
            me = await bench.http.get("/principals/me", headers=bench.headers["manager"])
            await bench.app.state.principals.set_channels(
                me.json()["principal"]["id"], slack_user_id=REVIEWER
            )
            ids = await _submit_all(bench, interactions + 1, concurrency)  # the first warms up

            def dms() -> dict[str, Call]:
                found = {}
                for wid in ids:
                    posted = [c for c in fake.posted_for(wid) if c.args["channel"] == REVIEWER]
                    if posted:
                        found[wid] = posted[0]
                return found

            async def all_posted() -> dict[str, Call]:
                found = dms()
                return found if len(found) == len(ids) else {}

            messages = await _until(all_posted, "every request's Slack DM")
            warm, *measured = ids
            click = await _click(bench, messages[warm])
            assert click[0] == 200, click
            queue = list(measured)
            latencies: list[float] = []
            statuses: dict[int, int] = {}

            async def client() -> None:
                while queue:
                    status, seconds = await _click(bench, messages[queue.pop()])
                    statuses[status] = statuses.get(status, 0) + 1
                    latencies.append(seconds)

            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(concurrency)))
            wall = time.perf_counter() - started

            async def decided() -> list[str]:
                states = []
                for wid in measured:
                    view = await bench.http.get(f"/workflows/{wid}", headers=bench.headers["manager"])
                    chain = view.json().get("chain") or [{}]
                    channels = [d.get("channel") for d in chain[0].get("decisions", [])]
                    states.append(channels == ["slack"])
                return ["ok"] if all(states) else []

            await _until(decided, "every request decided through Slack")
            updated = fake.updated()
            stale = [
                w
                for w in measured
                if (messages[w].answer["channel"], messages[w].answer["ts"]) not in updated
            ]
    ordered = sorted(latencies)
    return {
        "machine": machine(),
        "interactions": len(ordered),
        "concurrency": concurrency,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "ack_ms": {
            "p50": round(percentile(ordered, 0.50) * 1000, 1),
            "p99": round(percentile(ordered, 0.99) * 1000, 1),
            "min": round(ordered[0] * 1000, 1),
            "max": round(ordered[-1] * 1000, 1),
        },
        "wall_seconds": round(wall, 2),
        "decided_through_slack": len(measured),
        "messages_not_updated": len(stale),
    }


async def _click(bench: Stack, posted: Call) -> tuple[int, float]:
    """The reviewer's Approve on `posted`, signed now; (status, seconds until the answer)."""
    body = form(block_action(REVIEWER, posted, APPROVE))
    headers = sign(SECRET, body)
    started = time.perf_counter()
    answer = await bench.http.post(ROUTE, content=body, headers=headers)
    return answer.status_code, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args.interactions, args.concurrency))
    text = json.dumps(result, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

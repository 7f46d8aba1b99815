"""The benchmark's worker, in its own process as in production, so its memory can be read and the
gateway does not share its interpreter: Countersign's worker (rules planner) on `--queue`, configured
as `countersign worker` is (cache, sandbox), and the floor's bare workers: on `<queue>-floor` with the
SDK's defaults (workflows sandboxed), on `<queue>-floor-plain` without the sandbox. Prints `ready`
once all poll."""

import argparse
import asyncio
import sys
from pathlib import Path

from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from benchmarks.floor import FLOOR_QUEUE_SUFFIX, PLAIN_FLOOR_QUEUE_SUFFIX, FloorWorkflow, floor_step
from countersign.config.settings import Settings
from countersign.config.temporal import connect
from countersign.inbox_reconciler import InboxReconciler
from countersign.llm.rules import RulesPlanner
from countersign.store.sql import default_url
from countersign.worker import WorkerTrust, build_worker


async def serve(address: str, queue: str, data_dir: Path) -> None:
    client = await connect(address)
    # As configured (COUNTERSIGN_MAX_CACHED_WORKFLOWS, COUNTERSIGN_WORKFLOW_SANDBOX), as `countersign
    # worker` has it.
    settings = Settings(_env_file=None)
    cache = settings.max_cached_workflows
    ours = build_worker(
        client,
        task_queue=queue,
        data_dir=data_dir,
        planner=RulesPlanner(),
        max_cached_workflows=cache,
        sandboxed=settings.workflow_sandbox,
        trust=WorkerTrust.from_settings(settings),  # the keys the harness put in the environment
        channel_settings=settings,  # Slack too, when the environment says so (benchmarks/slack_ack.py)
    )
    floor, plain = (
        Worker(
            client,
            task_queue=queue + suffix,
            workflows=[FloorWorkflow],
            activities=[floor_step],
            max_cached_workflows=cache,
            workflow_runner=(
                SandboxedWorkflowRunner() if suffix == FLOOR_QUEUE_SUFFIX else UnsandboxedWorkflowRunner()
            ),
        )
        for suffix in (FLOOR_QUEUE_SUFFIX, PLAIN_FLOOR_QUEUE_SUFFIX)
    )
    # The inbox's reconciler runs beside the workers, as in `countersign worker`: its passes over every
    # waiting workflow count in the worker's memory.
    reconciling = InboxReconciler.running(
        client, default_url(data_dir), interval=settings.inbox_reconcile_seconds
    )
    async with ours, floor, plain, reconciling:
        print("ready", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.address, args.queue, args.data_dir))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()

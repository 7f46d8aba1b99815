"""The worker's composition root: builds the planners and the tool registry, and runs the workflows and
their activities. `countersign worker`, `python -m countersign.worker` or, in a checkout, `python worker.py`
runs it with COUNTERSIGN_* settings.

Two Temporal workers share one process: the workflow worker (workflows, validation, execution) on the
configured task queue, and the planning worker on `<queue>-llm`, rate-limited per task queue because a
provider's rate limit is per account, not per worker.
"""

import asyncio
import contextlib
import functools
import logging
import py_compile
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker._workflow_instance import _WorkflowLogicFlag
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from countersign.activities.audit import AuditActivities
from countersign.activities.callbacks import CallbackActivities
from countersign.activities.digests import DigestSender
from countersign.activities.execution import Checkpoint, ExecutionActivities
from countersign.activities.graph import GraphActivities
from countersign.activities.notify import NotifyActivities
from countersign.activities.planning import PlanningActivities, llm_task_queue
from countersign.activities.plugins import (
    BUILTIN_CHANNELS,
    ChannelContext,
    ChannelPlugin,
    PluginError,
    build_channels,
    load_plugins,
)
from countersign.activities.trust import TrustActivities
from countersign.activities.validation import ValidationActivities
from countersign.config.settings import (
    MAX_CACHED_WORKFLOWS,
    CallbackSettings,
    ChannelSettings,
    Settings,
    problems,
)
from countersign.config.temporal import TemporalUnreachable, connect, ensure_search_attributes
from countersign.graphs.registry import NodeRegistry, build_node_registry
from countersign.inbox_reconciler import InboxReconciler
from countersign.llm.base import Planner
from countersign.llm.factory import build_planner
from countersign.llm.prices import PriceTable
from countersign.llm.spec import SpecError, default_chain, parse_chain
from countersign.models.signatures import GatewayTrust
from countersign.observability import logs, metrics, tracing
from countersign.observability.worker_watchdog import WorkerStalled, watch_workflow_queue
from countersign.security.audit_keys import AuditKeyring
from countersign.security.gateway_keys import MissingKey
from countersign.security.link_keys import LinkKeyring
from countersign.store.decision_links import DecisionLinks
from countersign.store.directory import DirectoryOnFirstUse
from countersign.store.sql import OpenedOnFirstUse, default_url
from countersign.store.tool_effects import ToolEffects
from countersign.tools.builtin import build_registry
from countersign.tools.integrations import Integrations
from countersign.tools.registry import ToolRegistry
from countersign.workflows import approval as approval_package
from countersign.workflows import graph as graph_package
from countersign.workflows.approval import ApprovalWorkflow
from countersign.workflows.graph import GraphWorkflow

log = logging.getLogger(__name__)
# Workflows verify gateway signatures (Ed25519) themselves. `cryptography`'s native code imports its
# exception classes when a signature fails; inside the sandbox that import of a module the sandbox
# re-imports broke the interpreter (a panic at the FFI boundary, an abort). Its classes are pure and
# deterministic, so the one copy is shared with every workflow.
SANDBOXED = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("cryptography")
)


@dataclass(frozen=True)
class WorkerTrust:
    """The keys a worker holds: whose workflow starts it accepts (the gateways' public keys), and the
    audit chain's keys. Both come from outside the workflows and the database they protect."""

    gateway: GatewayTrust
    audit: AuditKeyring

    @classmethod
    def from_settings(cls, settings: Settings) -> "WorkerTrust":
        """Raises MissingKey, saying how to make one, when a key is missing."""
        return cls(gateway=settings.gateway_trust(), audit=settings.audit_keyring())


def build_planners(settings: Settings, registry: ToolRegistry) -> list[Planner]:
    """The configured chain; a bad spec or a missing key raises `SpecError` with a readable message."""
    chain = parse_chain(settings.llm or default_chain())
    options = settings.llm_options()
    return [build_planner(spec, registry=registry, options=options) for spec in chain]


class WorkerGroup:
    """The workflow worker and the planning worker, started and stopped together; `closers` run after
    both have stopped (connections the activities opened)."""

    def __init__(
        self, workers: Sequence[Worker], closers: Sequence[Callable[[], Awaitable[None]]] = ()
    ) -> None:
        self.workers = list(workers)
        self._closers = list(closers)
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> "WorkerGroup":
        async with contextlib.AsyncExitStack() as stack:
            for close in self._closers:
                stack.push_async_callback(close)
            for worker in self.workers:
                await stack.enter_async_context(worker)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.__aexit__(kind, error, tb)


def process_activation_jobs_as_one_batch(worker: Worker) -> None:
    """Apply every job of a workflow activation before any workflow coroutine runs (the SDK's workflow
    logic flag 2, recorded in each history that uses it, so replays follow it).

    Without it, the SDK runs a decision (an update or signal) and the other jobs of the same activation
    (an activity's completion) in two passes. A fresh worker given a workflow whose last task produced
    no commands may deliver that task's activity completion in the same activation as a new update,
    where a replay delivers it one activation earlier: the audit writer and the main flow then resumed
    in a different order, the replay found its commands out of order, and the workflow task failed for
    ever (seen in the SIGKILL chaos test; tests/workflows/test_activation_batching.py reproduces it).
    temporalio 1.35 implements the flag but leaves it off by default until two releases have known it;
    the setter is private, so a release without it leaves the default as it is."""
    setter = getattr(worker, "_set_default_workflow_logic_flag", None)
    flag = getattr(_WorkflowLogicFlag, "PROCESS_WORKFLOW_ACTIVATION_JOBS_AS_SINGLE_BATCH", None)
    if setter is not None and flag is not None:
        setter(flag, enabled=True)


def cache_workflow_bytecode(data_dir: Path) -> None:
    """The workflow sandbox executes the workflow modules afresh for every workflow it instantiates,
    and without a `.pyc` that means compiling them from source each time: at concurrency 50 it was a
    tenth of the worker's CPU. Python writes no `.pyc` under PYTHONDONTWRITEBYTECODE (common in
    containers) or into a read-only install, so compile them once into a private cache instead."""
    if not sys.dont_write_bytecode:
        return  # Python caches them beside the sources on first import
    if sys.pycache_prefix is None:
        sys.pycache_prefix = str(data_dir / "pycache")
    _compile_workflow_modules()


@functools.cache
def _compile_workflow_modules() -> None:
    """Once per process: every worker built after the first reads the same cache."""
    # Both workflows are packages: each of their modules is imported into every sandbox.
    sources: list[Path] = []
    for package in (approval_package.__file__, graph_package.__file__):
        if package is not None:
            sources += sorted(Path(package).parent.glob("*.py"))
    for source in sources:
        py_compile.compile(str(source), doraise=False, quiet=1)


def build_worker(
    client: Client,
    *,
    task_queue: str,
    data_dir: Path,
    planner: Planner | Sequence[Planner],
    trust: WorkerTrust,
    registry: ToolRegistry | None = None,
    attempts_per_planner: int = 3,
    llm_rate_limit: float | None = None,
    integrations: Integrations | None = None,
    audit_url: str | None = None,
    execution_checkpoint: Checkpoint | None = None,
    node_registry: NodeRegistry | None = None,
    channels: Sequence[ChannelPlugin] = BUILTIN_CHANNELS,
    max_cached_workflows: int = MAX_CACHED_WORKFLOWS,
    shutdown_grace: timedelta = timedelta(0),
    sandboxed: bool = True,
    callbacks: CallbackSettings | None = None,
    channel_settings: ChannelSettings | None = None,
    llm_prices: Mapping[str, tuple[float, float]] | None = None,
    base_currency: str = "USD",
) -> WorkerGroup:
    """Both workers; the audit log, the execution ledger, the tools' outbox and records and the
    notification log share `audit_url`, Countersign's database (default: SQLite in the data dir).
    `execution_checkpoint` is a fault-injection hook for the crash tests.

    `callbacks`: how signed callbacks retry and time out (the settings' defaults when None).
    `llm_prices`: model prices added to the built-in table planning costs are reported from.
    `base_currency`: the currency validation converts amounts into (`amount_base`) at the tenant
    directory's rates.
    `channel_settings`: the public URL, how links are signed, the channels' addresses (Teams webhooks,
    Slack); defaults when None.

    `sandboxed`: run workflow code in the SDK's sandbox, which fails a workflow task on any
    non-deterministic call and gives each workflow its own copy of the modules it imports. The
    tests build workers this way; `countersign worker` does not by default (COUNTERSIGN_WORKFLOW_SANDBOX):
    the sandbox was half the worker's CPU and most of its memory per cached workflow.

    `registry`, `node_registry` and `channels` default to the built-ins; `run_worker` passes the
    plugins' too (`countersign.activities.plugins.load_plugins`). A channel that cannot be built raises
    PluginError."""
    if sandboxed:
        cache_workflow_bytecode(data_dir)
    registry = registry or build_registry()
    store_url = audit_url or default_url(data_dir)
    # The tenants' directories, read by planning (lookups) and validation (checks in context).
    directory = DirectoryOnFirstUse(store_url)
    planning = PlanningActivities(
        planner,
        registry,
        attempts_per_planner=attempts_per_planner,
        directory=directory,
        prices=PriceTable(llm_prices),
    )
    validation = ValidationActivities(
        registry, integrations, directory=directory, base_currency=base_currency
    )
    # The tools' outbox and records, one for the process: actions' emails and notifications' share it.
    effects = ToolEffects(store_url)
    execution = ExecutionActivities(
        registry,
        data_dir,
        integrations,
        ledger_url=store_url,
        effects=effects,
        checkpoint=execution_checkpoint,
    )
    channel_settings = channel_settings or ChannelSettings()
    keys = channel_settings.link_keys
    secret = keys.get_secret_value() if keys is not None else None
    links = OpenedOnFirstUse(lambda: DecisionLinks.open(store_url, LinkKeyring.load(secret, data_dir)))
    context = ChannelContext(
        data_dir=data_dir,
        tools=registry,
        integrations=integrations or Integrations(),
        public_url=channel_settings.public_url,
        teams_webhooks=channel_settings.teams_webhooks,
        reply_domain=channel_settings.reply_domain,
        links=links,
        settings=channel_settings,
        store_url=store_url,
        effects=effects,
    )
    notify = NotifyActivities(data_dir, build_channels(channels, context), digest_url=store_url)
    audit = AuditActivities(store_url, trust.audit)
    graph = GraphActivities(node_registry or build_node_registry())
    trusted = TrustActivities(trust.gateway)
    callbacks = callbacks or CallbackSettings()
    callback = CallbackActivities(
        store_url,
        retry_window=timedelta(seconds=callbacks.callback_retry_window_seconds),
        timeout_seconds=callbacks.callback_timeout_seconds,
    )
    main = Worker(
        client,
        task_queue=task_queue,
        workflows=[ApprovalWorkflow, GraphWorkflow],
        workflow_runner=SANDBOXED if sandboxed else UnsandboxedWorkflowRunner(),
        max_cached_workflows=max_cached_workflows,
        graceful_shutdown_timeout=shutdown_grace,
        # The SDK's default (100) must not exceed a small cache, and the SDK wants at least 2.
        max_concurrent_workflow_tasks=min(100, max(2, max_cached_workflows)),
        # `plan` stays here too, for workflows started before planning moved to its own queue.
        activities=[
            planning.plan,
            validation.validate,
            execution.execute,
            notify.notify,
            audit.record,
            graph.run_node,
            trusted.verify_start,
            callback.deliver,
        ],
    )
    process_activation_jobs_as_one_batch(main)
    llm = Worker(
        client,
        task_queue=llm_task_queue(task_queue),
        activities=[planning.plan],
        max_task_queue_activities_per_second=llm_rate_limit,
        graceful_shutdown_timeout=shutdown_grace,
    )
    closers = [
        audit.close,
        execution.close,
        notify.close,
        callback.close,
        links.close,
        effects.close,
        directory.close,
    ]
    return WorkerGroup([main, llm], closers=closers)


async def run_worker(
    settings: Settings, stop: asyncio.Event | None = None, *, execution_checkpoint: Checkpoint | None = None
) -> None:
    """Until `stop` is set, or SIGTERM/SIGINT arrives (then activities get the shutdown grace);
    raises `WorkerStalled` when the watchdog finds the workflow task queue undrained."""
    trust = WorkerTrust.from_settings(settings)  # before anything starts: a missing key stops here
    plugins = load_plugins(settings.plugins)  # and so does a plugin that cannot be used (PluginError)
    registry = plugins.tools
    planners = build_planners(settings, registry)
    chain = " -> ".join(p.name for p in planners)
    log.info("planning with %s%s", chain, "" if settings.llm else " (default: COUNTERSIGN_LLM is unset)")
    # Telemetry: each part only when its setting asks for it (metrics, traces, JSON core logs).
    runtime = metrics.worker_runtime(
        settings.worker_metrics_address, forward_logs=settings.log_format == "json"
    )
    if settings.worker_metrics_address is not None:
        log.info("metrics at http://%s/metrics", settings.worker_metrics_address)
    traces = tracing.tracer_provider(settings.otlp_endpoint, tracing.WORKER_SERVICE)
    client = await connect(
        settings.resolved_temporal_address,
        settings.namespace,
        tls=settings.temporal_tls(),
        codec=settings.payload_codec(),
        runtime=runtime,
        plugins=[*tracing.temporal_plugins(traces), *logs.temporal_plugins(settings)],
    )
    await ensure_search_attributes(client, settings.namespace)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker = build_worker(
        client,
        task_queue=settings.task_queue,
        data_dir=settings.data_dir,
        planner=planners,
        trust=trust,
        registry=registry,
        node_registry=plugins.nodes,
        channels=plugins.channels,
        attempts_per_planner=settings.llm_attempts_per_provider,
        llm_rate_limit=settings.llm_rate_limit,
        audit_url=settings.database_url,
        integrations=settings.integrations(),
        execution_checkpoint=execution_checkpoint,
        max_cached_workflows=settings.max_cached_workflows,
        llm_prices=settings.llm_prices,
        base_currency=settings.base_currency,
        shutdown_grace=timedelta(seconds=settings.worker_shutdown_grace_seconds),
        sandboxed=settings.workflow_sandbox,
        callbacks=settings,
        channel_settings=settings,
    )
    # Digests, and what waited out quiet hours, go from here: a background task beside the workers.
    digests = DigestSender(
        settings.database_url,
        settings.data_dir,
        settings.integrations(),
        settings.public_url,
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sending = asyncio.ensure_future(digests.run(settings.digest_interval_seconds))
    try:
        # The inbox's projection is compared with Temporal and repaired from here (one worker at a time).
        reconciling = InboxReconciler.running(
            client, settings.database_url, interval=settings.inbox_reconcile_seconds
        )
        async with worker, reconciling:
            waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
            if settings.worker_stall_timeout_seconds > 0:
                stall = timedelta(seconds=settings.worker_stall_timeout_seconds)
                waits.append(
                    asyncio.ensure_future(
                        watch_workflow_queue(
                            client, settings.namespace, settings.task_queue, stall_timeout=stall
                        )
                    )
                )
            done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in done:
                task.result()  # the watchdog's WorkerStalled: the workers stop, then it propagates
            log.info("stopping: running activities get %ss", settings.worker_shutdown_grace_seconds)
    finally:
        sending.cancel()  # a digest cut short is released (or its claim lapses): the next round sends it
        await asyncio.gather(sending, return_exceptions=True)
        await digests.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        tracing.shutdown(traces)  # spans still batched are exported before the process ends


def main(settings: Settings | None = None) -> int:
    """Run the worker until SIGTERM/SIGINT; the exit code: 0, 2 when a setting, a planner or a key is
    wrong (fix and start again), 3 when the watchdog found it stalled (its supervisor restarts it)."""
    if settings is None:
        try:
            settings = Settings()
        except ValidationError as error:
            for line in problems(error):
                print(f"error: {line}", file=sys.stderr)
            return 2
    # COUNTERSIGN_LOG_FORMAT: text or JSON lines, with workflow ids; secrets and request texts redacted.
    logs.configure_logging(settings, tracing.WORKER_SERVICE)
    try:
        asyncio.run(run_worker(settings))
    # A planner that cannot be built, a key it lacks, a plugin that cannot be used.
    except (SpecError, MissingKey, PluginError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except WorkerStalled as error:  # its supervisor (compose, systemd, `countersign up`) restarts it
        print(f"error: {error}", file=sys.stderr)
        return 3
    except TemporalUnreachable as error:  # one line, not the SDK's traceback (which says no more)
        print(f"error: {error} (is it running? COUNTERSIGN_TEMPORAL_ADDRESS sets where)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

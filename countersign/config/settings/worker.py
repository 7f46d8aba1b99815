"""The worker: its workflow cache and sandbox, its watchdog and shutdown, how long outages are waited
out, and the plugins it loads."""

from typing import Annotated

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

from countersign.config.settings.lists import split_commas

# The worker's workflow cache by default (Settings.max_cached_workflows): a quarter of the SDK's 1,000,
# so that a worker with 10,000 waiting stays under 300 MB: 268 MB measured at 250, 359 MB at 500
# (benchmarks/README.md, "The inbox at 10,000 waiting").
MAX_CACHED_WORKFLOWS = 250


class WorkerSettings(BaseModel):
    # Workflows a worker keeps in memory between their tasks (Temporal's sticky cache). Each costs about
    # a sixth of a megabyte without the sandbox; one that was evicted is replayed from its history when
    # next needed. Sandboxed, with 250, 10,000 workflows started at once twice left the worker taking no
    # workflow tasks (not understood; the watchdog below restarts such a worker).
    max_cached_workflows: int = Field(default=MAX_CACHED_WORKFLOWS, ge=0, le=100_000)
    # Run workflow code in the Temporal SDK's sandbox (restricted calls fail the workflow task; each
    # workflow gets its own copy of its modules). Off: Countersign's workflows are fixed code, replayed
    # against recorded histories in its suite, which runs them sandboxed; the sandbox cost half the
    # worker's CPU per lifecycle and most of a cached workflow's memory (benchmarks/README.md).
    workflow_sandbox: bool = False
    # A worker whose task queue has had workflow tasks waiting, none of them dispatched, for this long
    # exits (code 3) so its supervisor restarts it (observability/worker_watchdog.py); 0 turns it off.
    worker_stall_timeout_seconds: float = Field(default=180, ge=0, le=86_400)
    # On SIGTERM or SIGINT, how long running activities get to finish before they are cancelled
    # (a cancelled one is retried on another worker; the execution ledger keeps tools to once).
    worker_shutdown_grace_seconds: float = Field(default=10, ge=0, le=600)
    # Modules (comma-separated) whose TOOLS, NODES and CHANNELS the worker and gateway load besides the
    # installed plugins' entry points (activities/plugins.py, docs/extending.md).
    plugins: Annotated[list[Annotated[str, Field(pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")]], NoDecode] = (
        Field(default_factory=list)
    )
    # How long an approved action, a notification or an audit write keeps retrying transient failures
    # (connection refused, timeouts, 4xx-temporary, 5xx) with capped backoff before it is a dead letter.
    outage_window_seconds: int = Field(default=86_400, ge=60, le=30 * 86_400)
    # How often the worker's digest sender looks for digests (and messages held by quiet hours) that are
    # due (activities/digests.py, docs/digests.md).
    digest_interval_seconds: float = Field(default=60, ge=1, le=3_600)
    # How often the inbox's projection is compared with Temporal and repaired (inbox_reconciler.py):
    # drift (a workflow terminated from outside, a lost write) lasts at most about this long. One
    # worker of many does it at a time.
    inbox_reconcile_seconds: float = Field(default=30, ge=1, le=3_600)

    @field_validator("plugins", mode="before")
    @classmethod
    def _plugin_list(cls, value: object) -> object:
        return split_commas(value)

"""Planning activity: ask the configured planner for exactly one action drawn from the registry.

Runs on its own task queue (`<queue>-llm`), rate-limited per task queue, because provider limits are
per account rather than per worker. Temporal's retry policy owns retries: a provider's failure becomes
an `ApplicationError` that is non-retryable for errors a retry cannot fix (bad key, bad request) and
carries the provider's `Retry-After` as the next delay for rate limits. With a fallback chain, each
planner gets `attempts_per_planner` activity attempts before the next one in the chain plans.
"""

import time
from collections.abc import Sequence

from temporalio import activity
from temporalio.exceptions import ApplicationError

from countersign.activities.heartbeat import heartbeating
from countersign.directory.lookups import RecordSource, TenantDirectory
from countersign.llm.base import Planner
from countersign.llm.errors import ProviderError
from countersign.llm.prices import CURRENCY, PriceTable
from countersign.models.proposal import Plan, PlanInput, PlanProvenance
from countersign.models.retry_after import capped_delay
from countersign.observability import metrics
from countersign.tools.registry import ToolRegistry


def llm_task_queue(task_queue: str) -> str:
    """The task queue planning activities of workflows on `task_queue` run on."""
    return f"{task_queue}-llm"


def provider_failure(error: ProviderError) -> ApplicationError:
    """The Temporal failure for a provider error: its message is already free of secrets."""
    delay = None
    if error.retryable and error.retry_after is not None:
        delay = capped_delay(error.retry_after)
    return ApplicationError(
        f"{error.provider}: {error.message}",
        type=error.kind,
        non_retryable=not error.retryable,
        next_retry_delay=delay,
    )


class PlanningActivities:
    def __init__(
        self,
        planners: Planner | Sequence[Planner],
        registry: ToolRegistry,
        *,
        attempts_per_planner: int = 3,
        directory: RecordSource | None = None,
        prices: PriceTable | None = None,
    ) -> None:
        chain = [planners] if not isinstance(planners, Sequence) else list(planners)
        if not chain:
            raise ValueError("at least one planner is needed")
        if attempts_per_planner < 1:
            raise ValueError("attempts_per_planner must be at least 1")
        self._chain = chain
        self._registry = registry
        self._attempts_per_planner = attempts_per_planner
        self._directory = directory
        self._prices = prices or PriceTable()

    def planner_for(self, attempt: int) -> Planner:
        """The planner for a 1-based activity attempt: later attempts fall back along the chain."""
        index = min((attempt - 1) // self._attempts_per_planner, len(self._chain) - 1)
        return self._chain[index]

    @activity.defn(name="plan")
    async def plan(self, request: PlanInput) -> Plan:
        attempt = activity.info().attempt
        planner = self.planner_for(attempt)
        primary = self._chain[0]
        activity.logger.info(
            "planning with %s (plan attempt %d, activity attempt %d)", planner.name, request.attempt, attempt
        )
        started = time.monotonic()
        # The tenant's directory, for plans of workflows that name their tenant (older ones do not).
        directory = None
        if self._directory is not None and request.tenant is not None:
            directory = TenantDirectory(self._directory, request.tenant)
        try:
            # A model can think for minutes: a worker that dies meanwhile is noticed within the
            # workflow's heartbeat timeout, not after the whole PLANNING_TIMEOUT.
            async with heartbeating():
                plan = await planner.plan(request, self._registry.specs(), directory)
        except ProviderError as error:
            activity.logger.warning("planner %s failed: %s", planner.name, error.message)
            metrics.record_plan_error(planner.name, error.kind)
            # `from None`: the SDK's exception chain stays out of workflow history.
            raise provider_failure(error) from None
        provenance = plan.provenance or PlanProvenance(
            provider=planner.name, latency_ms=round((time.monotonic() - started) * 1000)
        )
        if planner is not primary:
            provenance = provenance.model_copy(update={"fallback_from": primary.name})
        if provenance.model is not None:
            spent = self._prices.cost(provenance.model, provenance.input_tokens, provenance.output_tokens)
            if spent is not None:
                provenance = provenance.model_copy(update={"cost": spent, "cost_currency": CURRENCY})
        planned = plan.model_copy(update={"provenance": provenance})
        metrics.record_plan(planned)
        return planned

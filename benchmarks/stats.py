"""Figures every benchmark reports the same way: throughput and latency percentiles of one level."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile; `share` in (0, 1]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.4999))
    return ordered[min(rank, len(ordered)) - 1]


async def level(run_one: Callable[[], Awaitable[float]], concurrency: int, count: int) -> dict[str, Any]:
    """`concurrency` clients share `count` runs, each client one run at a time; a run that raises
    counts as a failure. Returns per_second (completed runs / wall seconds) and p50/p95 of the rest."""
    remaining = count
    latencies: list[float] = []
    errors: list[str] = []

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            try:
                latencies.append(await run_one())
            except Exception as error:
                errors.append(f"{type(error).__name__}: {error}"[:300])

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "runs": count,
        "failures": len(errors),
        "seconds": round(seconds, 3),
        "per_second": round(len(latencies) / seconds, 2),
        "p50_seconds": round(percentile(latencies, 0.50), 4),
        "p95_seconds": round(percentile(latencies, 0.95), 4),
        **({"first_errors": sorted(set(errors))[:5]} if errors else {}),
    }

"""Metrics, traces and logs."""

from typing import Literal

from pydantic import BaseModel, Field


class TelemetrySettings(BaseModel):
    # HOST:PORT where `countersign worker` serves Prometheus metrics at /metrics: the Temporal SDK's and
    # Countersign's own (observability/metrics.py). None: no endpoint, and no metrics are kept.
    worker_metrics_address: str | None = Field(
        default=None, pattern=r"^(\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):\d+$"
    )
    # An OTLP/HTTP traces endpoint (e.g. http://otel-collector:4318/v1/traces): the worker and the
    # gateway then export OpenTelemetry spans there (observability/tracing.py). None: no tracing at all.
    otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    # How the worker and the gateway log: `text` (one readable line) or `json` (one object per line,
    # with workflow_id and run_id from workflow and activity code).
    log_format: Literal["text", "json"] = "text"
    # Whether request texts may appear in logs as they are; false: they are replaced by a marker.
    log_request_text: bool = False

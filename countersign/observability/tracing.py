"""OpenTelemetry tracing: off unless COUNTERSIGN_OTLP_ENDPOINT names an OTLP/HTTP traces endpoint.

When on, the process exports spans (protobuf over HTTP, batched) to that endpoint, as service
`countersign-worker` or `countersign-api`:

- the gateway: one server span per request (opentelemetry-instrumentation-fastapi), named by route
  template (`POST /workflows`), whose context the Temporal client carries on;
- the Temporal client and worker: `temporalio.contrib.opentelemetry.TracingInterceptor` spans
  (`StartUpdateWithStartWorkflow:…`, `StartWorkflowUpdate:…`, `RunWorkflow:…`, `StartActivity:…`,
  `RunActivity:…`, `HandleUpdate:…`), their context propagated in Temporal headers, so one trace runs
  from the HTTP request through the workflow to its activities on any worker. Workflow spans have no
  duration by design (they must survive replay); activity and client spans do.

The usual OTEL_* variables refine the exporter (OTEL_EXPORTER_OTLP_TRACES_HEADERS for a collector's
credentials, OTEL_BSP_SCHEDULE_DELAY for the batching). Nothing here is imported when tracing is off.
"""

import dataclasses
from typing import TYPE_CHECKING

from temporalio.plugin import SimplePlugin
from temporalio.worker import WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider

WORKER_SERVICE = "countersign-worker"
API_SERVICE = "countersign-api"
# Requests not worth a trace: probes and scrapes (a regular expression list, comma-separated); and
# decision links, whose URL is their credential (a span would keep it).
UNTRACED_URLS = "healthz,metrics,/links/"


def tracer_provider(endpoint: str | None, service: str) -> "TracerProvider | None":
    """A provider exporting to `endpoint` (Settings.otlp_endpoint); None when tracing is off. Not made
    the global one: the gateway and tests may build several in one process."""
    if endpoint is None:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def temporal_plugins(provider: "TracerProvider | None") -> list[SimplePlugin]:
    """For `Client.connect(plugins=…)`: the tracing interceptor on the client and on every worker built
    from it. Empty when tracing is off.

    In the workflow sandbox, the interceptor's module passes through as all of `temporalio` does (a
    sandboxed run is traced without more, tests/observability checks it); `opentelemetry` is passed
    through too, as the SDK's own OpenTelemetryPlugin does, so that workflow code importing it would
    share the interceptor's context rather than a copy the sandbox imported afresh."""
    if provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    interceptor = TracingInterceptor(provider.get_tracer("countersign"))
    return [
        SimplePlugin(
            "countersign.observability.tracing",
            interceptors=[interceptor],
            workflow_runner=_opentelemetry_passed_through,
        )
    ]


def _opentelemetry_passed_through(runner: WorkflowRunner | None) -> WorkflowRunner:
    if runner is None:
        return SandboxedWorkflowRunner(
            restrictions=SandboxedWorkflowRunner().restrictions.with_passthrough_modules("opentelemetry")
        )
    if isinstance(runner, SandboxedWorkflowRunner):
        return dataclasses.replace(
            runner, restrictions=runner.restrictions.with_passthrough_modules("opentelemetry")
        )
    return runner


def instrument_app(app: "FastAPI", provider: "TracerProvider | None") -> None:
    """Server spans for the gateway's requests, when tracing is on."""
    if provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=UNTRACED_URLS,
        exclude_spans=["receive", "send"],  # a span per ASGI message says nothing more than the request's
    )


def shutdown(provider: "TracerProvider | None") -> None:
    """Export what is still batched, then stop."""
    if provider is not None:
        provider.shutdown()

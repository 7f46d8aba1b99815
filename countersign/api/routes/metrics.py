"""`GET /metrics`: the gateway's metrics in Prometheus' text format, for the service's operators.

- `countersign_http_requests_total{method, route, status}` and
  `countersign_http_request_duration_seconds{method, route}`: every HTTP request, by route template
  (`/workflows/{workflow_id}`, never the path itself, so ids cannot multiply the series; `unmatched` for
  a path no route serves), counted by `HttpMetricsMiddleware` whatever answered it (a 413 included).
- `countersign_pending_approvals{role}`: open workflows (approvals and graph runs, all tenants) waiting for
  a decision from each role, counted in Temporal's visibility when scraped, at most every
  PENDING_TTL_SECONDS (observability/metrics.py, pending_by_role). No samples while Temporal cannot answer.
- the process collector's `process_*` (CPU, memory, open files).

The counts cover every tenant, so they are not for a tenant's ADMIN: the route needs
`Authorization: Bearer <COUNTERSIGN_METRICS_TOKEN>` (compared in constant time) or a principal with the
OPERATOR role (a global role that runs the service and reads no tenant's workflows). Without a valid
credential: 401; with a principal lacking OPERATOR, an ADMIN included: 403. It is left out of the OpenAPI
(it is not part of the API).
"""

import asyncio
import hmac
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client
from temporalio.service import RPCError

from countersign.api.auth import current_principal, token_verifier
from countersign.models.enums import Role
from countersign.models.errors import Forbidden
from countersign.observability.metrics import PENDING, pending_by_role

log = logging.getLogger(__name__)
# No `*_created` series beside each counter and histogram: they double what is scraped for nothing.
disable_created_metrics()  # type: ignore[no-untyped-call]

router = APIRouter(tags=["metrics"])

# How long a pending-by-role count is reused: scrapes from several Prometheus servers (or a person
# reloading) cost Temporal six count queries at most this often.
PENDING_TTL_SECONDS = 15.0
# The route label of a request no route matched (a 404 on any path, whatever it was).
UNMATCHED = "unmatched"
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
# From a cached lookup to a submit that waits 30 s for its proposal.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class PendingApprovals(Collector):
    """`countersign_pending_approvals{role}` from the last count, refreshed before a scrape renders."""

    def __init__(self) -> None:
        self._counts: Mapping[Role, int] | None = None
        self._at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self, client: Client) -> None:
        if time.monotonic() - self._at < PENDING_TTL_SECONDS:
            return
        async with self._lock:  # concurrent scrapes wait for one count
            if time.monotonic() - self._at < PENDING_TTL_SECONDS:
                return
            try:
                self._counts = await pending_by_role(client)
            except RPCError as error:
                log.warning("cannot count pending approvals: %s", error)
                self._counts = None
            self._at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            PENDING, "Open workflows waiting for a decision from each role (all tenants)", labels=["role"]
        )
        for role, count in (self._counts or {}).items():
            family.add_metric([role.value], count)
        yield family


class GatewayMetrics:
    """One app's registry: tests build many apps in one process, so nothing is global."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "countersign_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "countersign_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.pending = PendingApprovals()
        self.registry.register(self.pending)
        ProcessCollector(registry=self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


def route_template(scope: Scope) -> str:
    """The template of the route that answered: FastAPI's routes leave themselves in the scope; the
    others (the docs, the static inbox's mount) leave their endpoint, looked up among the app's routes.
    UNMATCHED when no route answered."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    endpoint = scope.get("endpoint")
    if endpoint is not None:
        for route in getattr(scope.get("app"), "routes", ()):
            if getattr(route, "endpoint", None) is endpoint or getattr(route, "app", None) is endpoint:
                found = getattr(route, "path", None)
                if isinstance(found, str):
                    return found
    return UNMATCHED


class HttpMetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI: it sees refusals from other middleware too)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception that escaped everything

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, watched)
        finally:
            self._metrics.observe(
                scope["method"], route_template(scope), status, time.perf_counter() - started
            )


_bearer = HTTPBearer(
    auto_error=False, description="An OPERATOR's API key or JWT, or COUNTERSIGN_METRICS_TOKEN"
)


async def may_read_metrics(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """The metrics token, or an OPERATOR principal; 401 without a valid credential, 403 without OPERATOR."""
    token: SecretStr | None = request.app.state.settings.metrics_token
    if (
        token is not None
        and credentials is not None
        and credentials.scheme.lower() == "bearer"
        and hmac.compare_digest(credentials.credentials.encode(), token.get_secret_value().encode())
    ):
        return
    principal = await current_principal(
        credentials, request.app.state.principals, token_verifier(request.app.state)
    )
    if Role.OPERATOR not in principal.roles:
        # A tenant's ADMIN included: the counts are every tenant's.
        raise Forbidden(
            "the metrics need the OPERATOR role, or the metrics token (COUNTERSIGN_METRICS_TOKEN)"
        )


@router.get(
    "/metrics",
    summary="Prometheus metrics (OPERATOR, or COUNTERSIGN_METRICS_TOKEN)",
    include_in_schema=False,
    dependencies=[Depends(may_read_metrics)],
)
async def metrics(request: Request) -> Response:
    gateway: GatewayMetrics = request.app.state.metrics
    await gateway.pending.refresh(request.app.state.client)
    return Response(generate_latest(gateway.registry), media_type=CONTENT_TYPE_LATEST)

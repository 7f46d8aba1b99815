"""The gateway: validate, authenticate, talk to Temporal, map errors to HTTP. No business logic here."""

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from countersign.activities.callbacks import CallbackSender
from countersign.activities.plugins import load_plugins
from countersign.api.auth_limits import AuthFailureLimiter
from countersign.api.json_gate import JsonBodyGate
from countersign.api.limits import RequestLimitMiddleware
from countersign.api.mail_listener import start_reply_listener
from countersign.api.mcp_endpoint import mount_mcp
from countersign.api.routes import (
    approvals,
    audit,
    codec,
    deliveries,
    directory,
    graphs,
    health,
    links,
    metrics,
    principals,
    slack,
    tools,
    workflows,
)
from countersign.api.routes.ui import mount_ui
from countersign.api.security_headers import SecurityHeadersMiddleware
from countersign.api.services.approvals import ApprovalService
from countersign.api.services.audit_log import AuditLog
from countersign.api.services.declared_tools import DeclaredToolService, resolve
from countersign.api.services.deliveries import DeliveryService
from countersign.api.services.directory import DirectoryService
from countersign.api.services.graph_runs import GraphService
from countersign.api.services.link_decisions import LinkDecisions
from countersign.api.services.principal_admin import PrincipalAdminService
from countersign.api.services.slack_interactions import open_slack
from countersign.config.policy_file import load_policy
from countersign.config.settings import Settings
from countersign.config.temporal import connect
from countersign.graphs.shipped import shipped_definitions
from countersign.graphs.validation import check_graph
from countersign.models.errors import Conflict, Forbidden, Invalid, InvalidAction, NotFound, RequestError
from countersign.observability import tracing
from countersign.security.gateway_signing import GatewaySigning
from countersign.security.link_keys import LinkKeyring
from countersign.store.admin_audit import AdminAudit
from countersign.store.audit_store import AuditStore
from countersign.store.callbacks import CallbackStore
from countersign.store.decision_links import DecisionLinks
from countersign.store.declared_tools import DeclaredToolStore
from countersign.store.directory import DirectoryStore
from countersign.store.graph_store import GraphStore
from countersign.store.pending_decisions import PendingDecisions
from countersign.store.principals import PrincipalStore

log = logging.getLogger(__name__)
# RPC outcomes that mean "not now" rather than "never": answered 503 with Retry-After.
_TRANSIENT = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.ABORTED,
}
_STATUS = {
    NotFound: status.HTTP_404_NOT_FOUND,
    Forbidden: status.HTTP_403_FORBIDDEN,
    Conflict: status.HTTP_409_CONFLICT,
    Invalid: status.HTTP_422_UNPROCESSABLE_CONTENT,
}


def not_json(error: RequestValidationError) -> list[dict[str, Any]] | None:
    """The errors to answer with a 400 when the body is not JSON at all, rather than JSON that does not
    fit the route (422); None otherwise. Not JSON: a syntax error, or a body FastAPI did not parse
    because its Content-Type does not say JSON (a form, plain text, none), which it then validated as
    raw bytes and would report as "not a valid dictionary"."""
    errors = list(error.errors())
    if any(tuple(e.get("loc", ())) == ("body",) and isinstance(e.get("input"), bytes) for e in errors):
        why = "the body is not JSON: send a JSON body with Content-Type: application/json"
        return [{"type": "json_invalid", "loc": ["body"], "msg": why}]
    return errors if any(e.get("type") == "json_invalid" for e in errors) else None


def create_app(settings: Settings, client: Client | None = None) -> FastAPI:
    """Build the app; tests pass their own `client`, production connects one in the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await attach(app, settings, client)
        try:
            yield
        finally:
            await detach(app)

    app = FastAPI(
        title="Countersign",
        summary="The AI proposes, a human decides.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    app.include_router(workflows.router)
    app.include_router(approvals.router)
    app.include_router(approvals.dead_letters_router)
    app.include_router(principals.router)
    app.include_router(tools.router)
    app.include_router(directory.router)
    app.include_router(audit.router)
    app.include_router(deliveries.router)
    app.include_router(graphs.router)
    app.include_router(codec.router)
    app.include_router(metrics.router)
    app.include_router(links.router)
    app.include_router(slack.router)
    mount_ui(app)  # last: /ui serves static files under its whole path
    # Middleware runs outermost last-added. A JSON body holding what JSON has not (NaN, Infinity, a lone
    # surrogate) or nested too deeply is refused before any route parses it; inside the size limit, which
    # has capped what it buffers.
    app.add_middleware(JsonBodyGate)
    # Oversized bodies and headers are refused before any route reads them (inside CORS, so the Web UI
    # can read the 413).
    app.add_middleware(
        RequestLimitMiddleware,
        limit=settings.max_request_bytes,
        prefixes=[(codec.PREFIX + "/", settings.max_codec_request_bytes)],
    )
    # Past its failed authentications an address or a credential gets 429 before anything else runs.
    app.add_middleware(AuthFailureLimiter, failures_per_minute=settings.auth_failures_per_minute)
    # The Web UI calls /codec from the browser, from its own origin.
    app.add_middleware(codec.CodecCorsMiddleware, origins=settings.codec_cors_origins)
    # CSP, anti-framing and nosniff on every answer, refusals included; the docs keep their CDN scripts.
    docs = (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
    app.add_middleware(SecurityHeadersMiddleware, docs=docs)
    # Outermost: every request is counted by route template and status, refusals of the others included.
    app.state.metrics = metrics.GatewayMetrics()
    app.add_middleware(metrics.HttpMetricsMiddleware, metrics=app.state.metrics)
    # With COUNTERSIGN_OTLP_ENDPOINT: a server span per request, continued by the Temporal client's spans.
    app.state.tracer_provider = tracing.tracer_provider(settings.otlp_endpoint, tracing.API_SERVICE)
    tracing.instrument_app(app, app.state.tracer_provider)

    @app.exception_handler(RequestValidationError)
    async def malformed(_: Request, error: RequestValidationError) -> JSONResponse:
        bad_request = not_json(error)
        code = status.HTTP_422_UNPROCESSABLE_CONTENT if bad_request is None else status.HTTP_400_BAD_REQUEST
        errors = list(error.errors()) if bad_request is None else bad_request
        try:
            return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=code)
        except ValueError:
            # An input JSON cannot carry (NaN, Infinity; bytes that are not UTF-8) made the errors
            # unrenderable, which was a 500: the same errors, without their inputs.
            errors = [{k: v for k, v in e.items() if k not in ("input", "ctx")} for e in errors]
            return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=code)

    def unavailable(why: str) -> JSONResponse:
        return JSONResponse(
            {"detail": f"{why}; try again", "code": "Unavailable"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(RPCError)
    async def temporal_error(_: Request, error: RPCError) -> JSONResponse:
        # Temporal overloaded or out of reach (a query no worker answered in time, say): the caller may
        # try again. Anything else Temporal refused is a fault of ours, and stays a 500.
        if error.status not in _TRANSIENT:
            raise error
        log.warning("Temporal did not answer: %s (%s)", error.message, error.status.name)
        return unavailable(f"Temporal did not answer in time ({error.status.name})")

    @app.exception_handler(WorkflowUpdateRPCTimeoutOrCancelledError)
    async def update_timed_out(_: Request, error: WorkflowUpdateRPCTimeoutOrCancelledError) -> JSONResponse:
        # No worker took the decision in time (one died and its workflows wait to move, or all are
        # busy). Whether it was applied is unknown: the view tells, and a decision is checked against
        # the version and the step, so a retry never decides twice. Was a 500.
        log.warning("a workflow update was not answered in time: %s", error)
        return unavailable("no worker took the decision in time (it may yet be applied: read the request)")

    @app.exception_handler(WorkflowQueryFailedError)
    async def query_failed(_: Request, error: WorkflowQueryFailedError) -> JSONResponse:
        # The views' query handlers raise nothing of their own: a failed query is a worker that could not
        # run the workflow's task just then (seen: the SDK's deadlock detector on a CPU-starved worker).
        # Was a 500; the next try is answered by a worker that can.
        log.warning("a workflow query failed: %s", error.message)
        return unavailable("the workflow could not answer just now")

    @app.exception_handler(RequestError)
    async def domain_error(_: Request, error: RequestError) -> JSONResponse:
        code = next((c for kind, c in _STATUS.items() if isinstance(error, kind)), 500)
        body: dict[str, Any] = {"detail": error.message, "code": error.code}
        if isinstance(error, InvalidAction):
            body["findings"] = error.findings
        return JSONResponse(body, status_code=code)

    mount_mcp(app, settings.api_host)  # MCP at /mcp: its tools call the routes above as the caller
    return app


async def attach(app: FastAPI, settings: Settings, client: Client | None = None) -> None:
    """Connect what the routes depend on: one Temporal client, the principal store, the service."""
    app.state.codec = settings.payload_codec()
    if client is None:
        client = await connect(
            settings.resolved_temporal_address,
            settings.namespace,
            tls=settings.temporal_tls(),
            codec=app.state.codec,
            plugins=tracing.temporal_plugins(getattr(app.state, "tracer_provider", None)),
            # Every start, decision, edit, withdrawal, reassignment, retry and refusal it sends is signed.
            interceptors=[GatewaySigning(settings.gateway_signer())],
        )
    app.state.client = client
    app.state.settings = settings
    # The plugins' tools and node functions too: GET /tools lists them, graphs may name them.
    plugins = load_plugins(settings.plugins)
    app.state.registry = plugins.tools
    app.state.principals = await PrincipalStore.open(settings.database_url)
    # The inbox's projection, kept by the workers' audit activity (store/pending_decisions.py).
    app.state.pending = await PendingDecisions.open(settings.database_url)
    app.state.audit_store = await AuditStore.open(settings.audit_url)
    app.state.audit = AuditLog(app.state.audit_store, settings.audit_keyring())
    # Tenants' declared tools, in the same database; each declaration goes to the tenant's admin chain.
    app.state.declared_tool_store = await DeclaredToolStore.open(settings.audit_url)
    admin_audit = AdminAudit(app.state.audit_store.with_keyring(settings.audit_keyring()))
    app.state.declared_tools = DeclaredToolService(
        app.state.declared_tool_store, app.state.registry, admin_audit
    )
    # Principals a tenant's ADMIN adds (POST /principals) go to the same chain, as the CLI's do.
    app.state.principal_admin = PrincipalAdminService(app.state.principals, admin_audit)
    # The tenants' directories (docs/directory.md): imports and removals go to the same chain.
    app.state.directory_store = await DirectoryStore.open(settings.database_url)
    app.state.directory = DirectoryService(app.state.directory_store, admin_audit)
    app.state.service = ApprovalService(
        client,
        task_queue=settings.task_queue,
        policy=load_policy(settings.policy_file),
        principals=app.state.principals,
        pending=app.state.pending,
        audit=app.state.audit,
        outage_window=timedelta(seconds=settings.outage_window_seconds),
        registry=app.state.registry,
        # An action naming no tool of the registry may name one its tenant declared (the caller runs it).
        declared_tools=functools.partial(resolve, app.state.declared_tool_store),
        # Never shown to callers: where this server keeps its data, and where it runs.
        server_paths=[settings.data_dir, Path.cwd()],
        callback_urls=settings.callback_allowed_urls,
    )
    app.state.callback_store = await CallbackStore.open(settings.audit_url)
    app.state.callback_sender = CallbackSender(settings.callback_timeout_seconds)
    app.state.deliveries = DeliveryService(
        client,
        app.state.callback_store,
        app.state.callback_sender,
        allowed_urls=settings.callback_allowed_urls,
        secret_grace=timedelta(seconds=settings.callback_secret_grace_seconds),
    )
    # Decision links (email's Approve/Reject): minted by the worker, checked and used up here.
    secret = settings.link_keys.get_secret_value() if settings.link_keys is not None else None
    link_keys = LinkKeyring.load(secret, settings.data_dir)
    app.state.link_decisions = LinkDecisions(
        await DecisionLinks.open(settings.audit_url, link_keys),
        app.state.service,
        app.state.principals,
        client,
        app.state.audit,
        settings.public_url,
    )
    app.state.graph_store = await GraphStore.open(settings.audit_url)
    functions = plugins.nodes
    for definition in shipped_definitions():
        await app.state.graph_store.ensure_builtin(check_graph(definition, functions.names()))
    app.state.graphs = GraphService(
        client,
        app.state.graph_store,
        functions,
        task_queue=settings.task_queue,
        principals=app.state.principals,
        audit=app.state.audit,
        outage_window=timedelta(seconds=settings.outage_window_seconds),
    )
    # Deciding from Slack: only with COUNTERSIGN_SLACK_SIGNING_SECRET (the route answers 404 without).
    app.state.slack = await open_slack(
        settings, app.state.service, app.state.principals, app.state.audit, client
    )
    await app.state.mcp.start()
    # With COUNTERSIGN_REPLY_SMTP_PORT: replies to "decision needed" emails decide (docs/email-replies.md).
    app.state.reply_listener = await start_reply_listener(app, settings)


async def detach(app: FastAPI) -> None:
    """Close what `attach` opened."""
    if getattr(app.state, "reply_listener", None) is not None:
        await app.state.reply_listener.stop()
    await app.state.mcp.stop()
    if app.state.slack is not None:
        await app.state.slack.close()
    await app.state.principals.close()
    await app.state.pending.close()
    await app.state.audit_store.close()
    await app.state.graph_store.close()
    await app.state.declared_tool_store.close()
    await app.state.directory_store.close()
    await app.state.callback_sender.close()
    await app.state.callback_store.close()
    await app.state.link_decisions.close()
    tracing.shutdown(getattr(app.state, "tracer_provider", None))

"""Metrics, logs and traces from a real run: `countersign worker` as a child process (metrics endpoint on,
JSON logs, OTLP tracing), the real gateway (tracing on, a metrics token), the real `openai` SDK against
a scripted endpoint, a real SMTP server, and the session's Temporal dev server.

One run serves every test of this module (they read different outputs of it):
- `approved`: planned, approved by a MANAGER, its email sent;
- `refused`: the model refuses, quoting the request, and the request goes to triage;
- `conflicted`: waits for a MANAGER; a row planted in its audit log under the seq its next event takes
  makes the audit log refuse the rejection, which the workflow logs through `workflow.logger`.
"""

import base64
import json
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiosmtpd.smtp import AuthResult
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from countersign.api.main import attach, create_app, detach
from countersign.config.settings import Settings
from countersign.models.enums import Role
from countersign.observability import metrics
from countersign.stack.mail_sink import MailSink, deliveries
from tests.chaos.support import WorkerProcess, free_port, worker_env
from tests.deploy import REPO, services
from tests.fake_llm import FakeLLM, Recorded, Reply, follow_up_plan, openai_answer
from tests.helpers import eventually
from tests.observability.support import OtlpReceiver, label_values, metric_value, samples

FOLLOW_UP = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"
# The scripted model refuses this one, quoting it: the planner's warning then carries the request text.
CONFIDENTIAL = "Draft the Zanzibar merger announcement for the board, embargoed until Friday"
OPENAI_KEY = "sk-test-OBSERVABILITY0123456789abcdef"
LLM_API_KEY = "llm-compatible-key-0123456789"
SMTP_PASSWORD = "smtp-password-0123456789"
METRICS_TOKEN = "metrics-token-0123456789abcdef"
ENCRYPTION_KEY = base64.b64encode(b"k" * 32).decode()
SECRETS = (OPENAI_KEY, LLM_API_KEY, SMTP_PASSWORD, METRICS_TOKEN, ENCRYPTION_KEY)
PROVIDER = "openai:gpt-4.1-mini"
INPUT_TOKENS, OUTPUT_TOKENS = 120, 80


def model(recorded: Recorded) -> Reply:
    """A valid follow-up plan, or a refusal that repeats the request when it is the confidential one."""
    if "Zanzibar" in json.dumps(recorded.body):
        return openai_answer(
            None, refusal=f"I will not draft this: {CONFIDENTIAL}", tokens=(INPUT_TOKENS, OUTPUT_TOKENS)
        )
    return openai_answer(follow_up_plan(), tokens=(INPUT_TOKENS, OUTPUT_TOKENS))


@dataclass
class Run:
    http: httpx.AsyncClient
    app: FastAPI
    client: Client
    keys: dict[str, str]
    worker: WorkerProcess
    metrics_url: str
    otlp: OtlpReceiver
    data_dir: Path
    mail_dir: Path
    queue: str
    llm: FakeLLM
    runs: dict[str, str] = field(default_factory=dict)  # workflow id -> run id
    ids: dict[str, str] = field(default_factory=dict)  # approved, refused, conflicted -> workflow id

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def log_lines(self) -> list[str]:
        return [line for line in self.worker.log.read_text().splitlines() if line.strip()]

    def log_entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_lines()]

    async def scrape_worker(self) -> str:
        async with httpx.AsyncClient() as http:
            response = await http.get(self.metrics_url)
        assert response.status_code == 200, response.text
        return response.text

    async def state(self, workflow_id: str) -> str:
        view = await self.http.get(f"/workflows/{workflow_id}", headers=self.as_("requester"))
        return str(view.json().get("state"))

    async def submit(self, text: str) -> str:
        submitted = await self.http.post(
            "/workflows?wait_seconds=30", json={"text": text}, headers=self.as_("requester")
        )
        assert submitted.status_code == 201, submitted.text
        workflow_id = str(submitted.json()["workflow_id"])
        await eventually(lambda: self.state(workflow_id), lambda s: s == "WAITING_FOR_APPROVAL", timeout=60)
        self.runs[workflow_id] = (await self.client.get_workflow_handle(workflow_id).describe()).run_id
        return workflow_id


def stored_events(data_dir: Path, workflow_id: str) -> int:
    with sqlite3.connect(data_dir / "audit.db") as db:
        (count,) = db.execute(
            "SELECT count(*) FROM audit_events WHERE workflow_id = ?", (workflow_id,)
        ).fetchone()
    db.close()
    return int(count)


def plant_event(data_dir: Path, workflow_id: str, seq: int) -> None:
    """Someone else's row where the workflow's next event goes: the audit log must refuse to overwrite."""
    row = {
        "workflow_id": workflow_id,
        "seq": seq,
        "tenant": "default",
        "event": "planted",
        "actor": "intruder",
        "actor_kind": "SYSTEM",
        "state": "WAITING_FOR_APPROVAL",
        "detail": "",
        "at": "2026-01-01T00:00:00+00:00",
        "at_utc": "2026-01-01T00:00:00+00:00",
        "prev_hash": "",
        "hash": "0" * 64,
    }
    with sqlite3.connect(data_dir / "audit.db") as db:
        db.execute(
            f"INSERT INTO audit_events ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
            list(row.values()),
        )
    db.close()


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    server = FakeLLM(responder=model)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def run(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory, otlp: OtlpReceiver, llm: FakeLLM
) -> AsyncIterator[Run]:
    tmp = tmp_path_factory.mktemp("telemetry")
    data_dir = tmp / "data"
    address = dev_env.client.service_client.config.target_host
    queue = f"telemetry-{uuid.uuid4().hex[:8]}"
    metrics_port = free_port()
    keys = f"k1:{ENCRYPTION_KEY}"
    # The sink takes any login: the SMTP password really travels (and must not be logged).
    sink = MailSink(tmp / "sink", auth_require_tls=False, authenticator=lambda *_: AuthResult(success=True))
    sink.start()
    env = worker_env(address, queue, data_dir, sink.port)
    env.update(
        {
            "COUNTERSIGN_LLM": PROVIDER,
            "COUNTERSIGN_LLM_MAX_REPAIRS": "0",
            "COUNTERSIGN_LLM_API_KEY": LLM_API_KEY,
            "COUNTERSIGN_SMTP_USERNAME": "countersign",
            "COUNTERSIGN_SMTP_PASSWORD": SMTP_PASSWORD,
            "COUNTERSIGN_METRICS_TOKEN": METRICS_TOKEN,
            "COUNTERSIGN_ENCRYPTION_KEYS": keys,
            "COUNTERSIGN_WORKER_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
            "COUNTERSIGN_LOG_FORMAT": "json",
            "COUNTERSIGN_OTLP_ENDPOINT": otlp.endpoint,
            # Workflow code in the SDK's sandbox, through which the tracing interceptor's modules pass.
            "COUNTERSIGN_WORKFLOW_SANDBOX": "true",
            # Batches of spans leave every 100 ms rather than every 5 s.
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            **llm.vendor_env(OPENAI_KEY, OPENAI_KEY),
        }
    )
    worker = WorkerProcess(["-m", "countersign", "worker"], env, tmp / "worker.log")
    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        task_queue=queue,
        temporal_address=address,
        otlp_endpoint=otlp.endpoint,
        metrics_token=METRICS_TOKEN,
        encryption_keys=keys,
    )
    app = create_app(settings)
    await attach(app, settings)  # its own client: the tracing interceptor on it
    people = {"requester": [], "manager": [Role.MANAGER], "admin": [Role.ADMIN], "operator": [Role.OPERATOR]}
    store = app.state.principals
    principal_keys = {name: (await store.add(name, roles)).api_key for name, roles in people.items()}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://countersign.test") as http:
        result = Run(
            http=http,
            app=app,
            client=app.state.client,
            keys=principal_keys,
            worker=worker,
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
            otlp=otlp,
            data_dir=data_dir,
            mail_dir=tmp / "sink",
            queue=queue,
            llm=llm,
        )
        try:
            approved = result.ids["approved"] = await result.submit(FOLLOW_UP)
            decided = await http.post(
                f"/workflows/{approved}/approve",
                json={"decision": "approved", "notes": "go ahead", "proposal_version": 1},
                headers=result.as_("manager"),
            )
            assert decided.status_code == 200, decided.text
            await eventually(lambda: result.state(approved), lambda s: s == "ACTION_EXECUTED", timeout=60)

            result.ids["refused"] = await result.submit(CONFIDENTIAL)

            conflicted = result.ids["conflicted"] = await result.submit(FOLLOW_UP + " (second)")
            view = (await http.get(f"/workflows/{conflicted}", headers=result.as_("requester"))).json()
            written = len(view["audit"])

            async def stored() -> int:
                return stored_events(data_dir, conflicted)

            await eventually(stored, lambda n: n == written, timeout=30)
            plant_event(data_dir, conflicted, written)
            rejected = await http.post(
                f"/workflows/{conflicted}/approve",
                json={"decision": "rejected", "notes": "not now", "proposal_version": 1},
                headers=result.as_("manager"),
            )
            assert rejected.status_code == 200, rejected.text
            await eventually(lambda: result.state(conflicted), lambda s: s == "REJECTED", timeout=60)
            yield result
        finally:
            worker.stop()
            await detach(app)
            sink.stop()


async def test_the_worker_endpoint_serves_the_sdks_metrics_and_countersigns(run: Run) -> None:
    async def scraped() -> str:
        return await run.scrape_worker()

    # The audit activity records the last events a moment after the state is visible.
    text = await eventually(
        scraped, lambda t: metric_value(t, "countersign_audit_events_total", event="action_executed") == 1
    )
    # The SDK's own metrics, from the same endpoint.
    for name in (
        "temporal_request",
        "temporal_workflow_completed",
        "temporal_activity_execution_latency_count",
    ):
        assert (metric_value(text, name) or 0) >= 1, name
    assert metric_value(text, "temporal_worker_task_slots_available", task_queue=run.queue) is not None

    # Decisions: one approval; the rejection the audit log refused to store is not counted (a decision
    # counts once it is in the audit log, so never twice either).
    assert metric_value(text, "countersign_decisions_total", outcome="approved") == 1
    assert metric_value(text, "countersign_decisions_total", outcome="rejected") is None
    assert metric_value(text, "countersign_audit_events_total", event="action_executed") == 1
    # One email sent, once.
    assert metric_value(text, "countersign_executions_total", tool="send_email", outcome="succeeded") == 1
    assert label_values(text, "countersign_executions_total", "outcome") == {"succeeded"}
    assert len(deliveries(run.mail_dir)) == 1
    # Every plan came from the scripted model, each with its tokens.
    plans = metric_value(text, "countersign_plan_latency_seconds_count", provider=PROVIDER)
    assert plans is not None and plans >= 3  # at least one per workflow (the refused one may replan)
    assert metric_value(text, "countersign_plan_tokens_total", provider=PROVIDER, direction="input") == (
        plans * INPUT_TOKENS
    )
    assert metric_value(text, "countersign_plan_tokens_total", provider=PROVIDER, direction="output") == (
        plans * OUTPUT_TOKENS
    )
    assert len(run.llm.requests) == plans


async def test_the_gateway_metrics_need_an_operator_or_the_token_and_count_by_route(run: Run) -> None:
    http = run.http
    nobody = await http.get("/metrics")
    assert nobody.status_code == 401 and nobody.headers["www-authenticate"] == "Bearer", nobody.text
    wrong = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}x"})
    assert wrong.status_code == 401, wrong.text
    # Authenticated without OPERATOR, a tenant's ADMIN included: the counts are every tenant's.
    for who in ("requester", "manager", "admin"):
        refused = await http.get("/metrics", headers=run.as_(who))
        assert refused.status_code == 403 and "OPERATOR" in refused.json()["detail"], refused.text
    assert (await http.get("/metrics", headers=run.as_("operator"))).status_code == 200
    scraped = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200, scraped.text
    assert scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text

    def requests(method: str, route: str, status: int) -> float | None:
        return metric_value(
            text, "countersign_http_requests_total", method=method, route=route, status=str(status)
        )

    # Exactly what the run and this test sent, by route template and status.
    assert requests("POST", "/workflows", 201) == 3
    assert requests("POST", "/workflows/{workflow_id}/approve", 200) == 2
    assert (requests("GET", "/workflows/{workflow_id}", 200) or 0) >= 3
    assert requests("GET", "/metrics", 401) == 2
    assert requests("GET", "/metrics", 403) == 3
    assert requests("GET", "/metrics", 200) == 1  # the operator's; this scrape is counted once it is answered
    latency = metric_value(
        text, "countersign_http_request_duration_seconds_count", method="POST", route="/workflows"
    )
    assert latency == 3
    # Templates only: no workflow id made a series of its own.
    routes = label_values(text, "countersign_http_requests_total", "route")
    assert not any(workflow_id in text for workflow_id in run.ids.values()), routes
    assert all(route.startswith("/") for route in routes), routes
    missing = await http.get(f"/no/such/{uuid.uuid4().hex}", headers=run.as_("admin"))
    assert missing.status_code == 404
    again = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert metric_value(again.text, "countersign_http_requests_total", route="unmatched", status="404") == 1

    # Pending approvals by role, from Temporal's visibility (namespace-wide: other tests' workflows count
    # too, so at least the two of this run that wait for a MANAGER).
    assert label_values(text, "countersign_pending_approvals", "role") == {role.value for role in Role}
    pending = metric_value(text, "countersign_pending_approvals", role="MANAGER")
    assert pending is not None and pending >= 1, text


async def test_log_lines_are_json_with_workflow_ids_and_without_secrets_or_request_texts(run: Run) -> None:
    conflicted = run.ids["conflicted"]

    async def entries() -> list[dict[str, Any]]:
        return run.log_entries()  # every line is JSON, or this raises

    def refused_by_the_audit_log(entry: dict[str, Any]) -> bool:
        return entry["logger"] == "temporalio.workflow" and "audit log refused" in entry["message"]

    found = await eventually(entries, lambda es: any(refused_by_the_audit_log(e) for e in es))
    # From workflow code (workflow.logger): the workflow's ids as fields, not in the message.
    (workflow_line,) = [e for e in found if refused_by_the_audit_log(e)]
    assert workflow_line["level"] == "ERROR" and workflow_line["service"] == "countersign-worker"
    assert workflow_line["workflow_id"] == conflicted and workflow_line["run_id"] == run.runs[conflicted]
    assert workflow_line["workflow_type"] == "ApprovalWorkflow"
    assert "'run_id'" not in workflow_line["message"]  # the SDK's own copy of the ids is left out
    # From activity code (activity.logger): the activity's workflow, run and type.
    approved = run.ids["approved"]
    executed = [
        e for e in found if e["logger"] == "temporalio.activity" and "executed send_email" in e["message"]
    ]
    assert executed, found
    assert {(e["workflow_id"], e["run_id"], e["activity_type"]) for e in executed} == {
        (approved, run.runs[approved], "execute")
    }
    planning = [
        e
        for e in found
        if e["logger"] == "temporalio.activity" and e["message"].startswith(f"planning with {PROVIDER}")
    ]
    assert {e["workflow_id"] for e in planning} == set(run.ids.values())
    assert all(e["run_id"] == run.runs[e["workflow_id"]] for e in planning)
    # From a plain logger inside an activity (the planner's warning): the ids too, and the request text
    # the model repeated is redacted.
    refused = run.ids["refused"]
    (triage,) = [
        e for e in found if e["logger"] == "countersign.llm.model_planner" and e["workflow_id"] == refused
    ][:1]
    assert "the model refused" in triage["message"] and "[request text]" in triage["message"], triage
    assert triage["run_id"] == run.runs[refused] and triage["activity_type"] == "plan"
    everything = run.worker.log.read_text()
    assert "Zanzibar" not in everything
    for secret in SECRETS:
        assert secret not in everything
    # The secrets were in use all the same: the model was called with the key, the email sent by login.
    assert run.llm.requests[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert len(deliveries(run.mail_dir)) == 1


async def test_a_submit_is_traced_from_the_gateway_through_the_workflow_to_its_activities(run: Run) -> None:
    run.app.state.tracer_provider.force_flush()
    services = {"countersign-api", "countersign-worker"}

    async def spans() -> list[Any]:
        return run.otlp.spans()

    def complete(found: list[Any]) -> bool:
        names = {(s.service, s.name) for s in found}
        return {
            ("countersign-worker", "RunActivity:execute"),
            ("countersign-api", "POST /workflows"),
        } <= names

    found = await eventually(spans, complete, timeout=30)
    assert set(run.otlp.paths) == {"/v1/traces"}
    assert {s.service for s in found} == services
    by_name: dict[str, list[Any]] = {}
    for span in found:
        by_name.setdefault(span.name, []).append(span)
    # The gateway: a server span per request, named by route template, and the Temporal client's spans.
    assert {s.service for s in by_name["POST /workflows"]} == {"countersign-api"}
    assert "POST /workflows/{workflow_id}/approve" in by_name
    client_spans = {
        name for name in by_name if name.startswith(("StartWorkflow:", "StartUpdateWithStartWorkflow:"))
    }
    assert client_spans, sorted({(s.service, s.name) for s in found})
    # The worker: the workflow and its activities, in the trace the submit started.
    submit = by_name["POST /workflows"][0]
    trace = [s for s in found if s.trace_id == submit.trace_id]
    worker_names = {s.name for s in trace if s.service == "countersign-worker"}
    assert {"RunWorkflow:ApprovalWorkflow", "RunActivity:plan"} <= worker_names, sorted(worker_names)
    assert any(s.service == "countersign-api" and s.name in client_spans for s in trace)
    # No health probe or scrape is traced, nor the ASGI messages of each request.
    assert not any(name.endswith(("/metrics", "/healthz", " http send", " http receive")) for name in by_name)


async def test_the_grafana_dashboard_charts_metrics_the_run_exposes(run: Run) -> None:
    """Every series the committed dashboard queries is one the worker or the gateway really serves (as
    exposed: Prometheus stores the names unchanged), through the data source Grafana is provisioned with."""
    grafana = REPO / "deploy" / "grafana"
    dashboard = json.loads((grafana / "dashboards" / "countersign.json").read_text())
    (source,) = yaml.safe_load((grafana / "provisioning" / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    (provider,) = yaml.safe_load((grafana / "provisioning" / "dashboards" / "countersign.yml").read_text())[
        "providers"
    ]
    mounts = dict(volume.split(":")[:2] for volume in services()["grafana"]["volumes"])
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in services()

    exposed = {name for name, _, _ in samples(await run.scrape_worker())}
    gateway = await run.http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    exposed |= {name for name, _, _ in samples(gateway.text)}
    # Counted only when they happen, which this run does not make happen (test_parts.py covers them).
    not_in_this_run = {metrics.SLA_BREACHES, metrics.PLAN_ERRORS}
    queried = set()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 15
    for panel in panels:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]
            queried |= set(re.findall(r"\b(?:countersign|temporal)_[a-z_]+", target["expr"]))
    assert queried - exposed <= not_in_this_run, sorted(queried - exposed)
    assert {
        metrics.DECISIONS,
        metrics.PENDING,
        metrics.EXECUTIONS,
        "countersign_http_requests_total",
    } <= queried
    assert {f"{metrics.PLAN_LATENCY}_bucket", metrics.PLAN_TOKENS, metrics.PLAN_ERRORS} <= queried

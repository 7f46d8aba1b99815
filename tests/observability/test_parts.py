"""The parts on their own: what each audit event counts as (on a real SDK metric meter and Prometheus
endpoint, inside the SDK's activity test environment), the log formats and their redaction, and that
telemetry left off costs nothing."""

import dataclasses
import io
import json
import logging
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from temporalio.testing import ActivityEnvironment

from countersign.config.settings import Settings
from countersign.models.audit import AuditAck, AuditBatch, AuditEvent
from countersign.models.enums import ActorKind, Role, WorkflowState
from countersign.observability import metrics
from countersign.observability.logs import (
    REDACTED,
    REQUEST_TEXT_MARKER,
    JsonFormatter,
    Redactor,
    TextFormatter,
    request_text,
    secret_values,
)
from tests.chaos.support import free_port
from tests.observability.support import metric_value


def event(name: str, actor: str = "chain", role: Role | None = None) -> AuditEvent:
    return AuditEvent(
        event=name,
        actor=actor,
        actor_kind=ActorKind.SYSTEM,
        role=role,
        at="2026-01-01T00:00:00+00:00",
        state=WorkflowState.WAITING_FOR_APPROVAL,
    )


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[ActivityEnvironment, str]]:
    """An activity environment whose meter is a real runtime's, served by Prometheus on a free port."""
    address = f"127.0.0.1:{free_port()}"
    runtime = metrics.worker_runtime(address)
    assert runtime is not None
    env = ActivityEnvironment()
    env.metric_meter = runtime.metric_meter
    env.info = dataclasses.replace(env.info, workflow_type="ApprovalWorkflow")
    yield env, f"http://{address}/metrics"


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_audit_events_count_as_decisions_and_sla_breaches_once(
    endpoint: tuple[ActivityEnvironment, str],
) -> None:
    env, url = endpoint
    events = [
        event("awaiting_approval", role=Role.MANAGER),
        event("escalated", actor="sla", role=Role.DIRECTOR),
        event("decision_approved", actor="Morgan"),
        event("edited", actor="Morgan"),
        event("escalated", actor="deadline", role=Role.ADMIN),
        event("expired", actor="sla"),
        event("rejected", actor="deadline"),
        event("decision_rejected", actor="Max"),
    ]
    batch = AuditBatch(workflow_id="wf-parts", tenant="default", first_seq=0, events=events)
    # The log already held the first two (a resent batch): only the six it stored now count.
    env.run(metrics.record_audit, batch, AuditAck(stored=6, last_seq=7, last_hash="h"))
    # A retry after a lost acknowledgement stores nothing: nothing counts again.
    env.run(metrics.record_audit, batch, AuditAck(stored=0, last_seq=7, last_hash="h"))
    text = scrape(url)
    labels = {"workflow_type": "ApprovalWorkflow"}
    decisions = {
        outcome: metric_value(text, metrics.DECISIONS, outcome=outcome, **labels)
        for outcome in ("approved", "rejected", "edited", "expired", "rejected_at_deadline", "refused")
    }
    assert decisions == {
        "approved": 1,
        "rejected": 1,
        "edited": 1,
        "expired": 1,
        "rejected_at_deadline": 1,
        "refused": None,
    }
    # The SLA breach the log already held is not counted again; the deadline's escalation is.
    assert metric_value(text, metrics.SLA_BREACHES, cause="sla", **labels) is None
    assert metric_value(text, metrics.SLA_BREACHES, cause="deadline", **labels) == 1
    assert metric_value(text, metrics.AUDIT_EVENTS, event="awaiting_approval", **labels) is None
    assert metric_value(text, metrics.AUDIT_EVENTS, **labels) == 6


def test_the_worker_runtime_is_only_built_when_asked_for() -> None:
    assert metrics.worker_runtime(None) is None
    assert metrics.worker_runtime(None, forward_logs=True) is not None


def test_telemetry_left_off_loads_nothing_of_it() -> None:
    """Default settings: no OpenTelemetry SDK imported, no runtime of our own, no tracing plugin."""
    script = (
        "import sys\n"
        "from countersign.api.main import create_app\n"
        "from countersign.observability import logs, metrics, tracing\n"
        "from countersign.config.settings import Settings\n"
        "settings = Settings(_env_file=None)\n"
        "app = create_app(settings)\n"
        "assert app.state.tracer_provider is None\n"
        "assert tracing.temporal_plugins(app.state.tracer_provider) == []\n"
        "assert metrics.worker_runtime(settings.worker_metrics_address) is None\n"
        "prefixes = ('opentelemetry.sdk', 'opentelemetry.exporter')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(prefixes))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr


def test_the_secret_settings_and_vendor_keys_are_what_redaction_looks_for() -> None:
    settings = Settings(
        _env_file=None,
        smtp_password="smtp-password-123",
        audit_database_url="postgresql://countersign:db-password-456@db:5432/countersign",
        metrics_token="metrics-token-0123456789",
        encryption_keys="k1:" + "A" * 43 + "=",
    )
    found = secret_values(settings, {"OPENAI_API_KEY": "sk-vendor-789", "UNRELATED": "not-a-secret"})
    for value in (
        "smtp-password-123",
        "db-password-456",
        "metrics-token-0123456789",
        "A" * 43 + "=",
        "sk-vendor-789",
    ):
        assert value in found
    assert "not-a-secret" not in found
    redact = Redactor(found)
    line = redact(
        "connect postgresql://countersign:db-password-456@db:5432/countersign "
        "with Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl "
        "key cs_0123456789abcdefghijKLMN and sk-vendor-789"
    )
    assert "db-password-456" not in line and "eyJhbGci" not in line and "cs_0123" not in line
    assert "sk-vendor" not in line and line.count(REDACTED) == 4, line


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(
        "countersign.llm.model_planner", logging.WARNING, __file__, 1, message, args, None
    )


def test_request_texts_are_redacted_unless_the_setting_keeps_them() -> None:
    text = "Buy the Zanzibar property for $2,000,000\nand keep it quiet until the board meets"
    line = "the model refused: I will not help with %s"
    redacting = TextFormatter(Redactor(), "countersign-worker")
    keeping = TextFormatter(Redactor(keep_request_text=True), "countersign-worker")
    with request_text(text):
        assert "Zanzibar" not in redacting.format(record(line, text))
        assert REQUEST_TEXT_MARKER in redacting.format(record(line, text))
        # A model quoting one of its lines only.
        assert "keep it quiet" not in redacting.format(
            record(line, "and keep it quiet until the board meets")
        )
        assert "Zanzibar" in keeping.format(record(line, text))
    # Outside the activity that plans it, a text is just text.
    assert "Zanzibar" in redacting.format(record(line, text))


def test_plain_loggers_inside_an_activity_get_its_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(Redactor(), "countersign-worker"))
    logger = logging.getLogger("tests.observability.inside")
    logger.addHandler(handler)
    logger.propagate = False
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, workflow_id="wf-7", workflow_run_id="run-7", activity_type="plan"
    )
    try:
        env.run(lambda: logger.warning("from a planner"))
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (inside["workflow_id"], inside["run_id"], inside["activity_type"]) == ("wf-7", "run-7", "plan")
    assert inside["message"] == "from a planner" and inside["level"] == "WARNING"
    assert "workflow_id" not in outside

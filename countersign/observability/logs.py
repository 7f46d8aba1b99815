"""Log lines for people (`text`) or for machines (`json`), with Temporal's ids and without secrets.

`configure_logging` sets up the worker's and the gateway's logging from COUNTERSIGN_LOG_FORMAT and
COUNTERSIGN_LOG_REQUEST_TEXT:

- `json`: one object per line: time, level, logger, message, service, and for lines logged from workflow
  or activity code `workflow_id`, `run_id`, `workflow_type`, `task_queue`, `namespace`, `attempt` (and
  `activity_type`, `activity_id` in activities). The SDK's `workflow.logger` and `activity.logger` give
  them (their `temporal_workflow` / `temporal_activity` extras, flattened); lines from plain loggers
  called inside an activity (the planners') get them from the running activity.
- `text`: `time LEVEL logger: message`; the SDK's loggers append their ids to the message themselves, and
  lines from plain loggers inside an activity get `[workflow_id=… run_id=…]`.

Whatever the format, every line (message and traceback) is redacted before it is written: the values of
the secret settings and of the LLM vendors' keys, bearer credentials, Countersign API keys (`cs_…`),
decision link tokens (in `/links/<token>` and `decide+<token>@…`) and passwords in URLs become
`[redacted]`. Unless COUNTERSIGN_LOG_REQUEST_TEXT is true, the text of the request being planned becomes
`[request text]` in every line logged while it is planned: Countersign's own code never logs it, but a
model's refusal quoted in a planner warning, or a provider's error, may repeat it. The worker learns the
text from the planning activity's input (`RequestTextInterceptor`); only verbatim copies (the whole text,
or one of its lines of 16 characters or more) can be recognised.
"""

import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr
from temporalio import activity, workflow
from temporalio.plugin import SimplePlugin
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from countersign.config.settings import Settings
from countersign.models.proposal import PlanInput

REDACTED = "[redacted]"
REQUEST_TEXT_MARKER = "[request text]"
# The LLM vendors' keys, read by their SDKs from the environment rather than through Settings.
VENDOR_SECRETS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "AZURE_OPENAI_API_KEY")
# Shorter values would redact ordinary words; no real key or password is this short.
MIN_SECRET_LENGTH = 6
# A line of a request text this long is recognised on its own (a model quoting part of the request).
MIN_FRAGMENT_LENGTH = 16

_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{16,}")
_API_KEY = re.compile(r"\bcs_[A-Za-z0-9_-]{16,}")
# models/links.py's TOKEN_PATTERN: until used, a link decides as the person it was sent to.
_LINK_TOKEN = re.compile(r"\b[a-z2-7]{16}-[a-z2-7]{16}\b")
_URL_PASSWORD = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]+):(?P<password>[^\s@/]+)@")

# The request texts of the activity running in this context (see RequestTextInterceptor).
_request_texts: ContextVar[tuple[str, ...]] = ContextVar("countersign_request_texts", default=())

# What the SDK's adapters put in `extra`, and the JSON field each becomes.
_WORKFLOW_FIELDS = {
    "workflow_id": "workflow_id",
    "run_id": "run_id",
    "workflow_type": "workflow_type",
    "task_queue": "task_queue",
    "namespace": "namespace",
    "attempt": "attempt",
}
_ACTIVITY_FIELDS = {
    "workflow_id": "workflow_id",
    "workflow_run_id": "run_id",
    "workflow_type": "workflow_type",
    "activity_type": "activity_type",
    "activity_id": "activity_id",
    "task_queue": "task_queue",
    "namespace": "namespace",
    "attempt": "attempt",
}


def secret_values(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret a log line must never show: the SecretStr settings (and the parts of those that
    hold several: a URL's password, each encryption key) and the vendors' keys in the environment."""
    environ = os.environ if environ is None else environ
    found: set[str] = set()
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if not isinstance(value, SecretStr):
            continue
        secret = value.get_secret_value()
        found.add(secret)
        match = _URL_PASSWORD.search(secret)
        if match:
            found.add(match["password"])
        for part in re.split(r"[,\s]+", secret):  # encryption keys: id:key,id:key
            found.add(part.partition(":")[2] if ":" in part and "://" not in part else part)
    found.update(environ.get(name, "") for name in VENDOR_SECRETS)
    return sorted((s for s in found if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True)


class Redactor:
    """Replaces secrets, credentials and (unless kept) the current request texts in a string."""

    def __init__(self, secrets: Iterable[str] = (), *, keep_request_text: bool = False) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self.keep_request_text = keep_request_text

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = _BEARER.sub(lambda m: f"{m[1]} {REDACTED}", text)
        text = _API_KEY.sub(REDACTED, text)
        text = _LINK_TOKEN.sub(REDACTED, text)
        text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}:{REDACTED}@", text)
        if not self.keep_request_text:
            for fragment in _fragments(_request_texts.get()):
                text = text.replace(fragment, REQUEST_TEXT_MARKER)
        return text


def _fragments(texts: Iterable[str]) -> list[str]:
    """The pieces of request texts to look for: each whole text (also as `repr` shows it) and each of
    its lines long enough to be recognised on its own; the longest first."""
    found: set[str] = set()
    for text in texts:
        stripped = text.strip()
        if not stripped:
            continue
        found.add(stripped)
        found.add(repr(stripped)[1:-1])
        found.update(
            line.strip() for line in stripped.splitlines() if len(line.strip()) >= MIN_FRAGMENT_LENGTH
        )
    return sorted(found, key=len, reverse=True)


@contextlib.contextmanager
def request_text(*texts: str) -> Iterator[None]:
    """While inside, `texts` are request texts: redacted from every line logged in this context."""
    token = _request_texts.set((*_request_texts.get(), *texts))
    try:
        yield
    finally:
        _request_texts.reset(token)


class RequestTextInterceptor(Interceptor):
    """Tells the log redaction which request an activity is planning, while it runs."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _RequestTextActivityInbound(next)


class _RequestTextActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        texts = [arg.request.described() for arg in input.args if isinstance(arg, PlanInput)]
        if not texts:
            return await self.next.execute_activity(input)
        with request_text(*texts):
            return await self.next.execute_activity(input)


def temporal_plugins(settings: Settings) -> list[SimplePlugin]:
    """For the worker's client: what lets redaction recognise request texts; none if they are kept."""
    if settings.log_request_text:
        return []
    return [SimplePlugin("countersign.observability.logs", interceptors=[RequestTextInterceptor()])]


def temporal_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The workflow's and activity's ids of a record: from the SDK loggers' extras, or, for a plain
    logger called inside an activity, from the running activity."""
    fields: dict[str, Any] = {}
    details = getattr(record, "temporal_workflow", None)
    if isinstance(details, Mapping):
        fields.update({out: details[key] for key, out in _WORKFLOW_FIELDS.items() if key in details})
    details = getattr(record, "temporal_activity", None)
    if not isinstance(details, Mapping) and activity.in_activity():
        info = activity.info()
        details = {
            "workflow_id": info.workflow_id,
            "workflow_run_id": info.workflow_run_id,
            "workflow_type": info.workflow_type,
            "activity_type": info.activity_type,
            "activity_id": info.activity_id,
            "task_queue": info.task_queue,
            "namespace": info.namespace,
            "attempt": info.attempt,
        }
    if isinstance(details, Mapping):
        fields.update({out: details[key] for key, out in _ACTIVITY_FIELDS.items() if key in details})
    return fields


class _RedactingFormatter(logging.Formatter):
    def __init__(self, redact: Redactor, service: str) -> None:
        super().__init__()
        self.redact = redact
        self.service = service

    def parts(self, record: logging.LogRecord) -> tuple[str, str | None]:
        """The message and the traceback (None without one), both redacted."""
        message = self.redact(record.getMessage())
        trace = None
        if record.exc_info:
            trace = self.formatException(record.exc_info)
        if record.stack_info:
            trace = (trace + "\n" if trace else "") + self.formatStack(record.stack_info)
        return message, None if trace is None else self.redact(trace)


class TextFormatter(_RedactingFormatter):
    """`2026-01-01 12:00:00,000 INFO name: message`, for people."""

    def format(self, record: logging.LogRecord) -> str:
        message, trace = self.parts(record)
        line = f"{self.formatTime(record)} {record.levelname} {record.name}: {message}"
        own_ids = hasattr(record, "temporal_workflow") or hasattr(record, "temporal_activity")
        fields = temporal_fields(record)
        if fields and not own_ids:  # the SDK's loggers put their ids in the message already
            line += f" [workflow_id={fields.get('workflow_id')} run_id={fields.get('run_id')}]"
        return line if trace is None else f"{line}\n{trace}"


class JsonFormatter(_RedactingFormatter):
    """One JSON object per line, for machines."""

    def format(self, record: logging.LogRecord) -> str:
        message, trace = self.parts(record)
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            "service": self.service,
        }
        entry.update(temporal_fields(record))
        if trace is not None:
            entry["exception"] = trace
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(settings: Settings, service: str) -> logging.Formatter:
    redact = Redactor(secret_values(settings), keep_request_text=settings.log_request_text)
    if settings.log_format == "json":
        return JsonFormatter(redact, service)
    return TextFormatter(redact, service)


def configure_logging(settings: Settings, service: str, level: int = logging.INFO) -> None:
    """Root logging for a `countersign worker` or `countersign api` process, on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings, service))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    if settings.log_format == "json":
        # The ids are fields of their own: the SDK's copy in the message would only repeat them.
        activity.logger.activity_info_on_message = False
        workflow.logger.workflow_info_on_message = False

"""Tools that reach other systems over HTTP: `post_webhook`, `create_ticket` and `http_request`.

Every destination is configured, never chosen freely by the planner: webhook URLs and request hosts
and methods must be on the allow-lists of `Integrations`, and tickets go to the one configured GitHub
repository or Jira project. What falls outside is a validation finding (`check=`), so it can never be
approved; handlers check again before sending, in case the configuration changed since.

Failures follow `activities.execution`: a `ValueError` (here `HttpRefused`, for 3xx and 4xx answers
other than 408/429 and rate limits) is a permanent refusal; `HttpRetryable` (5xx, 408, 429, rate
limits) and httpx's connection and timeout errors are retried by Temporal. Redirects are never
followed, so an allowed URL cannot send a request somewhere else.

Idempotency on `ToolContext.idempotency_key`, which every request carries as `Idempotency-Key`:
- `post_webhook` and `http_request` look the key up in the records table (`tools.effects`) before
  sending and record the call only after the server accepted it, so a retry after success replays
  (`replayed=True`) instead of sending again. A crash between the answer and the record sends once
  more on retry; receivers that honour `Idempotency-Key` can drop that duplicate.
- `create_ticket` records the issue the same way, and before creating one also asks the tracker for
  an issue carrying the key, which covers a crash between creating and recording. GitHub: issue
  bodies end with the hidden marker `<!-- countersign:KEY -->`, found by listing the repository's
  100 most recently created issues (the list is consistent at once, unlike the search API). Jira:
  issues get the label `countersign-<first 32 hex digits of sha256(KEY)>`, found with a JQL search
  (`/rest/api/2/search/jql`, or `/rest/api/2/search` on Server / Data Center, which lack the former).

Tokens go in headers only: they are never logged, and never part of results or error messages.
"""

import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.enums import Risk, SideEffect
from models.errors import CountersignError
from models.facts import ActionFacts
from models.proposal import Finding
from models.retry_after import retry_after_seconds
from tools.args import ONE_LINE
from tools.effects import canonical_args_json, find_record, insert_record, key_digest, record_id
from tools.integrations import Integrations, TicketConfig
from tools.registry import RetryLater, ToolContext, ToolRun, tool

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
USER_AGENT = "countersign"
# What `http_request` keeps of a response body: its result is stored in the workflow's history.
MAX_RESPONSE_BYTES = 64 * 1024
MAX_RESPONSE_CHARS = 16_000
# How much of an error answer is quoted in the exception.
_ERROR_SNIPPET_CHARS = 200
# Headers the planner may not set: credentials, framing, and ours.
_RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "keep-alive",
        IDEMPOTENCY_KEY_HEADER.lower(),
    }
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_MARKER_SAFE = re.compile(r"^[A-Za-z0-9._:/@+=-]+$")
_DEFAULT_PORTS = {"http": 80, "https": 443}
GITHUB_ISSUES_SCANNED = 100


class HttpRefused(CountersignError, ValueError):
    """The server refused for good (3xx, 4xx): retrying cannot help, so the activity does not."""


class HttpRetryable(RetryLater):
    """A temporary failure (5xx, 408, 429, a rate limit): Temporal's retry policy tries again, when
    the server asked (Retry-After, GitHub's rate-limit reset) after the wait it asked for."""


# --- Args and results -----------------------------------------------------------------------------


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _json_document(value: str | None, *, array_of_objects: bool = False) -> str | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        raise ValueError("must be a JSON document") from None
    if array_of_objects and not (
        isinstance(parsed, list) and len(parsed) <= 50 and all(isinstance(b, dict) for b in parsed)
    ):
        raise ValueError("must be a JSON array of at most 50 objects")
    return value


# Free-form JSON is carried as text: OpenAI's strict structured outputs take closed objects only, and
# reviewers approve exactly the bytes that are sent.
class PostWebhookArgs(_Args):
    url: str = Field(min_length=1, max_length=2048, description="An allow-listed incoming-webhook URL")
    text: str = Field(min_length=1, max_length=40_000, description="The message (Slack mrkdwn)")
    blocks: str | None = Field(
        default=None,
        max_length=40_000,
        description="Optional Slack Block Kit blocks as a JSON array (text); `text` is the fallback",
    )

    @field_validator("blocks")
    @classmethod
    def _blocks(cls, value: str | None) -> str | None:
        return _json_document(value, array_of_objects=True)


class PostWebhookResult(BaseModel):
    delivery_id: str
    status_code: int


class CreateTicketArgs(_Args):
    title: str = Field(min_length=1, max_length=250, pattern=ONE_LINE)
    body: str = Field(default="", max_length=20_000, description="The description (Markdown on GitHub)")


class CreateTicketResult(BaseModel):
    backend: Literal["github", "jira"]
    # `#42` on GitHub, the issue key (`OPS-7`) on Jira.
    ticket_id: str
    url: str


class HttpHeader(_Args):
    name: str = Field(min_length=1, max_length=100)
    value: str = Field(max_length=1000, pattern=ONE_LINE)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _HEADER_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a header name")
        if value.lower() in _RESERVED_HEADERS:
            raise ValueError(f"header {value} may not be set")
        return value


class HttpRequestArgs(_Args):
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str = Field(min_length=1, max_length=2048, description="An http(s) URL on an allow-listed host")
    headers: list[HttpHeader] = Field(default_factory=list, max_length=20)
    body: str | None = Field(
        default=None, max_length=100_000, description="A JSON document (text), sent as application/json"
    )

    @field_validator("body")
    @classmethod
    def _body(cls, value: str | None) -> str | None:
        return _json_document(value)


class HttpRequestResult(BaseModel):
    request_id: str
    status_code: int
    content_type: str | None = None
    # Where a 3xx points (redirects are reported, not followed).
    location: str | None = None
    # Decoded as UTF-8 and cut to MAX_RESPONSE_CHARS; None when replayed (the body is not kept).
    body: str | None = None
    truncated: bool = False


# --- Allow-lists ----------------------------------------------------------------------------------


def _parse(url: str) -> httpx.URL | str:
    """The URL as httpx will send it, or why it may not be used. Checks and requests parse alike."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as error:
        return f"not a valid URL ({error})"
    if parsed.scheme not in _DEFAULT_PORTS or not parsed.host:
        return "not an absolute http(s) URL"
    if parsed.userinfo:
        return "credentials in a URL are not allowed"
    # Literal dot segments are resolved by httpx; encoded ones (%2e%2e) a server may still resolve.
    if any(segment in (".", "..") for segment in parsed.path.split("/")):
        return "dot segments in the path are not allowed"
    return parsed


def _port(url: httpx.URL) -> int:
    return url.port or _DEFAULT_PORTS[url.scheme]


def _origin(url: httpx.URL) -> str:
    """Scheme, host and port: enough to say where a URL goes without repeating a secret path."""
    return f"{url.scheme}://{url.host}:{_port(url)}"


def _under(url: httpx.URL, prefix: httpx.URL) -> bool:
    if (url.scheme, url.host, _port(url)) != (prefix.scheme, prefix.host, _port(prefix)):
        return False
    path, allowed = url.path or "/", prefix.path or "/"
    if allowed.endswith("/"):
        return path.startswith(allowed)
    return path == allowed or path.startswith(allowed + "/")


def _reached(url: str) -> str:
    """The origin a call reaches (`https://hooks.example.com:443`), as policy facts name it."""
    parsed = _parse(url)
    return "(not a valid URL)" if isinstance(parsed, str) else _origin(parsed)


def _url_finding(message: str) -> Finding:
    return Finding(code="url_not_allowed", message=f"url: {message}", field="url")


def webhook_allowed(args: PostWebhookArgs, integrations: Integrations) -> list[Finding]:
    """The webhook URL must fall under one of the allowed URL prefixes."""
    if not integrations.webhook_allowed_urls:
        return [
            Finding(
                code="webhooks_not_configured",
                message="no webhook URL is allowed (COUNTERSIGN_WEBHOOK_ALLOWED_URLS is empty)",
                field="url",
            )
        ]
    url = _parse(args.url)
    if isinstance(url, str):
        return [_url_finding(url)]
    prefixes = [p for p in map(_parse, integrations.webhook_allowed_urls) if isinstance(p, httpx.URL)]
    if not any(_under(url, prefix) for prefix in prefixes):
        return [_url_finding(f"{_origin(url)}/... is outside the allowed webhook URLs")]
    return []


def _host_allowed(url: httpx.URL, entry: str) -> bool:
    allowed = _parse(f"{url.scheme}://{entry}/")
    if isinstance(allowed, str):
        return False
    if allowed.host != url.host:
        return False
    # `host` allows any port; `host:port` that port only.
    return allowed.port is None or allowed.port == _port(url)


def request_allowed(args: HttpRequestArgs, integrations: Integrations) -> list[Finding]:
    """The method must be allowed, and the URL's host one of the allowed hosts."""
    findings = []
    if args.method not in integrations.http_allowed_methods:
        allowed = ", ".join(integrations.http_allowed_methods) or "none"
        findings.append(
            Finding(
                code="method_not_allowed",
                message=f"method: {args.method} is not an allowed method ({allowed})",
                field="method",
            )
        )
    if not integrations.http_allowed_hosts:
        findings.append(
            Finding(
                code="http_not_configured",
                message="no host may be called (COUNTERSIGN_HTTP_ALLOWED_HOSTS is empty)",
                field="url",
            )
        )
        return findings
    url = _parse(args.url)
    if isinstance(url, str):
        findings.append(_url_finding(url))
    elif not any(_host_allowed(url, entry) for entry in integrations.http_allowed_hosts):
        findings.append(
            Finding(
                code="host_not_allowed",
                message=f"url: host {url.host} (port {_port(url)}) is outside the allowed hosts",
                field="url",
            )
        )
    return findings


def tickets_configured(args: CreateTicketArgs, integrations: Integrations) -> list[Finding]:
    if integrations.tickets is None:
        return [
            Finding(
                code="tickets_not_configured",
                message="no ticket backend is configured (COUNTERSIGN_TICKET_BACKEND)",
            )
        ]
    return []


def _refuse_unless_allowed(findings: list[Finding]) -> None:
    """At execution time: the configuration may have changed since validation; refuse for good."""
    if findings:
        raise HttpRefused("; ".join(finding.message for finding in findings))


# --- HTTP -----------------------------------------------------------------------------------------


def _client(integrations: Integrations) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=integrations.http_timeout_seconds,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


def _temporary(response: httpx.Response) -> bool:
    status = response.status_code
    if status >= 500 or status in (408, 429):
        return True
    # GitHub answers 403 to a client over its (primary or secondary) rate limit.
    limited = response.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in response.headers
    return status == 403 and limited


def _wait_asked(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait: Retry-After, else GitHub's rate-limit reset time."""
    asked = retry_after_seconds(response.headers)
    reset = response.headers.get("x-ratelimit-reset")
    if asked is None and response.headers.get("x-ratelimit-remaining") == "0" and reset:
        try:
            asked = max(0.0, float(reset) - time.time())
        except ValueError:
            return None
    return asked


def _snippet(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())[:_ERROR_SNIPPET_CHARS]
    return f": {text}" if text else ""


def _check_answer(
    response: httpx.Response, what: str, *, text: str | None = None, secrets: tuple[str, ...] = ()
) -> None:
    """Raise for an answer that is not a success: retryable for temporary failures, else refused.
    The body (`text`, else the whole read body) is quoted briefly, with `secrets` masked, in case a
    server echoes a credential."""
    status = response.status_code
    if status < 300:
        return
    detail = _snippet(response.text if text is None else text, secrets)
    if status < 400:
        raise HttpRefused(f"{what} answered {status} (redirects are not followed){detail}")
    if _temporary(response):
        raise HttpRetryable(f"{what} answered {status}{detail}", after_seconds=_wait_asked(response))
    raise HttpRefused(f"{what} answered {status}{detail}")


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        # A success with a body we cannot read: a proxy or a wrong base URL, not worth retrying.
        raise HttpRefused(f"{what} answered {response.status_code} without JSON") from None


# --- The records table ----------------------------------------------------------------------------


async def _recorded(data_dir: Path, tool_name: str, key: str, args: BaseModel) -> str | None:
    return await find_record(data_dir, tool=tool_name, key=key, args_json=canonical_args_json(args))


async def _record(ctx: ToolContext, tool_name: str, args: BaseModel, stored_id: str) -> None:
    await insert_record(
        ctx.data_dir,
        tool=tool_name,
        key=ctx.idempotency_key,
        record_id=stored_id,
        args_json=canonical_args_json(args),
    )


def _with_status(delivery_id: str, status: int) -> str:
    # Stored as `HOOK-1A2B3C4D:200`, so a replay can report the status the server answered.
    return f"{delivery_id}:{status}"


def _split_status(stored: str) -> tuple[str, int]:
    delivery_id, _, status = stored.rpartition(":")
    return delivery_id, int(status)


# --- post_webhook ---------------------------------------------------------------------------------


@tool(
    name="post_webhook",
    description="Post a message to a chat channel through an allow-listed incoming webhook "
    "(Slack-compatible JSON: text, optionally Block Kit blocks).",
    args=PostWebhookArgs,
    result=PostWebhookResult,
    side_effect=SideEffect.EXTERNAL,
    risk=Risk.MEDIUM,
    check=webhook_allowed,
    facts=lambda args: ActionFacts(recipients=[_reached(args.url)]),
)
async def post_webhook(args: PostWebhookArgs, ctx: ToolContext) -> ToolRun[PostWebhookResult]:
    _refuse_unless_allowed(webhook_allowed(args, ctx.integrations))
    stored = await _recorded(ctx.data_dir, "post_webhook", ctx.idempotency_key, args)
    if stored is not None:
        delivery_id, status = _split_status(stored)
        return ToolRun(result=PostWebhookResult(delivery_id=delivery_id, status_code=status), replayed=True)
    payload: dict[str, Any] = {"text": args.text}
    if args.blocks is not None:
        payload["blocks"] = json.loads(args.blocks)
    # The record is written only after the server answered: until then only the execution ledger's
    # lease keeps an attempt that paused here from posting beside the retry that took over.
    await ctx.before_effect()
    async with _client(ctx.integrations) as client:
        response = await client.post(
            args.url, json=payload, headers={IDEMPOTENCY_KEY_HEADER: ctx.idempotency_key}
        )
    _check_answer(response, "the webhook")
    delivery_id = record_id("HOOK", ctx.idempotency_key)
    await _record(ctx, "post_webhook", args, _with_status(delivery_id, response.status_code))
    result = PostWebhookResult(delivery_id=delivery_id, status_code=response.status_code)
    return ToolRun(result=result, replayed=False)


# --- http_request ---------------------------------------------------------------------------------


async def _read_limited(response: httpx.Response) -> tuple[str, bool]:
    kept = bytearray()
    truncated = False
    async for chunk in response.aiter_bytes():
        kept.extend(chunk)
        if len(kept) > MAX_RESPONSE_BYTES:
            truncated = True
            break
    text = bytes(kept[:MAX_RESPONSE_BYTES]).decode(response.encoding or "utf-8", errors="replace")
    if len(text) > MAX_RESPONSE_CHARS:
        text, truncated = text[:MAX_RESPONSE_CHARS], True
    return text, truncated


@tool(
    name="http_request",
    description="Make one HTTP request to an allow-listed host with an allowed method, optionally with "
    "a JSON body, and return the status and (a bounded part of) the response body.",
    args=HttpRequestArgs,
    result=HttpRequestResult,
    side_effect=SideEffect.EXTERNAL,
    risk=Risk.HIGH,
    check=request_allowed,
    facts=lambda args: ActionFacts(recipients=[_reached(args.url)]),
)
async def http_request(args: HttpRequestArgs, ctx: ToolContext) -> ToolRun[HttpRequestResult]:
    _refuse_unless_allowed(request_allowed(args, ctx.integrations))
    stored = await _recorded(ctx.data_dir, "http_request", ctx.idempotency_key, args)
    if stored is not None:
        request_id, status = _split_status(stored)
        return ToolRun(result=HttpRequestResult(request_id=request_id, status_code=status), replayed=True)
    headers = httpx.Headers([(h.name, h.value) for h in args.headers])
    headers[IDEMPOTENCY_KEY_HEADER] = ctx.idempotency_key
    content = None
    if args.body is not None:
        content = args.body.encode()
        headers.setdefault("Content-Type", "application/json")
    async with _client(ctx.integrations) as client:
        request = client.build_request(args.method, args.url, headers=headers, content=content)
        # As in post_webhook: recorded only after the answer, so the lease guards the gap.
        await ctx.before_effect()
        response = await client.send(request, stream=True)
        try:
            body, truncated = await _read_limited(response)
            if response.status_code >= 400:
                _check_answer(response, f"{args.method} {_origin(request.url)}", text=body)
        finally:
            await response.aclose()
    request_id = record_id("HTTP", ctx.idempotency_key)
    await _record(ctx, "http_request", args, _with_status(request_id, response.status_code))
    result = HttpRequestResult(
        request_id=request_id,
        status_code=response.status_code,
        content_type=response.headers.get("content-type"),
        location=response.headers.get("location") if 300 <= response.status_code < 400 else None,
        body=body,
        truncated=truncated,
    )
    return ToolRun(result=result, replayed=False)


# --- create_ticket --------------------------------------------------------------------------------


def github_marker(key: str) -> str:
    """The hidden line GitHub issue bodies end with; a key that could break out of an HTML comment
    is replaced by its digest."""
    value = key if _MARKER_SAFE.fullmatch(key) and "--" not in key else f"sha256={key_digest(key)}"
    return f"<!-- countersign:{value} -->"


def jira_label(key: str) -> str:
    """The label Jira issues carry: labels take no spaces, and JQL quoting is simplest with hex."""
    return f"countersign-{key_digest(key)[:32]}"


def _auth_headers(config: TicketConfig) -> tuple[dict[str, str], httpx.Auth | None]:
    token = config.token.get_secret_value()
    if config.backend == "jira" and config.email:
        return {}, httpx.BasicAuth(config.email, token)
    return {"Authorization": f"Bearer {token}"}, None


class _Tracker:
    """One ticket backend, reached through one client; results never carry the token."""

    def __init__(self, config: TicketConfig, client: httpx.AsyncClient, key: str) -> None:
        self.config = config
        self.client = client
        self.key = key
        headers, self.auth = _auth_headers(config)
        self.headers = {**headers, IDEMPOTENCY_KEY_HEADER: key, "Accept": "application/json"}
        self.secrets = (config.token.get_secret_value(),)

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: dict[str, Any] | None = None,
    ) -> httpx.Response:
        return await self.client.request(
            method,
            f"{self.config.base_url}{path}",
            params=params,
            json=json,
            headers=self.headers,
            auth=self.auth or httpx.USE_CLIENT_DEFAULT,
        )

    def check(self, response: httpx.Response, what: str) -> None:
        _check_answer(response, what, secrets=self.secrets)


class _GitHub(_Tracker):
    def __init__(self, config: TicketConfig, client: httpx.AsyncClient, key: str) -> None:
        super().__init__(config, client, key)
        self.headers.update({"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"})
        self.issues = f"/repos/{config.repo}/issues"

    def _found(self, issue: dict[str, Any]) -> CreateTicketResult:
        return CreateTicketResult(backend="github", ticket_id=f"#{issue['number']}", url=issue["html_url"])

    async def find(self) -> CreateTicketResult | None:
        params: dict[str, str | int] = {
            "state": "all",
            "sort": "created",
            "direction": "desc",
            "per_page": GITHUB_ISSUES_SCANNED,
        }
        response = await self.call("GET", self.issues, params=params)
        self.check(response, "GitHub (listing issues)")
        marker = github_marker(self.key)
        for issue in _json(response, "GitHub"):
            if "pull_request" not in issue and marker in (issue.get("body") or ""):
                return self._found(issue)
        return None

    async def create(self, args: CreateTicketArgs) -> CreateTicketResult:
        body = f"{args.body}\n\n{github_marker(self.key)}" if args.body else github_marker(self.key)
        response = await self.call("POST", self.issues, json={"title": args.title, "body": body})
        self.check(response, "GitHub (creating an issue)")
        return self._found(_json(response, "GitHub"))


class _Jira(_Tracker):
    def _found(self, issue_key: str) -> CreateTicketResult:
        return CreateTicketResult(
            backend="jira", ticket_id=issue_key, url=f"{self.config.base_url}/browse/{issue_key}"
        )

    async def find(self) -> CreateTicketResult | None:
        jql = f'project = "{self.config.project}" AND labels = "{jira_label(self.key)}"'
        params: dict[str, str | int] = {"jql": jql, "fields": "key", "maxResults": 1}
        # Jira Cloud has only the enhanced search; Server / Data Center only the classic one.
        response = await self.call("GET", "/rest/api/2/search/jql", params=params)
        if response.status_code == 404:
            response = await self.call("GET", "/rest/api/2/search", params=params)
        self.check(response, "Jira (search)")
        issues = _json(response, "Jira").get("issues") or []
        return self._found(issues[0]["key"]) if issues else None

    async def create(self, args: CreateTicketArgs) -> CreateTicketResult:
        note = f"(Opened by Countersign, request key {self.key}.)"
        fields = {
            "project": {"key": self.config.project},
            "summary": args.title,
            "description": f"{args.body}\n\n{note}" if args.body else note,
            "issuetype": {"name": self.config.issue_type},
            "labels": [jira_label(self.key)],
        }
        response = await self.call("POST", "/rest/api/2/issue", json={"fields": fields})
        self.check(response, "Jira (creating an issue)")
        return self._found(_json(response, "Jira")["key"])


def _from_record(backend: Literal["github", "jira"], url: str) -> CreateTicketResult:
    """The result a recorded issue URL stands for: its last segment is the number or the key."""
    last = url.rstrip("/").rpartition("/")[2]
    return CreateTicketResult(backend=backend, ticket_id=f"#{last}" if backend == "github" else last, url=url)


@tool(
    name="create_ticket",
    description="Open an issue with a title and a description in the organisation's configured "
    "issue tracker (a GitHub repository or a Jira project).",
    args=CreateTicketArgs,
    result=CreateTicketResult,
    side_effect=SideEffect.EXTERNAL,
    risk=Risk.MEDIUM,
    check=tickets_configured,
)
async def create_ticket(args: CreateTicketArgs, ctx: ToolContext) -> ToolRun[CreateTicketResult]:
    _refuse_unless_allowed(tickets_configured(args, ctx.integrations))
    config = ctx.integrations.tickets
    assert config is not None  # checked just above
    stored = await _recorded(ctx.data_dir, "create_ticket", ctx.idempotency_key, args)
    if stored is not None:
        return ToolRun(result=_from_record(config.backend, stored), replayed=True)
    async with _client(ctx.integrations) as client:
        tracker_type = _GitHub if config.backend == "github" else _Jira
        tracker = tracker_type(config, client, ctx.idempotency_key)
        # A crash after creating but before recording: the tracker knows the key.
        existing = await tracker.find()
        if existing is None:
            # The tracker cannot be asked atomically; the lease keeps a paused attempt from creating
            # a second issue beside the retry that took over.
            await ctx.before_effect()
            result = await tracker.create(args)
        else:
            result = existing
    await _record(ctx, "create_ticket", args, result.url)
    return ToolRun(result=result, replayed=existing is not None)

"""The web tools against real local HTTP servers that speak enough of Slack's incoming webhooks,
GitHub's issues API and Jira's REST API: success, replay under one key, allow-list findings, and which
failures are permanent (ValueError) or retried."""

import base64
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from countersign.activities.execution import ExecutionActivities
from countersign.activities.validation import ValidationActivities
from countersign.config.settings import Settings
from countersign.models.enums import RequestType, Risk, SideEffect
from countersign.models.proposal import Plan, RequestFields, ValidateInput, ValidationReport
from countersign.models.tools import ToolCall
from countersign.store.execution_ledger import LeaseLost
from countersign.store.sql import default_url
from countersign.store.tool_effects import ToolEffects
from countersign.tools.builtin import build_registry
from countersign.tools.http_client import MAX_RESPONSE_CHARS, HttpRefused, HttpRetryable
from countersign.tools.integrations import Integrations, TicketConfig
from countersign.tools.registry import ToolContext
from countersign.tools.ticket_trackers import github_marker, jira_label
from countersign.tools.web import create_ticket, http_request, post_webhook
from countersign.tools.web_args import CreateTicketArgs, HttpRequestArgs, PostWebhookArgs

KEY = "req-default-abc123:v1"
GITHUB_TOKEN = "ghp-test-token-0123456789"
JIRA_TOKEN = "jira-api-token-9876543210"


# --- A tiny HTTP server ---------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeServer:
    """A FastAPI app on a free port of 127.0.0.1, run by uvicorn in a thread. Every request is
    recorded, then answered by `answer` unless a scripted failure (`fail_next`) comes first."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.fail_next: deque[tuple[int, dict[str, str]]] = deque()
        self._lock = threading.Lock()
        self.app = FastAPI()
        self.app.add_api_route(
            "/{path:path}", self._dispatch, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        )
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, status: int, times: int = 1, **headers: str) -> None:
        self.fail_next.extend([(status, headers)] * times)

    def requests(self, method: str, path: str | None = None) -> list[Seen]:
        return [s for s in self.seen if s.method == method and (path is None or s.path == path)]

    async def _dispatch(self, request: Request) -> Response:
        seen = Seen(
            request.method,
            request.url.path,
            dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()},
            await request.body(),
        )
        with self._lock:
            self.seen.append(seen)
            failure = self.fail_next.popleft() if self.fail_next else None
            if failure is not None:
                status, headers = failure
                return Response(f"scripted failure {status}", status_code=status, headers=headers)
            return self.answer(seen)

    def answer(self, seen: Seen) -> Response:
        return Response(status_code=404)

    def start(self) -> "FakeServer":
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="error", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status_code=status, media_type="application/json")


class FakeSlack(FakeServer):
    HOOK = "/services/T0001/B0001/secretpath"

    def answer(self, seen: Seen) -> Response:
        if seen.method != "POST" or seen.path != self.HOOK:
            return Response("no_service", status_code=404)
        payload = seen.json()
        if not isinstance(payload.get("text"), str):
            return Response("invalid_payload", status_code=400)
        return Response("ok", media_type="text/plain")


class FakeGitHub(FakeServer):
    ISSUES = "/repos/acme/helpdesk/issues"

    def __init__(self) -> None:
        super().__init__()
        self.issues: list[dict[str, Any]] = [
            {"number": 1, "title": "Old", "body": "unrelated", "html_url": "https://gh.test/acme/helpdesk/1"},
            # A pull request carrying the marker (as if quoted) must not count as the issue.
            {"number": 2, "title": "PR", "body": github_marker(KEY), "pull_request": {}, "html_url": "x"},
        ]

    def answer(self, seen: Seen) -> Response:
        if seen.headers.get("authorization") != f"Bearer {GITHUB_TOKEN}":
            return _json({"message": "Bad credentials"}, 401)
        if seen.path != self.ISSUES:
            return _json({"message": "Not Found"}, 404)
        if seen.method == "GET":
            newest_first = sorted(self.issues, key=lambda i: -int(i["number"]))
            return _json(newest_first[: int(seen.query.get("per_page", 30))])
        payload = seen.json()
        if not payload.get("title"):
            return _json({"message": "Validation Failed"}, 422)
        number = max(int(i["number"]) for i in self.issues) + 1
        issue = {
            "number": number,
            "title": payload["title"],
            "body": payload.get("body"),
            "html_url": f"https://gh.test/acme/helpdesk/issues/{number}",
        }
        self.issues.append(issue)
        return _json(issue, 201)


class FakeJira(FakeServer):
    def __init__(self, cloud: bool = True) -> None:
        super().__init__()
        self.cloud = cloud
        self.issues: list[dict[str, Any]] = []

    def answer(self, seen: Seen) -> Response:
        expected = base64.b64encode(f"bot@example.com:{JIRA_TOKEN}".encode()).decode()
        if seen.headers.get("authorization") != f"Basic {expected}":
            return _json({"errorMessages": ["unauthorized"]}, 401)
        search = "/rest/api/2/search/jql" if self.cloud else "/rest/api/2/search"
        if seen.method == "GET" and seen.path == search:
            match = re.fullmatch(r'project = "(\w+)" AND labels = "([\w-]+)"', seen.query["jql"])
            assert match, seen.query["jql"]
            found = [i for i in self.issues if match[1] == i["project"] and match[2] in i["labels"]]
            return _json({"issues": [{"id": i["id"], "key": i["key"]} for i in found][:1]})
        if seen.method == "POST" and seen.path == "/rest/api/2/issue":
            fields = seen.json()["fields"]
            if fields["issuetype"] != {"name": "Task"}:
                return _json({"errors": {"issuetype": "invalid"}}, 400)
            issue = {
                "id": str(10000 + len(self.issues)),
                "key": f"{fields['project']['key']}-{len(self.issues) + 1}",
                "project": fields["project"]["key"],
                "labels": fields.get("labels", []),
                "description": fields["description"],
            }
            self.issues.append(issue)
            return _json({"id": issue["id"], "key": issue["key"], "self": "..."}, 201)
        return _json({"errorMessages": ["not found"]}, 404)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    server = FakeSlack().start()
    yield server
    server.stop()


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    server = FakeGitHub().start()
    yield server
    server.stop()


@pytest.fixture(params=[True, False], ids=["cloud", "server"])
def jira(request: pytest.FixtureRequest) -> Iterator[FakeJira]:
    server = FakeJira(cloud=request.param).start()
    yield server
    server.stop()


# The tools' database per place (a worker's, or a second one standing for records lost), SQLite as in
# the embedded stack; closed after each test.
_OPENED: dict[Path, ToolEffects] = {}


def effects_at(where: Path) -> ToolEffects:
    if where not in _OPENED:
        _OPENED[where] = ToolEffects(default_url(where))
    return _OPENED[where]


@pytest.fixture(autouse=True)
async def close_databases() -> AsyncIterator[None]:
    yield
    for opened in _OPENED.values():
        await opened.close()
    _OPENED.clear()


async def records_at(where: Path) -> list[dict[str, Any]]:
    return await (await effects_at(where).records()).records()


def ctx(tmp_path: Path, integrations: Integrations, key: str = KEY) -> ToolContext:
    return ToolContext(
        data_dir=tmp_path / "data",
        idempotency_key=key,
        effects=effects_at(tmp_path),
        integrations=integrations,
    )


def hooks(slack: FakeSlack) -> Integrations:
    return Integrations(webhook_allowed_urls=[f"{slack.url}/services/T0001/"], http_timeout_seconds=5)


def github_tickets(github: FakeGitHub) -> Integrations:
    config = TicketConfig(backend="github", base_url=github.url, repo="acme/helpdesk", token=GITHUB_TOKEN)
    return Integrations(tickets=config, http_timeout_seconds=5)


def jira_tickets(jira: FakeJira) -> Integrations:
    config = TicketConfig(
        backend="jira", base_url=jira.url, project="OPS", token=JIRA_TOKEN, email="bot@example.com"
    )
    return Integrations(tickets=config, http_timeout_seconds=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- post_webhook ---------------------------------------------------------------------------------

BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Approved*"}}]


def hook_args(slack: FakeSlack, **overrides: Any) -> PostWebhookArgs:
    fields: dict[str, Any] = {
        "url": f"{slack.url}{FakeSlack.HOOK}",
        "text": "Order approved",
        "blocks": json.dumps(BLOCKS),
    }
    return PostWebhookArgs(**{**fields, **overrides})


async def test_a_webhook_is_posted_once_per_key(tmp_path: Path, slack: FakeSlack) -> None:
    first = await post_webhook(hook_args(slack), ctx(tmp_path, hooks(slack)))
    again = await post_webhook(hook_args(slack), ctx(tmp_path, hooks(slack)))

    assert (first.replayed, again.replayed) == (False, True)
    assert first.result == again.result
    assert first.result.status_code == 200 and first.result.delivery_id.startswith("HOOK-")
    [posted] = slack.seen
    assert posted.json() == {"text": "Order approved", "blocks": BLOCKS}
    assert posted.headers["idempotency-key"] == KEY
    assert posted.headers["content-type"] == "application/json"
    [record] = await records_at(tmp_path)
    assert (record["tool"], record["idempotency_key"]) == ("post_webhook", KEY)


async def test_blocks_are_optional_and_another_key_posts_again(tmp_path: Path, slack: FakeSlack) -> None:
    args = hook_args(slack, blocks=None)
    await post_webhook(args, ctx(tmp_path, hooks(slack)))
    other = await post_webhook(args, ctx(tmp_path, hooks(slack), key="req-default-abc123:v2"))

    assert other.replayed is False
    assert [s.json() for s in slack.seen] == [{"text": "Order approved"}] * 2


async def test_a_refused_webhook_is_a_permanent_error_and_not_recorded(
    tmp_path: Path, slack: FakeSlack
) -> None:
    gone = hook_args(slack, url=f"{slack.url}/services/T0001/B0001/archived")
    with pytest.raises(HttpRefused, match="404: no_service") as refused:
        await post_webhook(gone, ctx(tmp_path, hooks(slack)))
    assert isinstance(refused.value, ValueError)
    assert await records_at(tmp_path) == []


@pytest.mark.parametrize("status", [500, 503, 408, 429])
async def test_temporary_failures_are_retryable_and_the_retry_posts(
    tmp_path: Path, slack: FakeSlack, status: int
) -> None:
    slack.fail(status)
    with pytest.raises(HttpRetryable, match=str(status)) as failed:
        await post_webhook(hook_args(slack), ctx(tmp_path, hooks(slack)))
    assert not isinstance(failed.value, ValueError)
    assert await records_at(tmp_path) == []

    retried = await post_webhook(hook_args(slack), ctx(tmp_path, hooks(slack)))
    assert retried.replayed is False
    assert len(slack.seen) == 2


async def test_a_server_that_is_down_is_a_retryable_connection_error(tmp_path: Path) -> None:
    port = free_port()
    integrations = Integrations(webhook_allowed_urls=[f"http://127.0.0.1:{port}/"], http_timeout_seconds=2)
    args = PostWebhookArgs(url=f"http://127.0.0.1:{port}/hook", text="hi")
    with pytest.raises(httpx.ConnectError):
        await post_webhook(args, ctx(tmp_path, integrations))


async def test_redirects_are_not_followed(tmp_path: Path, slack: FakeSlack) -> None:
    slack.fail(302, location="https://elsewhere.example/")
    with pytest.raises(HttpRefused, match="redirects are not followed"):
        await post_webhook(hook_args(slack), ctx(tmp_path, hooks(slack)))
    assert len(slack.seen) == 1


async def test_execution_refuses_a_url_the_allow_list_no_longer_holds(
    tmp_path: Path, slack: FakeSlack
) -> None:
    narrowed = Integrations(webhook_allowed_urls=[f"{slack.url}/services/T0002/"])
    with pytest.raises(HttpRefused, match="outside the allowed webhook URLs"):
        await post_webhook(hook_args(slack), ctx(tmp_path, narrowed))
    with pytest.raises(HttpRefused, match="no webhook URL is allowed"):
        await post_webhook(hook_args(slack), ctx(tmp_path, Integrations()))
    assert slack.seen == []


async def test_a_key_reused_with_other_args_is_refused(tmp_path: Path, slack: FakeSlack) -> None:
    await post_webhook(hook_args(slack), ctx(tmp_path, hooks(slack)))
    with pytest.raises(ValueError, match="already used"):
        await post_webhook(hook_args(slack, text="Something else"), ctx(tmp_path, hooks(slack)))
    assert len(slack.seen) == 1


# --- Validation: allow-lists are findings ---------------------------------------------------------


def plan(tool: str, args: dict[str, Any]) -> Plan:
    return Plan(
        request_type=RequestType.GENERAL,
        fields=RequestFields(),
        summary="Reach out",
        tool=tool,
        args=args,
        confidence=0.9,
        rationale="asked for",
    )


async def validate(integrations: Integrations, tool: str, args: dict[str, Any]) -> ValidationReport:
    activities = ValidationActivities(build_registry(), integrations)
    return await activities.validate(ValidateInput(plan=plan(tool, args), confidence_threshold=0.5))


def codes(report: ValidationReport) -> list[tuple[str, str | None]]:
    return [(f.code, f.field) for f in report.findings]


ALLOWED_HOOKS = Integrations(
    webhook_allowed_urls=["https://hooks.slack.com/services/T0001", "https://chat.example.com/hooks/"]
)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.com/services/T0001/B1/xyz",
        "https://HOOKS.slack.com:443/services/T0001",
        "https://chat.example.com/hooks/ops?thread=1",
    ],
)
async def test_webhook_urls_under_an_allowed_prefix_validate(url: str) -> None:
    report = await validate(ALLOWED_HOOKS, "post_webhook", {"url": url, "text": "hi"})
    assert report.ok, report.findings
    assert (report.side_effect, report.risk) == (SideEffect.EXTERNAL, Risk.MEDIUM)


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/services/T0001/B1/xyz",
        "http://hooks.slack.com/services/T0001/B1/xyz",  # another scheme
        "https://hooks.slack.com:8443/services/T0001/B1",  # another port
        "https://hooks.slack.com/services/T0001evil/B1",  # a prefix, but not of whole segments
        "https://hooks.slack.com/services/T0002/B1/xyz",
        "https://hooks.slack.com/services/T0001/..%2f..%2fadmin",  # encoded dot segments
        "https://hooks.slack.com/services/T0001/%2e%2e/%2e%2e/admin",
        "https://hooks.slack.com@evil.example/services/T0001/",  # credentials in the URL
        "https://chat.example.com/hooksx",
        "ftp://hooks.slack.com/services/T0001/B1",
        "not a url",
    ],
)
async def test_webhook_urls_outside_the_allow_list_are_findings(url: str) -> None:
    report = await validate(ALLOWED_HOOKS, "post_webhook", {"url": url, "text": "hi"})
    assert not report.ok
    assert codes(report) == [("url_not_allowed", "url")]
    # A webhook URL's path is its secret: findings name where it goes, not the path.
    assert "/B1/xyz" not in report.findings[0].message


async def test_no_allowed_webhook_urls_is_a_finding() -> None:
    report = await validate(
        Integrations(), "post_webhook", {"url": "https://hooks.slack.com/x", "text": "hi"}
    )
    assert codes(report) == [("webhooks_not_configured", "url")]


async def test_http_requests_outside_the_allowed_hosts_and_methods_are_findings() -> None:
    integrations = Integrations(http_allowed_hosts=["api.example.com", "status.example.com:8443"])
    ok = await validate(integrations, "http_request", {"url": "https://API.example.com/v1/items?q=1"})
    assert ok.ok, ok.findings
    assert (ok.side_effect, ok.risk) == (SideEffect.EXTERNAL, Risk.HIGH)
    assert ok.normalized_args is not None and ok.normalized_args["method"] == "GET"
    assert (await validate(integrations, "http_request", {"url": "https://status.example.com:8443/"})).ok

    cases = {
        "https://evil.example/": [("host_not_allowed", "url")],
        "https://status.example.com/": [("host_not_allowed", "url")],  # the allowed port only
        "https://api.example.com.evil.example/": [("host_not_allowed", "url")],
        "https://user:pw@api.example.com/": [("url_not_allowed", "url")],
        "file:///etc/passwd": [("url_not_allowed", "url")],
    }
    for url, expected in cases.items():
        report = await validate(integrations, "http_request", {"url": url})
        assert codes(report) == expected, url

    post = await validate(integrations, "http_request", {"method": "POST", "url": "https://api.example.com/"})
    assert codes(post) == [("method_not_allowed", "method")]
    assert "GET" in post.findings[0].message
    none = await validate(Integrations(), "http_request", {"url": "https://api.example.com/"})
    assert codes(none) == [("http_not_configured", "url")]


@pytest.mark.parametrize("header", ["Authorization", "cookie", "Host", "Idempotency-Key", "Bad Name"])
async def test_credentials_and_framing_headers_cannot_be_set(header: str) -> None:
    integrations = Integrations(http_allowed_hosts=["api.example.com"])
    args = {"url": "https://api.example.com/", "headers": [{"name": header, "value": "x"}]}
    report = await validate(integrations, "http_request", args)
    assert codes(report) == [("invalid_args", "headers.0.name")]


async def test_free_form_json_is_text_that_must_parse() -> None:
    hook = {"url": "https://hooks.slack.com/services/T0001/B1", "text": "hi"}
    for blocks in ("[{", '{"type": "section"}', "[1, 2]", json.dumps([{}] * 51)):
        report = await validate(ALLOWED_HOOKS, "post_webhook", {**hook, "blocks": blocks})
        assert codes(report) == [("invalid_args", "blocks")], blocks
    assert (await validate(ALLOWED_HOOKS, "post_webhook", {**hook, "blocks": json.dumps(BLOCKS)})).ok
    integrations = Integrations(http_allowed_hosts=["api.example.com"], http_allowed_methods=["POST"])
    request = {"method": "POST", "url": "https://api.example.com/", "body": "{not json"}
    assert codes(await validate(integrations, "http_request", request)) == [("invalid_args", "body")]
    newline = {"url": "https://api.example.com/", "headers": [{"name": "X-A", "value": "a\r\nHost: b"}]}
    report = await validate(integrations, "http_request", newline)
    assert ("invalid_args", "headers.0.value") in codes(report)


async def test_no_ticket_backend_is_a_finding() -> None:
    report = await validate(Integrations(), "create_ticket", {"title": "VPN down"})
    assert not report.ok
    assert codes(report) == [("tickets_not_configured", None)]
    assert "no ticket backend is configured" in report.findings[0].message
    config = TicketConfig(backend="github", repo="acme/helpdesk", token=GITHUB_TOKEN)
    assert (await validate(Integrations(tickets=config), "create_ticket", {"title": "VPN down"})).ok


# --- http_request ---------------------------------------------------------------------------------


class FakeApi(FakeServer):
    def answer(self, seen: Seen) -> Response:
        if seen.path == "/items":
            return _json({"items": [1, 2], "method": seen.method, "got": seen.body.decode() or None})
        if seen.path == "/big":
            return Response("x" * (MAX_RESPONSE_CHARS * 2), media_type="text/plain")
        if seen.path == "/moved":
            return Response(status_code=301, headers={"location": "https://elsewhere.example/"})
        return _json({"error": "nope"}, 404)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi().start()
    yield server
    server.stop()


def api_access(methods: tuple[str, ...] = ("GET",)) -> Integrations:
    return Integrations(http_allowed_hosts=["127.0.0.1"], http_allowed_methods=list(methods))


async def test_a_request_returns_the_answer_and_replays_without_calling_again(
    tmp_path: Path, api: FakeApi
) -> None:
    args = HttpRequestArgs.model_validate(
        {"url": f"{api.url}/items", "headers": [{"name": "X-Trace", "value": "t1"}]}
    )
    first = await http_request(args, ctx(tmp_path, api_access()))
    again = await http_request(args, ctx(tmp_path, api_access()))

    assert first.replayed is False and first.result.status_code == 200
    assert json.loads(first.result.body or "") == {"items": [1, 2], "method": "GET", "got": None}
    assert first.result.content_type == "application/json"
    # Replayed: the status and id again, not the body, which is not kept.
    assert again.replayed is True
    assert (again.result.request_id, again.result.status_code, again.result.body) == (
        first.result.request_id,
        200,
        None,
    )
    [seen] = api.seen
    assert seen.headers["idempotency-key"] == KEY and seen.headers["x-trace"] == "t1"


async def test_a_json_body_is_sent(tmp_path: Path, api: FakeApi) -> None:
    args = HttpRequestArgs(method="POST", url=f"{api.url}/items", body='{"name": "toner"}')
    run = await http_request(args, ctx(tmp_path, api_access(("GET", "POST"))))
    assert json.loads(run.result.body or "")["got"] == '{"name": "toner"}'
    assert api.seen[0].headers["content-type"] == "application/json"


async def test_large_bodies_are_cut_and_redirects_reported(tmp_path: Path, api: FakeApi) -> None:
    big = await http_request(HttpRequestArgs(url=f"{api.url}/big"), ctx(tmp_path, api_access()))
    assert big.result.truncated and len(big.result.body or "") == MAX_RESPONSE_CHARS
    moved = await http_request(HttpRequestArgs(url=f"{api.url}/moved"), ctx(tmp_path, api_access(), "k:2"))
    assert (moved.result.status_code, moved.result.location) == (301, "https://elsewhere.example/")
    assert len(api.seen) == 2


async def test_request_failures_are_permanent_or_retryable(tmp_path: Path, api: FakeApi) -> None:
    with pytest.raises(HttpRefused, match="404"):
        await http_request(HttpRequestArgs(url=f"{api.url}/missing"), ctx(tmp_path, api_access()))
    api.fail(502)
    with pytest.raises(HttpRetryable, match="502"):
        await http_request(HttpRequestArgs(url=f"{api.url}/items"), ctx(tmp_path, api_access(), "k:2"))
    assert await records_at(tmp_path) == []
    # Refused at execution, before any request, when the method is no longer allowed.
    with pytest.raises(HttpRefused, match="not an allowed method"):
        await http_request(
            HttpRequestArgs(method="DELETE", url=f"{api.url}/items"), ctx(tmp_path, api_access(), "k:3")
        )
    assert len(api.seen) == 2


# --- create_ticket: GitHub ------------------------------------------------------------------------


async def test_a_github_issue_is_created_once_per_key(tmp_path: Path, github: FakeGitHub) -> None:
    args = CreateTicketArgs(title="VPN down", body="Since 9am.")
    first = await create_ticket(args, ctx(tmp_path, github_tickets(github)))
    again = await create_ticket(args, ctx(tmp_path, github_tickets(github)))

    assert (first.replayed, again.replayed) == (False, True)
    assert first.result == again.result
    assert first.result.model_dump() == {
        "backend": "github",
        "ticket_id": "#3",
        "url": "https://gh.test/acme/helpdesk/issues/3",
    }
    [created] = github.requests("POST", FakeGitHub.ISSUES)
    assert created.json() == {"title": "VPN down", "body": f"Since 9am.\n\n<!-- countersign:{KEY} -->"}
    assert created.headers["authorization"] == f"Bearer {GITHUB_TOKEN}"
    assert created.headers["idempotency-key"] == KEY
    assert created.headers["accept"] == "application/vnd.github+json"
    assert GITHUB_TOKEN not in first.result.model_dump_json()
    # The second call was answered from the records table: the tracker was not asked again.
    assert len(github.seen) == 2


async def test_an_issue_created_before_a_crash_is_found_not_created_again(
    tmp_path: Path, github: FakeGitHub
) -> None:
    args = CreateTicketArgs(title="VPN down")
    first = await create_ticket(args, ctx(tmp_path / "worker-1", github_tickets(github)))
    # Another database: the record was lost (as if the worker died before writing it).
    retried = await create_ticket(args, ctx(tmp_path / "worker-2", github_tickets(github)))

    assert retried.replayed is True
    assert retried.result == first.result
    assert len(github.requests("POST")) == 1
    listed = github.requests("GET")[-1]
    assert listed.query == {"state": "all", "sort": "created", "direction": "desc", "per_page": "100"}


async def test_github_failures_are_permanent_or_retryable_and_never_show_the_token(
    tmp_path: Path, github: FakeGitHub
) -> None:
    args = CreateTicketArgs(title="VPN down")
    wrong = Integrations(
        tickets=TicketConfig(backend="github", base_url=github.url, repo="acme/helpdesk", token="wrong-token")
    )
    with pytest.raises(HttpRefused, match="401") as refused:
        await create_ticket(args, ctx(tmp_path, wrong))
    assert "wrong-token" not in str(refused.value)

    github.fail(503)
    with pytest.raises(HttpRetryable):
        await create_ticket(args, ctx(tmp_path, github_tickets(github)))
    # GitHub's rate limit is a 403 with no requests remaining: wait, do not give up.
    reset = int(time.time()) + 40
    github.fail(403, **{"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    with pytest.raises(HttpRetryable, match="403") as limited:
        await create_ticket(args, ctx(tmp_path, github_tickets(github)))
    # ... until the limit resets, as GitHub says.
    assert limited.value.after_seconds is not None and 30 < limited.value.after_seconds <= 40
    github.fail(403)
    with pytest.raises(HttpRefused, match="403"):
        await create_ticket(args, ctx(tmp_path, github_tickets(github)))

    assert (await create_ticket(args, ctx(tmp_path, github_tickets(github)))).replayed is False
    assert len(github.requests("POST")) == 1


async def test_the_token_is_redacted_from_an_echoed_error(tmp_path: Path, github: FakeGitHub) -> None:
    class Echo(FakeGitHub):
        def answer(self, seen: Seen) -> Response:
            return Response(f"bad header {seen.headers.get('authorization')}", status_code=400)

    echo = Echo().start()
    try:
        with pytest.raises(HttpRefused) as refused:
            await create_ticket(CreateTicketArgs(title="x"), ctx(tmp_path, github_tickets(echo)))
    finally:
        echo.stop()
    assert GITHUB_TOKEN not in str(refused.value) and "***" in str(refused.value)


def test_a_key_that_could_end_an_html_comment_is_replaced_by_its_digest() -> None:
    assert github_marker("req-x:v1") == "<!-- countersign:req-x:v1 -->"
    marker = github_marker("req--><script>:v1")
    assert "-->" not in marker.removesuffix(" -->") and "sha256=" in marker


# --- create_ticket: Jira --------------------------------------------------------------------------


async def test_a_jira_issue_is_created_once_per_key(tmp_path: Path, jira: FakeJira) -> None:
    args = CreateTicketArgs(title="VPN down", body="Since 9am.")
    first = await create_ticket(args, ctx(tmp_path / "worker-1", jira_tickets(jira)))
    again = await create_ticket(args, ctx(tmp_path / "worker-1", jira_tickets(jira)))
    # A lost record: the label finds the issue.
    found = await create_ticket(args, ctx(tmp_path / "worker-2", jira_tickets(jira)))

    assert (first.replayed, again.replayed, found.replayed) == (False, True, True)
    assert first.result == again.result == found.result
    assert first.result.model_dump() == {
        "backend": "jira",
        "ticket_id": "OPS-1",
        "url": f"{jira.url}/browse/OPS-1",
    }
    [issue] = jira.issues
    assert issue["labels"] == [jira_label(KEY)]
    assert issue["description"].startswith("Since 9am.") and KEY in issue["description"]
    [created] = jira.requests("POST")
    assert created.headers["idempotency-key"] == KEY
    assert created.json()["fields"]["summary"] == "VPN down"
    assert JIRA_TOKEN not in first.result.model_dump_json()
    # Server / Data Center has no /search/jql: the classic search answers after a 404.
    searched = {s.path for s in jira.requests("GET")}
    assert searched == (
        {"/rest/api/2/search/jql"} if jira.cloud else {"/rest/api/2/search/jql", "/rest/api/2/search"}
    )


async def test_jira_bearer_tokens_and_refusals(tmp_path: Path, jira: FakeJira) -> None:
    # No email: a Server / Data Center personal access token, sent as Bearer (refused by this fake).
    config = TicketConfig(backend="jira", base_url=jira.url, project="OPS", token=JIRA_TOKEN)
    with pytest.raises(HttpRefused, match="401") as refused:
        await create_ticket(CreateTicketArgs(title="x"), ctx(tmp_path, Integrations(tickets=config)))
    assert JIRA_TOKEN not in str(refused.value)
    assert jira.seen[0].headers["authorization"] == f"Bearer {JIRA_TOKEN}"

    other_type = jira_tickets(jira)
    assert other_type.tickets is not None
    other_type.tickets.issue_type = "Bug"
    with pytest.raises(HttpRefused, match="400"):
        await create_ticket(CreateTicketArgs(title="x"), ctx(tmp_path, other_type))


# --- The last look before acting -------------------------------------------------------------------


class Looks:
    """A `before_effect` that counts the requests the server had seen when it was called, and
    refuses (as when the attempt lost its key to a retry) while `lost` is set."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.seen_then: list[list[str]] = []
        self.lost = True

    async def __call__(self) -> None:
        self.seen_then.append([s.method for s in self.server.seen])
        if self.lost:
            raise LeaseLost(KEY, 1, "taken over under fence 2 by the retry")


async def test_a_webhook_is_posted_only_after_the_last_look(tmp_path: Path, slack: FakeSlack) -> None:
    looks = Looks(slack)
    with pytest.raises(LeaseLost):
        await post_webhook(hook_args(slack), replace(ctx(tmp_path, hooks(slack)), before_effect=looks))
    assert slack.seen == [] and await records_at(tmp_path) == []
    looks.lost = False
    await post_webhook(hook_args(slack), replace(ctx(tmp_path, hooks(slack)), before_effect=looks))
    replayed = await post_webhook(hook_args(slack), replace(ctx(tmp_path, hooks(slack)), before_effect=looks))
    assert replayed.replayed is True
    assert looks.seen_then == [[], []] and len(slack.requests("POST")) == 1


async def test_a_request_is_sent_only_after_the_last_look(tmp_path: Path, api: FakeApi) -> None:
    looks = Looks(api)
    args = HttpRequestArgs(method="POST", url=f"{api.url}/items", body="{}")
    access = api_access(("POST",))
    with pytest.raises(LeaseLost):
        await http_request(args, replace(ctx(tmp_path, access), before_effect=looks))
    assert api.seen == []
    looks.lost = False
    await http_request(args, replace(ctx(tmp_path, access), before_effect=looks))
    await http_request(args, replace(ctx(tmp_path, access), before_effect=looks))
    assert looks.seen_then == [[], []] and len(api.seen) == 1


async def test_an_issue_is_created_only_after_the_tracker_was_asked_and_the_last_look(
    tmp_path: Path, github: FakeGitHub
) -> None:
    looks = Looks(github)
    args = CreateTicketArgs(title="VPN down")
    with pytest.raises(LeaseLost):
        await create_ticket(args, replace(ctx(tmp_path, github_tickets(github)), before_effect=looks))
    assert github.requests("POST") == [] and await records_at(tmp_path) == []
    looks.lost = False
    await create_ticket(args, replace(ctx(tmp_path, github_tickets(github)), before_effect=looks))
    # Found on the tracker (another database: the record is not there): no last look, nothing created.
    found = await create_ticket(
        args, replace(ctx(tmp_path / "other", github_tickets(github)), before_effect=looks)
    )
    assert found.replayed is True
    assert looks.seen_then == [["GET"], ["GET", "GET"]] and len(github.requests("POST")) == 1


# --- Through the execution activity ---------------------------------------------------------------


async def test_the_execution_activity_retries_temporary_failures_only(
    tmp_path: Path, slack: FakeSlack
) -> None:
    activities = ExecutionActivities(build_registry(), tmp_path / "data", hooks(slack))
    call = ToolCall(tool="post_webhook", args=hook_args(slack).model_dump(), idempotency_key=KEY)
    env = ActivityEnvironment()

    slack.fail(500)
    with pytest.raises(ApplicationError) as temporary:
        await env.run(activities.execute, call)
    assert temporary.value.type == "ToolUnavailable" and not temporary.value.non_retryable
    assert temporary.value.next_retry_delay is None  # the retry policy's backoff
    # A rate limit with Retry-After: the next attempt waits exactly as long as the server asked.
    slack.fail(429, **{"retry-after": "7"})
    with pytest.raises(ApplicationError) as limited:
        await env.run(activities.execute, call)
    assert limited.value.type == "ToolUnavailable" and limited.value.next_retry_delay == timedelta(seconds=7)
    # An absurd wait is capped, so a typo on the other side cannot park the action for days.
    slack.fail(503, **{"retry-after": "864000"})
    with pytest.raises(ApplicationError) as capped:
        await env.run(activities.execute, call)
    assert capped.value.next_retry_delay == timedelta(minutes=5)
    slack.fail(400)
    with pytest.raises(ApplicationError) as refused:
        await env.run(activities.execute, call)
    assert refused.value.non_retryable and refused.value.type == "ToolRefused"

    outcome = await env.run(activities.execute, call)
    assert outcome.replayed is False and outcome.result["status_code"] == 200
    # The ledger holds the result now: the tool is not called again, and the result is the same.
    again = await env.run(activities.execute, call)
    assert again.replayed is True and again.result == outcome.result
    assert len(slack.requests("POST")) == 5


# --- Settings -------------------------------------------------------------------------------------


def test_settings_build_the_web_integrations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COUNTERSIGN_WEBHOOK_ALLOWED_URLS", " https://hooks.slack.com/services/T1/ , ")
    monkeypatch.setenv("COUNTERSIGN_HTTP_ALLOWED_HOSTS", "API.example.com, status.example.com:8443")
    monkeypatch.setenv("COUNTERSIGN_HTTP_ALLOWED_METHODS", "get,post")
    monkeypatch.setenv("COUNTERSIGN_TICKET_BACKEND", "jira")
    monkeypatch.setenv("COUNTERSIGN_TICKET_BASE_URL", "https://corp.atlassian.net/")
    monkeypatch.setenv("COUNTERSIGN_TICKET_PROJECT", "OPS")
    monkeypatch.setenv("COUNTERSIGN_TICKET_TOKEN", JIRA_TOKEN)
    monkeypatch.setenv("COUNTERSIGN_TICKET_EMAIL", "bot@example.com")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    integrations = settings.integrations()

    assert integrations.webhook_allowed_urls == ["https://hooks.slack.com/services/T1/"]
    assert integrations.http_allowed_hosts == ["api.example.com", "status.example.com:8443"]
    assert integrations.http_allowed_methods == ["GET", "POST"]
    assert integrations.http_timeout_seconds == 15
    tickets = integrations.tickets
    assert tickets is not None
    assert (tickets.backend, tickets.base_url, tickets.project, tickets.email) == (
        "jira",
        "https://corp.atlassian.net",
        "OPS",
        "bot@example.com",
    )
    assert JIRA_TOKEN not in repr(settings) and JIRA_TOKEN not in repr(integrations)

    # Defaults: GET only, no tickets; GitHub's base URL when unset.
    for name in ("HTTP_ALLOWED_METHODS", "TICKET_BASE_URL", "TICKET_PROJECT", "TICKET_EMAIL"):
        monkeypatch.delenv(f"COUNTERSIGN_{name}")
    monkeypatch.setenv("COUNTERSIGN_TICKET_BACKEND", "github")
    monkeypatch.setenv("COUNTERSIGN_TICKET_REPO", "acme/helpdesk")
    github = Settings(_env_file=None).integrations()  # type: ignore[call-arg]
    assert github.http_allowed_methods == ["GET"]
    assert github.tickets is not None and github.tickets.base_url == "https://api.github.com"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TICKET_BACKEND": "github", "TICKET_TOKEN": "t"}, "needs ticket_repo"),
        ({"TICKET_BACKEND": "github", "TICKET_REPO": "acme/helpdesk"}, "needs ticket_token"),
        ({"TICKET_BACKEND": "jira", "TICKET_TOKEN": "t"}, "needs ticket_base_url"),
        ({"WEBHOOK_ALLOWED_URLS": "hooks.slack.com/services"}, "not an http"),
    ],
)
def test_incomplete_web_settings_fail_at_startup_without_echoing_secrets(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(f"COUNTERSIGN_{name}", value)
    monkeypatch.setenv("COUNTERSIGN_SMTP_PASSWORD", "smtp-secret-value")
    with pytest.raises(ValueError, match=message) as failed:
        Settings(_env_file=None)  # type: ignore[call-arg]
    # Pydantic would print (part of) the input, whose middle it elides, so check for the input at all.
    assert "smtp-secret-value" not in str(failed.value) and "input_value" not in str(failed.value)

"""The issue trackers `create_ticket` opens issues in (GitHub, Jira), and how it finds one it opened.

Before creating an issue, the tracker is asked for one carrying the request's idempotency key, which
covers a crash between creating and recording. GitHub: issue bodies end with the hidden marker
`<!-- countersign:KEY -->`, found by listing the repository's 100 most recently created issues (the
list is consistent at once, unlike the search API). Jira: issues get the label
`countersign-<first 32 hex digits of sha256(KEY)>`, found with a JQL search (`/rest/api/2/search/jql`,
or `/rest/api/2/search` on Server / Data Center, which lack the former).

Tokens go in headers only: never part of results or error messages.
"""

import re
from collections.abc import Mapping
from typing import Any, Literal

import httpx

from countersign.tools.effects import key_digest
from countersign.tools.http_client import IDEMPOTENCY_KEY_HEADER, check_answer, json_body
from countersign.tools.integrations import TicketConfig
from countersign.tools.web_args import CreateTicketArgs, CreateTicketResult

_MARKER_SAFE = re.compile(r"^[A-Za-z0-9._:/@+=-]+$")
GITHUB_ISSUES_SCANNED = 100


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


class Tracker:
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
        check_answer(response, what, secrets=self.secrets)


class _GitHub(Tracker):
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
        for issue in json_body(response, "GitHub"):
            if "pull_request" not in issue and marker in (issue.get("body") or ""):
                return self._found(issue)
        return None

    async def create(self, args: CreateTicketArgs) -> CreateTicketResult:
        body = f"{args.body}\n\n{github_marker(self.key)}" if args.body else github_marker(self.key)
        response = await self.call("POST", self.issues, json={"title": args.title, "body": body})
        self.check(response, "GitHub (creating an issue)")
        return self._found(json_body(response, "GitHub"))


class _Jira(Tracker):
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
        issues = json_body(response, "Jira").get("issues") or []
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
        return self._found(json_body(response, "Jira")["key"])


def ticket_from_record(backend: Literal["github", "jira"], url: str) -> CreateTicketResult:
    """The result a recorded issue URL stands for: its last segment is the number or the key."""
    last = url.rstrip("/").rpartition("/")[2]
    return CreateTicketResult(backend=backend, ticket_id=f"#{last}" if backend == "github" else last, url=url)


def tracker_for(config: TicketConfig, client: httpx.AsyncClient, key: str) -> _GitHub | _Jira:
    """The configured backend's tracker, for the request `key`."""
    tracker_type = _GitHub if config.backend == "github" else _Jira
    return tracker_type(config, client, key)

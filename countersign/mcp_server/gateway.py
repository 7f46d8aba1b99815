"""The gateway's HTTP API as the MCP tools call it: one method per route, the caller's own credential on
every call (the `httpx.AsyncClient` it is given carries it), so the gateway applies every authentication,
role and tenant rule exactly as for any other client. Nothing here decides anything."""

from typing import Any
from urllib.parse import quote

import httpx

# A long poll holds the request open for its wait; the answer then needs a moment more to arrive.
ANSWER_MARGIN_SECONDS = 15.0
CONNECT_SECONDS = 10.0
# A refusal's text, when the gateway (or a proxy before it) answered something other than JSON.
_TEXT_LIMIT = 500


class Refused(Exception):
    """The gateway answered an error status: its body (`detail`, and for the service's refusals `code`,
    and for a bad action `findings`) as it sent it."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('detail')}")
        self.status = status
        self.body = body


class Unreachable(Exception):
    """No answer from the gateway: not listening, or slower than the call allowed."""


class Gateway:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def submit(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return await self._call("POST", "/workflows", json=body, headers=headers)

    async def view(
        self, workflow_id: str, wait_seconds: float | None = None, until: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, str | float] = {}
        if wait_seconds:
            params["wait_seconds"] = wait_seconds
            if until is not None:
                params["until"] = until
        return await self._call("GET", _workflow(workflow_id), params=params, wait=wait_seconds or 0)

    async def report_result(self, workflow_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", _workflow(workflow_id) + "/result", json=body)

    async def tools(self) -> dict[str, Any]:
        return await self._call("GET", "/tools")

    async def inbox(self) -> dict[str, Any]:
        return await self._call("GET", "/approvals/inbox")

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str | float] | None = None,
        headers: dict[str, str] | None = None,
        wait: float = 0,
    ) -> dict[str, Any]:
        timeout = httpx.Timeout(wait + ANSWER_MARGIN_SECONDS, connect=CONNECT_SECONDS)
        try:
            response = await self._http.request(
                method, path, json=json, params=params, headers=headers, timeout=timeout
            )
        except httpx.TransportError as error:
            # The exception's text names the URL at most, never the request's headers (the credential).
            raise Unreachable(f"the gateway did not answer {method} {path}: {type(error).__name__}") from None
        body = _json_object(response)
        if response.is_error:
            raise Refused(response.status_code, body)
        return body


def _workflow(workflow_id: str) -> str:
    # Quoted whole: an id is one path segment, never a way to another route.
    return f"/workflows/{quote(workflow_id, safe='')}"


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:_TEXT_LIMIT]}
    return body if isinstance(body, dict) else {"detail": body}

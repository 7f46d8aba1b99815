"""`Client` (sync) and `AsyncClient` on httpx: the same methods, the same answers, the same errors."""

import asyncio
import time
from types import TracebackType
from typing import Any, Self

import httpx

from countersign_client import _http
from countersign_client.errors import WaitTimeout
from countersign_client.models import (
    ApproveRequest,
    ProposedAction,
    ResultReport,
    SubmitRequest,
    SubmitResponse,
    ToolList,
    ToolSpec,
    Until,
    WorkflowList,
    WorkflowSummary,
    WorkflowView,
)

DEFAULT_TIMEOUT = 30.0
DEFAULT_WAIT_TIMEOUT = 600.0


class _Calls:
    """The requests both clients make, as data; the subclasses send them."""

    def __init__(self, retries: int) -> None:
        self.retries = retries

    @staticmethod
    def _submit(body: SubmitRequest, idempotency_key: str | None, wait_seconds: float | None) -> _http.Call:
        return _http.Call(
            "POST",
            "/workflows",
            params=_http.wait_param(wait_seconds),
            json=body.model_dump(mode="json", exclude_none=True),
            headers={"Idempotency-Key": _http.idempotency_key(idempotency_key)},
            holds=wait_seconds or 0.0,
        )

    @staticmethod
    def _action_body(
        tool: str,
        args: dict[str, Any],
        summary: str | None,
        context: str | dict[str, Any] | None,
        text: str | None,
        callback_url: str | None,
    ) -> SubmitRequest:
        return SubmitRequest(
            action=ProposedAction(tool=tool, args=args),
            summary=summary,
            context=context,
            text=text,
            callback_url=callback_url,
        )

    @staticmethod
    def _get(workflow_id: str, wait_seconds: float | None, until: Until | None) -> _http.Call:
        params = _http.wait_param(wait_seconds)
        if until is not None:
            params["until"] = until
        return _http.Call("GET", f"/workflows/{workflow_id}", params=params, holds=wait_seconds or 0.0)

    @staticmethod
    def _decide(workflow_id: str, body: ApproveRequest, wait_seconds: float | None) -> _http.Call:
        return _http.Call(
            "POST",
            f"/workflows/{workflow_id}/approve",
            params=_http.wait_param(wait_seconds),
            json=body.model_dump(mode="json"),
            holds=wait_seconds or 0.0,
            # A decision sent twice is refused the second time (already decided): never resent blindly.
            retry=False,
        )

    @staticmethod
    def _result(workflow_id: str, body: ResultReport) -> _http.Call:
        return _http.Call(
            "POST",
            f"/workflows/{workflow_id}/result",
            json=body.model_dump(mode="json", exclude_none=True),
            retry=False,
        )

    @staticmethod
    def _inbox(filters: dict[str, Any]) -> _http.Call:
        return _http.Call(
            "GET", "/approvals/inbox", params={k: v for k, v in filters.items() if v is not None}
        )

    def _next_delay(self, attempt: int, response: httpx.Response | None) -> float | None:
        if attempt > self.retries:
            return None
        return _http.backoff(attempt, None if response is None else _http.retry_after(response))


def _wait_slice(deadline: float) -> float:
    return min(_http.MAX_WAIT_SECONDS, max(deadline - time.monotonic(), 0.001))


class Client(_Calls):
    """A synchronous client.

    ```python
    with Client("http://127.0.0.1:8000", api_key="cs_…") as cs:
        submitted = cs.submit_action("send_email", {"to": "…", "subject": "…", "body": "…"})
        view = cs.wait(submitted.workflow_id, until="final", timeout=600)
    ```
    `timeout` bounds each request (a long-poll gets its wait on top). A 429 is retried `retries` times
    with backoff, honouring Retry-After; so are a 503 and a lost connection for reads and submits (a
    submit always carries an Idempotency-Key), never for a decision or a result.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(retries)
        self._http = httpx.Client(
            base_url=base_url, headers=_http.headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _http.Call) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    headers=call.headers,
                    timeout=_http.timeout_for(self._http.timeout, call),
                )
            except httpx.TransportError as cause:
                delay = self._next_delay(attempt, None) if call.retry else None
                if delay is None:
                    raise _http.unreachable(call, cause) from cause
                time.sleep(delay)
                continue
            if response.is_success:
                return response.json()
            failure = _http.error(response)
            delay = self._next_delay(attempt, response) if _http.retryable(call, failure) else None
            if delay is None:
                raise failure
            time.sleep(delay)

    def submit_action(
        self,
        tool: str,
        args: dict[str, Any],
        *,
        summary: str | None = None,
        context: str | dict[str, Any] | None = None,
        text: str | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        wait_seconds: float | None = None,
    ) -> SubmitResponse:
        """Propose one action yourself (no planner runs): it is validated, routed and held for approval."""
        body = self._action_body(tool, args, summary, context, text, callback_url)
        return SubmitResponse.model_validate(self._send(self._submit(body, idempotency_key, wait_seconds)))

    def submit_text(
        self,
        text: str,
        *,
        type: str | None = None,
        fields: dict[str, str | int | float | bool] | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        wait_seconds: float | None = None,
    ) -> SubmitResponse:
        """A request in plain words, for the planner to turn into one action."""
        body = SubmitRequest(text=text, type=type, fields=fields, callback_url=callback_url)
        return SubmitResponse.model_validate(self._send(self._submit(body, idempotency_key, wait_seconds)))

    def get(
        self, workflow_id: str, *, wait_seconds: float | None = None, until: Until | None = None
    ) -> WorkflowView:
        """The workflow's view; with `wait_seconds` (≤ 60), a long-poll answering once `until` is reached."""
        return WorkflowView.model_validate(self._send(self._get(workflow_id, wait_seconds, until)))

    def wait(
        self, workflow_id: str, *, until: Until = "final", timeout: float = DEFAULT_WAIT_TIMEOUT
    ) -> WorkflowView:
        """Long-poll until the workflow is `decided` (approved or ended) or `final` (ended); past `timeout`
        seconds, `WaitTimeout` with the last view."""
        deadline = time.monotonic() + timeout
        view = self.get(workflow_id) if timeout <= 0 else None
        while view is None or not view.reached(until):
            if view is not None and time.monotonic() >= deadline:
                raise WaitTimeout(view, until)
            view = self.get(workflow_id, wait_seconds=_wait_slice(deadline), until=until)
        return view

    def approve(
        self,
        workflow_id: str,
        *,
        proposal_version: int,
        notes: str | None = None,
        wait_seconds: float | None = None,
    ) -> WorkflowView:
        """Approve the proposal version you saw (a reviewer's call)."""
        body = ApproveRequest(decision="approved", notes=notes, proposal_version=proposal_version)
        return WorkflowView.model_validate(self._send(self._decide(workflow_id, body, wait_seconds)))

    def reject(self, workflow_id: str, *, notes: str, proposal_version: int) -> WorkflowView:
        """Reject it, with the reason the requester will be told."""
        body = ApproveRequest(decision="rejected", notes=notes, proposal_version=proposal_version)
        return WorkflowView.model_validate(self._send(self._decide(workflow_id, body, None)))

    def report_result(
        self,
        workflow_id: str,
        ok: bool,
        output: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> WorkflowView:
        """Tell the workflow what a caller-executed action did (once, before `result_due_at`)."""
        body = ResultReport(ok=ok, output=output, error=error)
        return WorkflowView.model_validate(self._send(self._result(workflow_id, body)))

    def list_tools(self) -> list[ToolSpec]:
        return ToolList.model_validate(self._send(_http.Call("GET", "/tools"))).items

    def inbox(
        self,
        *,
        type: str | None = None,
        min_amount: float | None = None,
        max_amount: float | None = None,
        escalated_only: bool | None = None,
        limit: int | None = None,
    ) -> list[WorkflowSummary]:
        """What the caller may decide now, earliest SLA first."""
        filters = {
            "type": type,
            "min_amount": min_amount,
            "max_amount": max_amount,
            "escalated_only": escalated_only,
            "limit": limit,
        }
        return WorkflowList.model_validate(self._send(self._inbox(filters))).items


class AsyncClient(_Calls):
    """The asynchronous client: `Client`'s methods, awaited."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(retries)
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_http.headers(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _http.Call) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    headers=call.headers,
                    timeout=_http.timeout_for(self._http.timeout, call),
                )
            except httpx.TransportError as cause:
                delay = self._next_delay(attempt, None) if call.retry else None
                if delay is None:
                    raise _http.unreachable(call, cause) from cause
                await asyncio.sleep(delay)
                continue
            if response.is_success:
                return response.json()
            failure = _http.error(response)
            delay = self._next_delay(attempt, response) if _http.retryable(call, failure) else None
            if delay is None:
                raise failure
            await asyncio.sleep(delay)

    async def submit_action(
        self,
        tool: str,
        args: dict[str, Any],
        *,
        summary: str | None = None,
        context: str | dict[str, Any] | None = None,
        text: str | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        wait_seconds: float | None = None,
    ) -> SubmitResponse:
        body = self._action_body(tool, args, summary, context, text, callback_url)
        answer = await self._send(self._submit(body, idempotency_key, wait_seconds))
        return SubmitResponse.model_validate(answer)

    async def submit_text(
        self,
        text: str,
        *,
        type: str | None = None,
        fields: dict[str, str | int | float | bool] | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        wait_seconds: float | None = None,
    ) -> SubmitResponse:
        body = SubmitRequest(text=text, type=type, fields=fields, callback_url=callback_url)
        answer = await self._send(self._submit(body, idempotency_key, wait_seconds))
        return SubmitResponse.model_validate(answer)

    async def get(
        self, workflow_id: str, *, wait_seconds: float | None = None, until: Until | None = None
    ) -> WorkflowView:
        return WorkflowView.model_validate(await self._send(self._get(workflow_id, wait_seconds, until)))

    async def wait(
        self,
        workflow_id: str,
        *,
        until: Until = "final",
        timeout: float = DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109 - the deadline of several long-polls
    ) -> WorkflowView:
        deadline = time.monotonic() + timeout
        view = await self.get(workflow_id) if timeout <= 0 else None
        while view is None or not view.reached(until):
            if view is not None and time.monotonic() >= deadline:
                raise WaitTimeout(view, until)
            view = await self.get(workflow_id, wait_seconds=_wait_slice(deadline), until=until)
        return view

    async def approve(
        self,
        workflow_id: str,
        *,
        proposal_version: int,
        notes: str | None = None,
        wait_seconds: float | None = None,
    ) -> WorkflowView:
        body = ApproveRequest(decision="approved", notes=notes, proposal_version=proposal_version)
        return WorkflowView.model_validate(await self._send(self._decide(workflow_id, body, wait_seconds)))

    async def reject(self, workflow_id: str, *, notes: str, proposal_version: int) -> WorkflowView:
        body = ApproveRequest(decision="rejected", notes=notes, proposal_version=proposal_version)
        return WorkflowView.model_validate(await self._send(self._decide(workflow_id, body, None)))

    async def report_result(
        self,
        workflow_id: str,
        ok: bool,
        output: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> WorkflowView:
        body = ResultReport(ok=ok, output=output, error=error)
        return WorkflowView.model_validate(await self._send(self._result(workflow_id, body)))

    async def list_tools(self) -> list[ToolSpec]:
        return ToolList.model_validate(await self._send(_http.Call("GET", "/tools"))).items

    async def inbox(
        self,
        *,
        type: str | None = None,
        min_amount: float | None = None,
        max_amount: float | None = None,
        escalated_only: bool | None = None,
        limit: int | None = None,
    ) -> list[WorkflowSummary]:
        filters = {
            "type": type,
            "min_amount": min_amount,
            "max_amount": max_amount,
            "escalated_only": escalated_only,
            "limit": limit,
        }
        return WorkflowList.model_validate(await self._send(self._inbox(filters))).items

"""`@approval_required`: a function that runs only once a person approved the call.

Calling the decorated function proposes the call to Countersign as an action (`tool`, the arguments by
name), waits for the decision, and runs the function only if it was approved, with the approved
arguments (a reviewer may have edited them). What it returned, or the exception it raised, is reported
back to the workflow. A rejection raises `ApprovalRejected` with the reviewer's reason; a decision not
made in time raises `ApprovalPending` with the workflow id, to `resume` later.
"""

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypeVar, cast, overload

from pydantic_core import to_jsonable_python

from countersign_client.client import AsyncClient, Client
from countersign_client.errors import (
    ApprovalCancelled,
    ApprovalExpired,
    ApprovalFailed,
    ApprovalPending,
    ApprovalRejected,
    WaitTimeout,
)
from countersign_client.models import WorkflowState, WorkflowView

P = ParamSpec("P")
R = TypeVar("R")

Summary = str | Callable[..., str] | None
Context = str | dict[str, Any] | Callable[..., str | dict[str, Any]] | None


class _Approval:
    """What a sync and an async decorated function share: arguments in, the view's verdict out."""

    def __init__(
        self,
        fn: Callable[..., Any],
        tool: str,
        summary: Summary,
        context: Context,
        timeout: float,
        wait: bool,
    ) -> None:
        self.fn = fn
        self.tool = tool
        self.summary = summary
        self.context = context
        self.timeout = timeout
        self.wait = wait and timeout > 0
        self.signature = inspect.signature(fn)
        if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in self.signature.parameters.values()):
            raise TypeError(f"{fn.__qualname__}: *args cannot be proposed by name; name each argument")

    def proposal(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments by name (defaults filled in), as the action's args and for `summary`."""
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        named: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if self.signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                named.update(value)
            else:
                named[name] = value
        jsonable = to_jsonable_python(named)
        assert isinstance(jsonable, dict)
        return jsonable

    def words(self, args: dict[str, Any]) -> tuple[str | None, str | dict[str, Any] | None]:
        summary = self.summary(**args) if callable(self.summary) else self.summary
        context = self.context(**args) if callable(self.context) else self.context
        return summary, context

    def call(self, approved: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The approved args as a call: positional-only parameters by position, the rest by name."""
        positional: list[Any] = []
        named = dict(approved)
        for name, parameter in self.signature.parameters.items():
            if parameter.kind is inspect.Parameter.POSITIONAL_ONLY and name in named:
                positional.append(named.pop(name))
        return tuple(positional), named

    def verdict(self, view: WorkflowView) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call to make when the view says "approved, yours to run"; otherwise the error to raise."""
        state = view.state
        if state == WorkflowState.APPROVED and view.execution == "caller":
            if view.approved_args is None:
                raise ApprovalFailed(view.workflow_id, "approved, but the view names no approved args", view)
            return self.call(view.approved_args)
        if state == WorkflowState.REJECTED:
            raise ApprovalRejected(view.workflow_id, view.rejection_reason, view)
        if state == WorkflowState.EXPIRED:
            raise ApprovalExpired(view.workflow_id, f"workflow {view.workflow_id} expired undecided", view)
        if state == WorkflowState.CANCELLED:
            raise ApprovalCancelled(view.workflow_id, f"workflow {view.workflow_id} was withdrawn", view)
        if state == WorkflowState.FAILED:
            raise ApprovalFailed(view.workflow_id, f"workflow {view.workflow_id} failed: {view.error}", view)
        if not view.reached("decided"):
            raise ApprovalPending(view.workflow_id, view)
        raise ApprovalFailed(
            view.workflow_id,
            f"workflow {view.workflow_id} is {state} with execution {view.execution!r}: tool {self.tool!r} "
            "is not one the caller executes (declare it with POST /tools), so this function must not run",
            view,
        )


def _output(value: Any) -> dict[str, Any] | None:
    """The return value as the result's `output` (a JSON object): a dict as it is, anything else under
    `value`."""
    if value is None:
        return None
    jsonable = to_jsonable_python(value, fallback=repr)
    return jsonable if isinstance(jsonable, dict) else {"value": jsonable}


def _failure(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class ApprovedFunction(Generic[P, R]):
    """A sync function behind an approval; `resume(workflow_id)` continues after `ApprovalPending`."""

    def __init__(self, client: Client, approval: _Approval) -> None:
        self._client = client
        self._approval = approval
        functools.update_wrapper(self, approval.fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        a = self._approval
        proposed = a.proposal(args, kwargs)
        summary, context = a.words(proposed)
        submitted = self._client.submit_action(a.tool, proposed, summary=summary, context=context)
        if not a.wait:
            raise ApprovalPending(submitted.workflow_id, submitted.view)
        return self.resume(submitted.workflow_id)

    def resume(self, workflow_id: str, *, timeout: float | None = None) -> R:
        """Wait for the decision on `workflow_id` (up to `timeout`, the decorator's by default; 0: look
        once) and run the function if approved, as the first call would have."""
        limit = self._approval.timeout if timeout is None else timeout
        try:
            view = self._client.wait(workflow_id, until="decided", timeout=limit)
        except WaitTimeout as pending:
            raise ApprovalPending(workflow_id, pending.view) from None
        args, kwargs = self._approval.verdict(view)
        try:
            value = cast(R, self._approval.fn(*args, **kwargs))
        except Exception as error:
            self._client.report_result(workflow_id, ok=False, error=_failure(error))
            raise
        self._client.report_result(workflow_id, ok=True, output=_output(value))
        return value


class AsyncApprovedFunction(Generic[P, R]):
    """An `async def` function behind an approval; `await fn.resume(workflow_id)` continues later."""

    def __init__(self, client: AsyncClient, approval: _Approval) -> None:
        self._client = client
        self._approval = approval
        functools.update_wrapper(self, approval.fn)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        a = self._approval
        proposed = a.proposal(args, kwargs)
        summary, context = a.words(proposed)
        submitted = await self._client.submit_action(a.tool, proposed, summary=summary, context=context)
        if not a.wait:
            raise ApprovalPending(submitted.workflow_id, submitted.view)
        return await self.resume(submitted.workflow_id)

    async def resume(self, workflow_id: str, *, timeout: float | None = None) -> R:  # noqa: ASYNC109
        limit = self._approval.timeout if timeout is None else timeout
        try:
            view = await self._client.wait(workflow_id, until="decided", timeout=limit)
        except WaitTimeout as pending:
            raise ApprovalPending(workflow_id, pending.view) from None
        args, kwargs = self._approval.verdict(view)
        try:
            value = await cast(Awaitable[R], self._approval.fn(*args, **kwargs))
        except Exception as error:
            await self._client.report_result(workflow_id, ok=False, error=_failure(error))
            raise
        await self._client.report_result(workflow_id, ok=True, output=_output(value))
        return value


class approval_required:
    """`@approval_required(client, tool="refund_payment", summary=..., timeout=600)`.

    `client` is a `Client` for a plain function, an `AsyncClient` for an `async def` one. `summary` and
    `context` are text (or, for `context`, a JSON object) for the reviewers, or functions of the call's
    arguments that make it. `timeout`: seconds to wait for the decision before `ApprovalPending`;
    `timeout=0` or `wait=False` raises `ApprovalPending` as soon as the action is proposed.
    """

    def __init__(
        self,
        client: Client | AsyncClient,
        *,
        tool: str,
        summary: Summary = None,
        context: Context = None,
        timeout: float = 600.0,
        wait: bool = True,
    ) -> None:
        self._client = client
        self._options = (tool, summary, context, timeout, wait)

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncApprovedFunction[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> ApprovedFunction[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> AsyncApprovedFunction[P, Any] | ApprovedFunction[P, Any]:
        approval = _Approval(fn, *self._options)
        if inspect.iscoroutinefunction(fn):
            if not isinstance(self._client, AsyncClient):
                raise TypeError(f"{fn.__qualname__} is async: decorate it with an AsyncClient")
            return AsyncApprovedFunction(self._client, approval)
        if not isinstance(self._client, Client):
            raise TypeError(f"{fn.__qualname__} is not async: decorate it with a Client")
        return ApprovedFunction(self._client, approval)

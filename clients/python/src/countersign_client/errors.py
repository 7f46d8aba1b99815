"""One error tree: everything the client raises on purpose is a `CountersignError`.

CountersignError
├── Refused               the gateway said no (4xx): `status`, `code`, `detail`
│   ├── Unauthorized      401: no key, a bad, revoked or expired one
│   ├── Forbidden         403: a role you lack, your own request, not the requester
│   ├── NotFound          404: unknown workflow, or another tenant's (alike)
│   ├── Conflict          409: not in a state that allows it, already decided, a stale version
│   └── Invalid           422 (and 400): `.findings` for a refused action (`InvalidAction`),
│                         `.errors` for field errors
├── Unavailable           503 or 429 still after the retries, or the gateway out of reach
├── ServerError           any other 5xx
├── WaitTimeout           `wait()` ran out before `until` was reached: `.view` is the last one seen
└── ApprovalError         an approval that did not (yet) let the action run: `.workflow_id`, `.view`
    ├── ApprovalPending   nobody decided yet: resume later with the workflow id
    ├── ApprovalRejected  `.reason`: the rejecting decision's notes
    ├── ApprovalExpired   nobody decided before the deadline
    ├── ApprovalCancelled withdrawn before it ran
    └── ApprovalFailed    failed for good (`.view.error`), or cannot run where the caller is
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from countersign_client.models import Finding, WorkflowView


class CountersignError(Exception):
    """The root of every error the client raises on purpose."""


class Refused(CountersignError):
    """The gateway refused the request (a 4xx): it will refuse it again as it is."""

    def __init__(
        self, status: int, detail: str, code: str | None = None, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code or 'refused'}: {detail}")
        self.status = status
        self.detail = detail
        self.code = code
        self.body = body or {}


class Unauthorized(Refused):
    pass


class Forbidden(Refused):
    pass


class NotFound(Refused):
    pass


class Conflict(Refused):
    pass


class Invalid(Refused):
    """A request that does not fit. `findings` name what is wrong with a refused action (code
    `InvalidAction`); `errors` are the field errors of a body that does not fit the route."""

    def __init__(
        self,
        status: int,
        detail: str,
        code: str | None = None,
        body: dict[str, Any] | None = None,
        findings: "list[Finding] | None" = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(status, detail, code, body)
        self.findings = findings or []
        self.errors = errors or []


class Unavailable(CountersignError):
    """Not now rather than never: the gateway answered 503 or 429 through every retry, or could not be
    reached. `retry_after` is the gateway's last hint, in seconds, when it gave one."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ServerError(CountersignError):
    """A 5xx other than 503: a fault on the server's side."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class WaitTimeout(CountersignError):
    """`wait()` ran out before the workflow reached the point asked for; `view` is the last one seen."""

    def __init__(self, view: "WorkflowView", until: str) -> None:
        super().__init__(f"workflow {view.workflow_id} is {view.state}, not yet {until}")
        self.view = view
        self.until = until


class ApprovalError(CountersignError):
    """An approval that did not let the action run, or not yet."""

    def __init__(self, workflow_id: str, message: str, view: "WorkflowView | None" = None) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.view = view


class ApprovalPending(ApprovalError):
    """Nobody has decided yet. Keep `workflow_id` and resume later (`fn.resume(workflow_id)`)."""

    def __init__(self, workflow_id: str, view: "WorkflowView | None" = None) -> None:
        state = f" ({view.state})" if view is not None else ""
        super().__init__(workflow_id, f"workflow {workflow_id} awaits a decision{state}", view)


class ApprovalRejected(ApprovalError):
    """A reviewer rejected the action; `reason` is their notes."""

    def __init__(self, workflow_id: str, reason: str | None, view: "WorkflowView | None" = None) -> None:
        super().__init__(
            workflow_id, f"workflow {workflow_id} was rejected: {reason or 'no reason given'}", view
        )
        self.reason = reason


class ApprovalExpired(ApprovalError):
    """Nobody decided before the deadline (never a rejection)."""


class ApprovalCancelled(ApprovalError):
    """Withdrawn (by the requester or an ADMIN) before the action ran."""


class ApprovalFailed(ApprovalError):
    """Failed for good: planning or the action (`view.error`), a result reported too late, or an
    approved action this caller cannot run (the server executes that tool itself)."""

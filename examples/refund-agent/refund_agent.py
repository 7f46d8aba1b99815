"""An agent that refunds payments only with a person's yes: Countersign's decorator against `countersign up`.

    export COUNTERSIGN_API_URL=http://127.0.0.1:8000
    export COUNTERSIGN_API_KEY=cs_…     # demo-requester's key, printed by the first `countersign up`
    export COUNTERSIGN_ADMIN_KEY=cs_…   # demo-admin's: declares the refund tool once
    uv run python examples/refund-agent/refund_agent.py A-1001 40

It proposes `refund_payment(order_id, amount)` and waits. A reviewer (demo-manager) approves it in the
inbox (http://127.0.0.1:8000/ui), perhaps lowering the amount first; only then does the refund run,
with the approved arguments, and its result goes back to Countersign. A rejection says why.

Exit codes: 0 refunded, 1 rejected or failed, 3 still waiting (run again with `--resume <workflow id>`).
"""

import argparse
import os
import sys
from typing import Any

import httpx

from countersign_client import (
    ApprovalFailed,
    ApprovalPending,
    ApprovalRejected,
    Client,
    approval_required,
)

TOOL = "refund_payment"
DECLARATION = {
    "name": TOOL,
    "description": "Refund (part of) a customer's payment for an order, in the order's currency",
    "args_schema": {
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "pattern": "^[A-Z]-[0-9]+$"},
            "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 10000},
        },
        "required": ["order_id", "amount"],
        "additionalProperties": False,
    },
    "side_effect": "EXTERNAL",
    "risk": "MEDIUM",
}


def declare_once(url: str, admin_key: str) -> None:
    """The tool is the tenant's own: its ADMIN declares it once (a second declaration would be version 2)."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        if http.get(f"/tools/{TOOL}").status_code == 404:
            http.post("/tools", json=DECLARATION).raise_for_status()
            print(f"declared {TOOL}", flush=True)


def refunder(client: Client, timeout: float) -> Any:
    @approval_required(
        client,
        tool=TOOL,
        summary=lambda order_id, amount: f"Refund {amount:.2f} for order {order_id}",
        context=lambda order_id, amount: f"The customer of {order_id} asked for a refund by chat.",
        timeout=timeout,
    )
    def refund_payment(order_id: str, amount: float) -> dict[str, Any]:
        # Here the payment provider's API would be called; it runs only once approved, exactly as approved.
        print(f"refunding {amount:.2f} on {order_id}", flush=True)
        return {"refund_id": f"rf-{order_id}", "order_id": order_id, "amount": amount}

    return refund_payment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("order_id", nargs="?")
    parser.add_argument("amount", nargs="?", type=float)
    parser.add_argument("--resume", metavar="WORKFLOW_ID", help="continue after a pending approval")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for a decision")
    args = parser.parse_args(argv)
    url = os.environ.get("COUNTERSIGN_API_URL", "http://127.0.0.1:8000")
    admin_key = os.environ.get("COUNTERSIGN_ADMIN_KEY")
    if admin_key:
        declare_once(url, admin_key)
    with Client(url, api_key=os.environ["COUNTERSIGN_API_KEY"], timeout=30) as client:
        refund_payment = refunder(client, args.timeout)
        try:
            if args.resume:
                receipt = refund_payment.resume(args.resume)
            else:
                if args.order_id is None or args.amount is None:
                    parser.error("give ORDER_ID and AMOUNT, or --resume WORKFLOW_ID")
                print(f"asking for approval to refund {args.amount:.2f} on {args.order_id}", flush=True)
                receipt = refund_payment(args.order_id, args.amount)
        except ApprovalRejected as rejected:
            print(f"rejected: {rejected.reason}", flush=True)
            return 1
        except ApprovalPending as pending:
            print(f"still waiting: resume with --resume {pending.workflow_id}", flush=True)
            return 3
        except ApprovalFailed as failed:
            print(f"failed: {failed}", flush=True)
            return 1
    print(f"refunded: {receipt}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

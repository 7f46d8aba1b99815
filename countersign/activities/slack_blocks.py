"""What a Slack "decision needed" message looks like (Block Kit), and how an update shows what became of
it. Shared by the worker's Slack channel (posting, updating stale messages) and the gateway (updating
after a decision made in Slack).

The message's `text` (the notification fallback Slack shows in alerts) and its header are built from
deterministic fields only: the tool, the requester's name, the step, the workflow id. The summary a model
(or a caller) wrote is shown in the body, quoted and labelled as theirs. Everything shown in mrkdwn is
escaped, so no value can mention `@channel`, link elsewhere or break out of its quote.

Buttons carry the workflow id, the step index and the proposal version, and nothing else: who clicked
is what Slack signs (the user id), never a value of ours coming back.
"""

import json
from typing import Any

from countersign.models.channels import DecisionPrompt

APPROVE = "countersign_approve"
REJECT = "countersign_reject"
OPEN = "countersign_open"
ACTIONS_BLOCK = "countersign_decide"
STATUS_BLOCK = "countersign_status"
# Block Kit's limits: a section's text, a header, a button's value.
_SECTION_CHARS = 2900
_HEADER_CHARS = 150
_VALUE_CHARS = 2000

Blocks = list[dict[str, Any]]


def escape(text: str) -> str:
    """Slack's three control characters in mrkdwn: nothing shown can become a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(text: str, limit: int) -> str:
    flat = "".join(c if c.isprintable() else " " for c in text)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text if len(text) <= _SECTION_CHARS else text[:_SECTION_CHARS] + "…"}


def _quoted(text: str) -> str:
    return "\n".join(f">{escape(line)}" for line in (text.splitlines() or [""]))


def _code(value: str) -> str:
    # A fence inside the value would end the code block early.
    return "```" + escape(value.replace("```", "'''")) + "```"


def button_value(prompt: DecisionPrompt) -> str:
    value = json.dumps(
        {"w": prompt.workflow_id, "s": prompt.step_index, "v": prompt.proposal_version},
        separators=(",", ":"),
    )
    if len(value) > _VALUE_CHARS:
        raise ValueError("workflow id too long for a Slack button")
    return value


def request_url(public_url: str, workflow_id: str) -> str:
    return f"{public_url}/ui#/requests/{workflow_id}"


def fallback_text(prompt: DecisionPrompt) -> str:
    """The notification text: deterministic fields only, never the summary."""
    return _plain(
        f"Approval needed: {prompt.tool} for {prompt.requester_name}, step {prompt.step_index + 1} of "
        f"{prompt.total_steps} [{prompt.workflow_id}]",
        300,
    )


def decision_blocks(prompt: DecisionPrompt, public_url: str) -> Blocks:
    """The message asking `prompt`'s reviewers to decide."""
    waiting = ", ".join(str(role) for role in prompt.awaiting)
    fields = [
        f"*Request*\n`{escape(prompt.workflow_id)}`",
        f"*Requested by*\n{escape(prompt.requester_name)}",
        f"*Step*\n{prompt.step_index + 1} of {prompt.total_steps}: {prompt.quorum} x {escape(waiting)} "
        f"({prompt.approvals} of {prompt.quorum} approved)",
        f"*Proposal*\nversion {prompt.proposal_version}",
        f"*Confidence*\n{prompt.confidence:.0%}" + (f", risk {escape(prompt.risk)}" if prompt.risk else ""),
        f"*SLA*\n{escape(prompt.sla_due_at) if prompt.sla_due_at else 'none'}",
    ]
    args = json.dumps(prompt.args, indent=2, sort_keys=True, default=str)
    findings = "\n".join(
        f"• `{escape(f.code)}`" + (f" ({escape(f.field)})" if f.field else "") + f": {escape(f.message)}"
        for f in prompt.findings
    )
    blocks: Blocks = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _plain(f"Approval needed: {prompt.tool}", _HEADER_CHARS)},
        },
        {"type": "section", "fields": [_mrkdwn(field) for field in fields]},
        {"type": "section", "text": _mrkdwn(f"*Tool* `{escape(prompt.tool)}` with\n{_code(args)}")},
        {"type": "section", "text": _mrkdwn(f"*Findings*\n{findings or 'none'}")},
        {
            "type": "section",
            "text": _mrkdwn(f"*{summary_heading(prompt)}*\n{_quoted(prompt.quoted_summary)}"),
        },
        actions(prompt, public_url),
    ]
    return blocks


def summary_heading(prompt: DecisionPrompt) -> str:
    """Whose summary it is: the AI's or the caller's words (unverified), or the line Countersign built
    from an edited version's args, which is no one's words to quote as theirs."""
    if prompt.summary_author == "countersign":
        return "Summary (from the edited arguments):"
    author = "The caller's" if prompt.summary_author == "caller" else "The AI's"
    return f"{author} summary (unverified):"


def actions(prompt: DecisionPrompt, public_url: str, *, decide: bool = True) -> dict[str, Any]:
    value = button_value(prompt)
    buttons: Blocks = []
    if decide:
        buttons += [
            {
                "type": "button",
                "action_id": APPROVE,
                "style": "primary",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": value,
            },
            {
                "type": "button",
                "action_id": REJECT,
                "style": "danger",
                "text": {"type": "plain_text", "text": "Reject"},
                "value": value,
            },
        ]
    buttons.append(
        {
            "type": "button",
            "action_id": OPEN,
            "text": {"type": "plain_text", "text": "Open"},
            "url": request_url(public_url, prompt.workflow_id),
        }
    )
    return {"type": "actions", "block_id": ACTIONS_BLOCK, "elements": buttons}


def with_status(blocks: Blocks, status: str, *, still_open: bool = False) -> Blocks:
    """The message as posted, with `status` (plain words of ours, escaped here) shown last, and without
    its Approve and Reject buttons unless the step still waits on it (`still_open`: a quorum step that
    needs more approvals). Any status shown before is replaced."""
    shown: Blocks = []
    for block in blocks:
        if block.get("block_id") == STATUS_BLOCK:
            continue
        if block.get("block_id") == ACTIONS_BLOCK and not still_open:
            kept = [e for e in block.get("elements", []) if e.get("action_id") not in (APPROVE, REJECT)]
            block = {**block, "elements": kept}
        shown.append(block)
    shown.append({"type": "section", "block_id": STATUS_BLOCK, "text": _mrkdwn(f"*{escape(status)}*")})
    return shown


def reject_modal(workflow_id: str, private_metadata: str) -> dict[str, Any]:
    """The modal Reject opens: the reason is required, and becomes the decision's notes."""
    return {
        "type": "modal",
        "callback_id": REJECT,
        "private_metadata": private_metadata,
        "title": {"type": "plain_text", "text": "Reject the request"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "Why? (kept in the audit trail)"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "reason",
                    "multiline": True,
                    "min_length": 1,
                    "max_length": 4000,
                },
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Request `{escape(workflow_id)}`"}]},
        ],
    }

"""What a "decision needed" message states about a proposal: the same facts, in the same words, in the
email's text and HTML parts and on the confirmation page behind its links (api/link_pages.py).

Everything here comes from a `DecisionPrompt`, built from the workflow's validated state. The one text
a model (or a caller) wrote, the summary, is kept apart: `summary_label` names whose words they are,
and every rendering shows them quoted, never as the message's own. The HTML helpers escape every value
they are given, model text or not: an argument may hold anything.
"""

import html
import json
from datetime import datetime

from countersign.models.channels import DecisionPrompt

# Links open the inbox here: the page selects the request once the reviewer has signed in (app.js).
INBOX_PATH = "/ui#/requests/"
LINK_PATH = "/links/"


def inbox_url(public_url: str, workflow_id: str) -> str:
    return f"{public_url}{INBOX_PATH}{workflow_id}"


def link_url(public_url: str, token: str) -> str:
    return f"{public_url}{LINK_PATH}{token}"


def when(iso: str | None) -> str:
    """An instant as people read it (UTC, to the minute); 'none' when there is none."""
    if not iso:
        return "none"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return moment.strftime("%Y-%m-%d %H:%M %Z").strip() or iso


def args_text(prompt: DecisionPrompt) -> str:
    return json.dumps(prompt.args, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def findings_lines(prompt: DecisionPrompt) -> list[str]:
    return [f"{f.code}: {f.message}" + (f" ({f.field})" if f.field else "") for f in prompt.findings] or [
        "none"
    ]


def facts(prompt: DecisionPrompt) -> list[tuple[str, str]]:
    """Label and value, one row each; the arguments and findings are shown on their own below."""
    awaiting = " | ".join(prompt.awaiting) or "a named reviewer"
    return [
        ("Request", prompt.workflow_id),
        ("Requested by", prompt.requester_name),
        (
            "Step",
            f"{prompt.step_index + 1} of {prompt.total_steps}, awaiting {awaiting} "
            f"({prompt.approvals} of {prompt.quorum} approvals)",
        ),
        ("Action", prompt.tool),
        ("Proposal version", str(prompt.proposal_version)),
        ("Confidence", f"{prompt.confidence:.0%}"),
        ("Risk", prompt.risk or "unknown"),
        ("SLA due", when(prompt.sla_due_at)),
        ("Decide by", when(prompt.expires_at)),
    ]


def summary_label(prompt: DecisionPrompt) -> str:
    if prompt.summary_author == "countersign":
        # Built by Countersign from an edited version's args: not anyone's words to quote as theirs.
        return "Summary (from the edited arguments)"
    who = "The caller's" if prompt.summary_author == "caller" else "The AI's"
    return f"{who} summary (their words, unverified)"


def facts_text(prompt: DecisionPrompt) -> str:
    width = max(len(label) for label, _ in facts(prompt)) + 2
    lines = [f"{label + ':':<{width}}{value}" for label, value in facts(prompt)]
    lines += ["", "Arguments:", *(f"  {line}" for line in args_text(prompt).splitlines())]
    lines += ["", "Findings:", *(f"  - {line}" for line in findings_lines(prompt))]
    lines += ["", f"{summary_label(prompt)}:", *quoted_lines(prompt.quoted_summary)]
    return "\n".join(lines)


def quoted_lines(text: str) -> list[str]:
    return [f"> {line}" for line in (text.splitlines() or [""])]


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def facts_html(prompt: DecisionPrompt) -> str:
    """A table of the facts, the arguments, the findings and the quoted summary; every value escaped."""
    rows = "".join(f"<tr><th>{e(label)}</th><td>{e(value)}</td></tr>" for label, value in facts(prompt))
    findings = "".join(f"<li>{e(line)}</li>" for line in findings_lines(prompt))
    return (
        f"<table class='facts'>{rows}</table>"
        f"<h3>Arguments</h3><pre class='args'>{e(args_text(prompt))}</pre>"
        f"<h3>Findings</h3><ul class='findings'>{findings}</ul>"
        f"<h3>{e(summary_label(prompt))}</h3>"
        f"<blockquote class='quoted'><pre>{e(prompt.quoted_summary)}</pre></blockquote>"
    )

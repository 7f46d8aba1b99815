"""The HTML of a decision link's pages (api/routes/links.py): the confirmation form, the outcome, or why
the link decides nothing. Every value is escaped; the proposal's facts are rendered as in the email
(activities/decision_facts.py), the summary quoted as its author's. No script at all, and the style is a
file (`/ui/links.css`): the gateway's Content-Security-Policy allows nothing inline.
"""

from fastapi.responses import HTMLResponse

from countersign.activities.decision_facts import e, facts_html
from countersign.api.services.link_outcomes import CSRF_FIELD, LinkPage

# The answers must not be kept by a cache or a proxy, nor leak the link through a Referer.
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}


def _form(page: LinkPage) -> str:
    if page.kind != "confirm" or page.prompt is None or page.csrf is None:
        return ""
    version = page.prompt.proposal_version
    if page.action == "reject":
        label, required, button = "Reason (required)", " required", f"Reject version {version}"
    else:
        label, required, button = "Notes (optional)", "", f"Approve version {version}"
    # No `action`: the form posts to this page's own address, whatever prefix a proxy serves it under.
    return (
        f"<form method='post' class='{e(page.action)}'>"
        f"<input type='hidden' name='{CSRF_FIELD}' value='{e(page.csrf)}'>"
        f"<label for='notes'>{label}</label>"
        f"<textarea id='notes' name='notes' rows='3' maxlength='4000'{required}></textarea>"
        f"<button type='submit'>{e(button)}</button></form>"
    )


def render(page: LinkPage) -> str:
    facts = facts_html(page.prompt) if page.prompt is not None and page.kind == "confirm" else ""
    if page.request is not None and facts:
        facts += f"<h3>The request</h3><blockquote class='quoted'><pre>{e(page.request)}</pre></blockquote>"
    inbox = f"<p><a href='{e(page.inbox)}'>Open the request in the inbox</a></p>" if page.inbox else ""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<meta name='referrer' content='no-referrer'><meta name='robots' content='noindex'>"
        f"<title>{e(page.title)} · Countersign</title>"
        # Relative: /links/<token> -> /ui/links.css, under any prefix a proxy adds.
        "<link rel='stylesheet' href='../ui/links.css'></head>"
        f"<body class='link-page {e(page.kind)}'><main>"
        f"<h1>{e(page.title)}</h1><p class='message' role='status'>{e(page.message)}</p>"
        f"{facts}{_form(page)}{inbox}</main></body></html>"
    )


def response(page: LinkPage) -> HTMLResponse:
    headers = dict(HEADERS)
    if page.status == 503:
        headers["Retry-After"] = "5"
    return HTMLResponse(render(page), status_code=page.status, headers=headers)

"""`/links/{token}`: the confirmation page behind an email's Approve and Reject links (docs/channels.md).

Authenticated by the link token, not by an API key: whoever holds the link acts as the one person it
was sent to, once. GET only shows the page (a scanner's fetch decides nothing); the page's form POSTs
back with its CSRF value. The logic is api/services/link_decisions.py, the HTML api/link_pages.py. Not
in the OpenAPI: these are pages for people's browsers, not an API.
"""

from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from countersign.api import link_pages
from countersign.api.services.link_decisions import LinkDecisions
from countersign.api.services.link_outcomes import CSRF_COOKIE, CSRF_FIELD, LinkForm, csrf_value

router = APIRouter(prefix="/links", tags=["links"], include_in_schema=False)
MAX_FIELDS = 8
# The CSRF cookie outlives a page left open for a while, not the browser session.
CSRF_COOKIE_SECONDS = 3600


async def _decisions(request: Request) -> LinkDecisions:
    service: LinkDecisions = request.app.state.link_decisions
    return service


LinkDecisionsDep = Annotated[LinkDecisions, Depends(_decisions)]


def _form(body: bytes) -> dict[str, str]:
    """An urlencoded form's fields (the first value of each); anything else reads as no fields."""
    fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=MAX_FIELDS, keep_blank_values=True)
    return {name: values[0] for name, values in fields.items() if values}


@router.get("/{token}", response_class=HTMLResponse)
async def show_link(token: str, request: Request, decisions: LinkDecisionsDep) -> HTMLResponse:
    page = await decisions.show(token, csrf_value(request.cookies.get(CSRF_COOKIE)))
    response = link_pages.response(page)
    if page.csrf is not None:
        public_url: str = request.app.state.settings.public_url
        response.set_cookie(
            CSRF_COOKIE,
            page.csrf,
            max_age=CSRF_COOKIE_SECONDS,
            # Sent back only to this link's own page, only from this site, never to scripts.
            path=f"{urlsplit(public_url).path}/links/{token}",
            secure=public_url.startswith("https:") or request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
    return response


@router.post("/{token}", response_class=HTMLResponse)
async def use_link(token: str, request: Request, decisions: LinkDecisionsDep) -> HTMLResponse:
    try:
        fields = _form(await request.body())
    except ValueError:  # more fields than a confirmation has
        fields = {}
    form = LinkForm(
        csrf_cookie=request.cookies.get(CSRF_COOKIE), csrf=fields.get(CSRF_FIELD), notes=fields.get("notes")
    )
    return link_pages.response(await decisions.submit(token, form))

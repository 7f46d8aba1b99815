"""What a decision link's page says (api/link_pages.py renders it): the confirmation, the outcome, or
why the link decides nothing; and the CSRF value of the confirmation form (double submit: the same
random value in a cookie scoped to the link and in the form, compared in constant time)."""

import hmac
import re
import secrets
from dataclasses import dataclass

from countersign.models.channels import DecisionPrompt
from countersign.models.links import LinkAction, LinkProblem

CSRF_COOKIE = "countersign_link_csrf"
CSRF_FIELD = "csrf"
# secrets.token_urlsafe(32): 43 characters.
_CSRF_FORMAT = re.compile(r"^[A-Za-z0-9_-]{43}$")


def csrf_value(cookie: str | None) -> str:
    """The browser's value when it has one (two tabs of one link both work), else a new one."""
    return cookie if cookie is not None and _CSRF_FORMAT.match(cookie) else secrets.token_urlsafe(32)


def csrf_holds(cookie: str | None, posted: str | None) -> bool:
    if not cookie or not posted or not _CSRF_FORMAT.match(cookie):
        return False
    return hmac.compare_digest(cookie.encode(), posted.encode())


@dataclass(frozen=True)
class LinkForm:
    """What the confirmation form posted, and the CSRF cookie it came with."""

    csrf_cookie: str | None
    csrf: str | None
    notes: str | None


@dataclass(frozen=True)
class LinkPage:
    """`kind`: confirm (the form: `prompt`, `request`, `action`, `csrf`), done, refused, sign_in, retry."""

    kind: str
    status: int
    title: str
    message: str
    prompt: DecisionPrompt | None = None
    action: LinkAction | None = None
    csrf: str | None = None
    inbox: str | None = None
    # The request as the requester wrote it (shown quoted, as the email shows it).
    request: str | None = None


_PROBLEMS = {
    LinkProblem.UNKNOWN: (404, "This link is not valid", "It may be mistyped, or not one Countersign sent."),
    LinkProblem.USED: (
        410,
        "This link was already used",
        "A decision link works once: this one, or the other button of the same message, was used.",
    ),
    LinkProblem.EXPIRED: (410, "This link has expired", "The step it was sent for has passed its deadline."),
}


def problem(found: LinkProblem) -> LinkPage:
    status, title, message = _PROBLEMS[found]
    return LinkPage("refused", status, title, message)


def no_longer(why: str, inbox: str) -> LinkPage:
    return LinkPage("refused", 409, "This link no longer applies", why, inbox=inbox)


ENDED = "The request has ended and is no longer kept: this link decides nothing."


def disabled(inbox: str) -> LinkPage:
    message = "The reviewer this link was sent to is disabled or no longer exists: it decides nothing."
    return LinkPage("refused", 403, "This link cannot be used", message, inbox=inbox)


def sign_in(inbox: str) -> LinkPage:
    message = "This step is decided in the inbox, after you sign in: open the request there."
    return LinkPage("sign_in", 403, "Sign in to decide", message, inbox=inbox)


def retry(inbox: str) -> LinkPage:
    message = "Countersign could not reach its workflow engine just now. Nothing was decided: try again."
    return LinkPage("retry", 503, "Try again in a moment", message, inbox=inbox)


def unverified() -> LinkPage:
    message = "Open the link from your email again, and confirm on the page it shows."
    return LinkPage("refused", 403, "This confirmation could not be verified", message)

"""Browser hardening headers (api/security_headers.py) on the real app: a strict Content-Security-Policy
and anti-framing headers on the inbox, the stream page and every API answer (refusals included), a
policy that still lets the API docs load their CDN scripts, and pages with no inline script or style for
the strict policy to break. tests/api/test_inbox_ui.py checks that a browser enforces it."""

import re
from html.parser import HTMLParser

import httpx
import pytest

from countersign.api.security_headers import ALWAYS, DOCS_CSP, STRICT_CSP
from tests.api.conftest import Api

PAGES = ["/ui/", "/ui/index.html", "/ws-test/graph-default-0123"]
FILES = ["/ui/app.js", "/ui/form.js", "/ui/style.css", "/ui/ws-test.js", "/ui/ws-test.css", "/ui/favicon.svg"]
DOCS = ["/docs", "/docs/oauth2-redirect", "/redoc"]


def assert_hardened(response: httpx.Response, policy: str = STRICT_CSP) -> None:
    assert response.headers["content-security-policy"] == policy, (response.url, response.headers)
    for name, value in ALWAYS.items():
        assert response.headers[name] == value, (response.url, name)


def directives(policy: str) -> dict[str, str]:
    return dict(part.strip().partition(" ")[::2] for part in policy.split(";"))


def test_the_strict_policy_says_what_the_finding_asked() -> None:
    strict = directives(STRICT_CSP)
    assert strict == {
        "default-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    assert "unsafe" not in STRICT_CSP
    # The docs' policy restricts nothing they load, and everything else the strict one does.
    docs = directives(DOCS_CSP)
    assert not any(name.endswith("-src") and name != "object-src" for name in docs)
    assert docs["frame-ancestors"] == "'none'" and docs["object-src"] == "'none'"


@pytest.mark.parametrize("path", PAGES + FILES)
async def test_the_pages_and_their_files_are_hardened(api: Api, path: str) -> None:
    response = await api.http.get(path)
    assert response.status_code == 200, (path, response.text[:200])
    assert_hardened(response)


class InlineFinder(HTMLParser):
    """What a strict CSP would refuse in a page: inline scripts and styles, event handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "style" or "style" in names:
            self.inline.append(f"<{tag}> style")
        self.inline += [f"<{tag} {name}>" for name in names if name.startswith("on")]
        if tag == "script" and "src" not in names:
            self._in = tag
        for name, value in attrs:
            scheme = (value or "").strip().lower()
            if name in ("href", "src", "action") and scheme.startswith(("javascript:", "data:")):
                self.inline.append(f"<{tag} {name}={value}>")

    def handle_data(self, data: str) -> None:
        if self._in and data.strip():
            self.inline.append(f"<{self._in}> {data.strip()[:40]}")

    def handle_endtag(self, tag: str) -> None:
        self._in = None


@pytest.mark.parametrize("path", PAGES)
async def test_the_pages_hold_no_inline_script_or_style(api: Api, path: str) -> None:
    finder = InlineFinder()
    finder.feed((await api.http.get(path)).text)
    assert finder.inline == [], finder.inline


async def test_the_stream_page_names_its_run_in_an_attribute(api: Api) -> None:
    page = (await api.http.get("/ws-test/graph-default-0123")).text
    assert 'data-run-id="graph-default-0123"' in page
    assert not re.search(r"\{\{\w+\}\}", page)  # every placeholder filled in


@pytest.mark.parametrize("path", DOCS)
async def test_the_docs_keep_their_cdn_scripts_and_cannot_be_framed(api: Api, path: str) -> None:
    response = await api.http.get(path)
    assert response.status_code == 200, path
    assert_hardened(response, DOCS_CSP)


async def test_api_answers_and_refusals_are_hardened_too(api: Api) -> None:
    assert_hardened(await api.http.get("/principals/me", headers=api.as_("admin")))
    assert_hardened(await api.http.get("/openapi.json"))
    assert_hardened(await api.http.get("/principals/me"))  # 401
    assert_hardened(await api.http.get("/no/such/page"))  # 404
    too_large = await api.http.post("/workflows", content=b"x" * (2 * 1024 * 1024), headers=api.as_("admin"))
    assert too_large.status_code == 413
    assert_hardened(too_large)
    nan = await api.http.post(
        "/workflows",
        content=b'{"text": "hello there", "fields": {"zzz": NaN}}',
        headers={**api.as_("admin"), "Content-Type": "application/json"},
    )
    assert nan.status_code == 400
    assert_hardened(nan)

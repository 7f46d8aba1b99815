"""The reviewer's inbox at /ui in a real browser (Debian's Chromium driven by Playwright) against the real
gateway, worker and Temporal dev server: sign in, approve with `a`, reject with `r`, batch-approve with
`x x x A`, edit with `e`, and screenshots at desktop and phone widths. All of it under the gateway's
Content-Security-Policy (api/security_headers.py), which the last tests check the browser enforces: no
framing by another page, no inline script, and the stream page still streams."""

import asyncio
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Route, async_playwright, expect

from countersign.api.security_headers import STRICT_CSP
from countersign.models.enums import Role
from tests.api.conftest import Api, serving
from tests.api.test_graphs_api import APPROVAL_GRAPH
from tests.api.test_graphs_api import run as run_graph
from tests.api.test_workflows_api import FOLLOW_UP, decide, submit, waiting
from tests.helpers import eventually

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
async def team(api: Api) -> Api:
    """`api` with a requester and a manager of a tenant of their own: the dev server is shared by the
    whole suite, and an inbox lists every request of its tenant."""
    tenant = f"ui-{uuid.uuid4().hex[:8]}"
    keys = {
        name: (await api.app.state.principals.add(name, roles, tenant)).api_key
        for name, roles in (("requester", []), ("manager", [Role.MANAGER]))
    }
    return Api(http=api.http, keys=keys, app=api.app)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        await launched.close()


async def signed_in(browser: Browser, served: str, api: Api, who: str = "manager", **size: int) -> Page:
    page = await browser.new_page(
        viewport={"width": size.get("width", 1280), "height": size.get("height", 800)}
    )
    await page.add_init_script(RECORD_VIOLATIONS)
    await page.goto(f"http://{served}/ui/")
    await page.get_by_label("API key or token").fill(api.keys[who])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#who")).to_contain_text(who)
    await expect(page.locator("#count")).to_contain_text("(")  # the first load of the inbox is in
    await expect(page.get_by_role("button", name="Sign in")).to_be_hidden()
    return page


# Run by Playwright before the page's own scripts (and, like them, not inline: the CSP does not apply).
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


async def violations(page: Page) -> list[Any]:
    found: list[Any] = await page.evaluate("window.cspViolations")
    return found


async def state(api: Api, workflow_id: str) -> str:
    reply = await api.http.get(f"/workflows/{workflow_id}", headers=api.as_("requester"))
    return str(reply.json()["state"])


async def test_sign_in_refuses_a_bad_key_and_lists_what_waits(
    team: Api, served: str, browser: Browser
) -> None:
    workflow_id = await submit(team, FOLLOW_UP)
    await waiting(team, workflow_id)
    page = await browser.new_page()
    await page.goto(f"http://{served}/ui/")
    await page.get_by_label("API key or token").fill("not-a-key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not accepted")
    page = await signed_in(browser, served, team)
    row = page.locator(f'#items tr[data-id="{workflow_id}"]')
    await expect(row).to_contain_text("Follow up with ABC Logistics")
    # The requester's own request never appears in their own inbox.
    own = await signed_in(browser, served, team, "requester")
    await expect(own.locator("#empty")).to_be_visible()


async def test_approve_with_a_only_what_was_opened(team: Api, served: str, browser: Browser) -> None:
    workflow_id = await submit(team, FOLLOW_UP)
    await waiting(team, workflow_id)
    page = await signed_in(browser, served, team)
    await expect(page.locator(f'#items tr[data-id="{workflow_id}"]')).to_be_visible()
    # `a` before the request was read opens it instead of approving it.
    await page.keyboard.press("a")
    await expect(page.locator("#detail-title")).to_have_text(workflow_id)
    await expect(page.locator("#result")).to_contain_text("read it, then decide")
    assert await state(team, workflow_id) == "WAITING_FOR_APPROVAL"
    await expect(page.locator("#d-tool")).to_have_text("send_email")
    await expect(page.locator("#d-version")).to_contain_text("version 1")
    await page.keyboard.press("a")
    await expect(page.locator("#result")).to_contain_text(f"{workflow_id}: approved")
    assert await state(team, workflow_id) in ("APPROVED", "ACTION_EXECUTED")


async def test_a_callers_action_shows_its_tool_and_context(team: Api, served: str, browser: Browser) -> None:
    action = {
        "tool": "send_email",
        "args": {"to": "sales@abclogistics.com", "subject": "Pricing", "body": "Could we talk?"},
    }
    body = {"action": action, "summary": "Ask ABC about pricing", "context": {"crm_ticket": 4711}}
    workflow_id = await submit(team, body)
    await waiting(team, workflow_id)
    page = await signed_in(browser, served, team)
    await page.locator(f'#items tr[data-id="{workflow_id}"]').click()
    await expect(page.locator("#detail-title")).to_have_text(workflow_id)
    # No words from the caller: the request line says what it is from the tool alone.
    await expect(page.locator("#d-text")).to_have_text("A caller proposes send_email (no planner ran)")
    await expect(page.locator("#d-summary")).to_have_text("Ask ABC about pricing")
    await expect(page.locator("#d-context")).to_contain_text('"crm_ticket": 4711')


async def test_reject_with_r_needs_a_reason(team: Api, served: str, browser: Browser) -> None:
    workflow_id = await submit(team, FOLLOW_UP)
    await waiting(team, workflow_id)
    page = await signed_in(browser, served, team)
    await page.locator(f'#items tr[data-id="{workflow_id}"]').click()
    await expect(page.locator("#detail-title")).to_have_text(workflow_id)
    await page.keyboard.press("r")
    dialog = page.get_by_role("dialog", name="Reject")
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name="Reject").click()
    await expect(dialog.get_by_role("alert")).to_have_text("A rejection needs a reason.")
    assert await state(team, workflow_id) == "WAITING_FOR_APPROVAL"
    await dialog.get_by_label("Reason (required)").fill("We already have a quote")
    await dialog.get_by_role("button", name="Reject").click()
    await expect(page.locator("#result")).to_contain_text(f"{workflow_id}: rejected")
    assert await state(team, workflow_id) == "REJECTED"


async def test_batch_approve_three_with_x_x_x_A(
    team: Api, served: str, browser: Browser, tmp_path: Path
) -> None:
    ids = [await submit(team, FOLLOW_UP) for _ in range(3)]
    for workflow_id in ids:
        await waiting(team, workflow_id)
    page = await signed_in(browser, served, team)
    await expect(page.locator("#items tbody tr")).to_have_count(3)
    for key in ("x", "j", "x", "j", "x"):
        await page.keyboard.press(key)
    await expect(page.get_by_role("button", name="Approve selected (A) · 3")).to_be_visible()
    await page.screenshot(path=tmp_path / "inbox-1280x800.png")
    await page.keyboard.press("A")
    await expect(page.locator("#result")).to_contain_text("Approved 3 of 3")
    for workflow_id in ids:
        assert await state(team, workflow_id) in ("APPROVED", "ACTION_EXECUTED")


async def test_A_right_after_x_approves_what_x_selected(team: Api, served: str, browser: Browser) -> None:
    """`x` reads the request's proposal version before the row counts as selected; `A` pressed before
    that read came back said "Select requests with x first." The read is held back here (by the
    browser, in front of the real gateway) so `A` always comes first, as it does for a quick typist."""
    first, second = [await submit(team, FOLLOW_UP) for _ in range(2)]
    for workflow_id in (first, second):
        await waiting(team, workflow_id)
    page = await signed_in(browser, served, team)
    await expect(page.locator("#items tbody tr")).to_have_count(2)

    async def slowly(route: Route) -> None:
        await asyncio.sleep(1.5)
        await route.continue_()

    await page.route(re.compile(r"/workflows/[^/?]+$"), slowly)
    current = await page.locator("#items tr.current").get_attribute("data-id")
    # Selected and unselected again while the read is out: `A` then has nothing to approve.
    await page.keyboard.press("x")
    await page.keyboard.press("x")
    await page.keyboard.press("A")
    await expect(page.locator("#result")).to_have_text("Select requests with x first.")
    assert await state(team, first) == await state(team, second) == "WAITING_FOR_APPROVAL"
    # Selected, and `A` at once: it waits for the read and approves that one request.
    await page.keyboard.press("x")
    await page.keyboard.press("A")
    await expect(page.locator("#result")).to_contain_text("Approved 1 of 1")
    other = second if current == first else first
    assert await state(team, str(current)) in ("APPROVED", "ACTION_EXECUTED")
    assert await state(team, other) == "WAITING_FOR_APPROVAL"


async def test_A_pressed_twice_sends_one_batch(team: Api, served: str, browser: Browser) -> None:
    first = await submit(team, FOLLOW_UP)
    await waiting(team, first)
    page = await signed_in(browser, served, team)
    await expect(page.locator("#items tbody tr")).to_have_count(1)
    batches: list[str] = []

    async def slowly(route: Route) -> None:  # the batch is still on its way when `A` comes again
        batches.append(route.request.method)
        await asyncio.sleep(1.5)
        await route.continue_()

    await page.route(re.compile(r"/approvals/batch$"), slowly)
    await page.keyboard.press("x")
    await expect(page.get_by_role("button", name="Approve selected (A) · 1")).to_be_visible()
    await page.keyboard.press("A")
    await page.keyboard.press("A")
    await expect(page.locator("#result")).to_have_text("The batch is on its way…")
    await expect(page.locator("#result")).to_contain_text("Approved 1 of 1")
    assert batches == ["POST"]
    assert await state(team, first) in ("APPROVED", "ACTION_EXECUTED")


async def test_edit_args_with_e_makes_a_new_version(
    team: Api, served: str, browser: Browser, tmp_path: Path
) -> None:
    workflow_id = await submit(team, FOLLOW_UP)
    await waiting(team, workflow_id)
    page = await signed_in(browser, served, team)
    await page.keyboard.press("Enter")
    await expect(page.locator("#detail-title")).to_have_text(workflow_id)
    await page.keyboard.press("e")
    dialog = page.get_by_role("dialog", name="Edit arguments")
    subject = dialog.get_by_label("Subject (required)")
    await expect(subject).to_be_visible()
    # The form checks the schema before sending: an invalid address is refused by the browser.
    recipient = dialog.get_by_label("To (required)")
    await recipient.fill("not an address")
    await dialog.get_by_role("button", name="Save as a new version").click()
    await expect(dialog).to_be_visible()
    await recipient.fill("pricing@abclogistics.com")
    await subject.fill("Pricing for Q3")
    await dialog.get_by_role("button", name="Save as a new version").click()
    await expect(page.locator("#d-version")).to_contain_text("version 2")
    view = (await team.http.get(f"/workflows/{workflow_id}", headers=team.as_("manager"))).json()
    assert view["proposal"]["version"] == 2
    assert view["proposal"]["args"]["subject"] == "Pricing for Q3"
    assert view["proposal"]["args"]["to"] == "pricing@abclogistics.com"
    await page.screenshot(path=tmp_path / "detail-1280x800.png", full_page=True)
    phone = await signed_in(browser, served, team, width=390, height=844)
    await phone.keyboard.press("Enter")
    await expect(phone.locator("#detail-title")).to_have_text(workflow_id)
    await phone.screenshot(path=tmp_path / "inbox-390x844.png", full_page=True)
    assert (tmp_path / "inbox-390x844.png").stat().st_size > 10_000


async def test_help_and_filter_from_the_keyboard(team: Api, served: str, browser: Browser) -> None:
    workflow_id = await submit(team, FOLLOW_UP)
    await waiting(team, workflow_id)
    page = await signed_in(browser, served, team)
    await page.keyboard.press("?")
    await expect(page.get_by_role("dialog", name="Keyboard")).to_be_visible()
    await page.keyboard.press("Escape")
    await page.keyboard.press("/")
    await expect(page.get_by_label("Filter")).to_be_focused()
    await page.keyboard.type("no such request")
    await expect(page.locator("#items tbody tr")).to_have_count(0)
    await page.get_by_label("Filter").fill("ABC Logistics")
    await expect(page.locator(f'#items tr[data-id="{workflow_id}"]')).to_be_visible()


# --- Under the Content-Security-Policy ------------------------------------------------------------------


async def test_the_chain_shows_a_step_of_several_roles(several: Api, browser: Browser) -> None:
    """A step of `any_of` roles reads as a count of people from a list, with the role each one used."""
    workflow_id = await submit(several, FOLLOW_UP)
    await waiting(several, workflow_id)
    status, body = await decide(several, workflow_id, "finance", decision="approved")
    assert status == 200, body
    async with serving(several.app) as served:
        page = await signed_in(browser, served, several, "director")
        await page.locator(f'#items tr[data-id="{workflow_id}"]').click()
        await expect(page.locator("#detail-title")).to_have_text(workflow_id)
        await expect(page.locator("#d-chain")).to_have_text(
            "2 of FINANCE | DIRECTOR | ADMIN: waiting — finance approved as FINANCE"
        )
        await page.close()


async def test_the_inbox_works_under_its_csp_without_a_violation(
    team: Api, served: str, browser: Browser
) -> None:
    workflow_id = await submit(team, FOLLOW_UP)
    await waiting(team, workflow_id)
    page = await signed_in(browser, served, team)  # its CSP: test_security_headers.py
    await page.keyboard.press("Enter")
    await expect(page.locator("#detail-title")).to_have_text(workflow_id)
    await page.keyboard.press("e")  # the form generated from the tool's schema
    edit = page.get_by_role("dialog", name="Edit arguments")
    await expect(edit.get_by_label("Subject (required)")).to_be_visible()
    await page.keyboard.press("Escape")
    await page.keyboard.press("?")
    await expect(page.get_by_role("dialog", name="Keyboard")).to_be_visible()
    assert await violations(page) == []


async def test_another_site_cannot_frame_the_inbox(served: str, browser: Browser, api: Api) -> None:
    """Clickjacking: a page of another origin frames the inbox under something to click or type over."""
    page = await browser.new_page()
    refusals: list[str] = []
    page.on("console", lambda message: refusals.append(message.text))
    # The framing page is about:blank, another origin; `frame-ancestors 'none'` refuses any, ours too.
    await page.set_content(f'<iframe id="f" src="http://{served}/ui/"></iframe>')
    await page.wait_for_timeout(1000)
    framed = page.frame_locator("#f")
    assert await framed.locator("#sign-in").count() == 0  # nothing of the inbox was shown
    assert any("frame-ancestors" in text or "X-Frame-Options" in text for text in refusals), refusals


async def test_an_injected_inline_script_does_not_run(served: str, browser: Browser, api: Api) -> None:
    """Were some text ever rendered as HTML, a script in it would not run: the CSP allows files only."""
    page = await browser.new_page()
    await page.add_init_script(RECORD_VIOLATIONS)
    await page.goto(f"http://{served}/ui/")
    await page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.injected = true";
            document.body.append(script);
            const img = document.createElement("img");
            img.setAttribute("onerror", "window.injected = true");
            img.src = "/no-such-image";
            document.body.append(img);
        }"""
    )
    await page.wait_for_timeout(500)
    assert await page.evaluate("window.injected") is None
    assert any(v.startswith("script-src") for v in await violations(page)), await violations(page)


async def test_the_stream_page_streams_under_its_csp(api: Api, served: str, browser: Browser) -> None:
    started = await api.http.post(
        "/graph/run",
        json={"graph_id": "demo-review", "input_data": "def f():\n    return 1\n"},
        headers=api.as_("requester"),
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    page = await browser.new_page()
    await page.add_init_script(RECORD_VIOLATIONS)
    response = await page.goto(f"http://{served}/ws-test/{run_id}")
    assert response is not None and response.headers["content-security-policy"] == STRICT_CSP
    await page.get_by_label("API key or token").fill(api.keys["requester"])
    await page.get_by_role("button", name="Stream").click()
    await expect(page.locator("#status")).to_have_text("COMPLETED", timeout=60_000)
    await expect(page.locator("#events li").first).to_contain_text("run_started")
    assert await violations(page) == []


@pytest.fixture
async def graph_team(team: Api) -> Api:
    """`team` with an ADMIN of its tenant, who stores the graph with an approval node the tests run."""
    me = await team.http.get("/principals/me", headers=team.as_("manager"))
    tenant = me.json()["principal"]["tenant"]
    admin = await team.app.state.principals.add("admin", [Role.ADMIN], tenant)
    keys = {**team.keys, "admin": admin.api_key}
    created = await team.http.post(
        "/graph/create", json=APPROVAL_GRAPH, headers={"Authorization": f"Bearer {admin.api_key}"}
    )
    assert created.status_code == 201, created.text
    return Api(http=team.http, keys=keys, app=team.app)


async def graph_status(api: Api, run_id: str) -> str:
    reply = await api.http.get(f"/graph/state/{run_id}", headers=api.as_("requester"))
    return str(reply.json()["status"])


async def waiting_run(api: Api) -> str:
    run_id = await run_graph(api, APPROVAL_GRAPH["id"], {"code": "def f():\n    return 1\n"})
    await eventually(lambda: graph_status(api, run_id), lambda s: s == "WAITING_FOR_APPROVAL")
    return run_id


async def test_a_graph_approval_node_is_a_row_decided_with_a(
    graph_team: Api, served: str, browser: Browser
) -> None:
    run_id = await waiting_run(graph_team)
    page = await signed_in(browser, served, graph_team)
    row = page.locator(f'#items tr[data-id="{run_id}"]')
    await expect(row).to_contain_text("Graph reviewed-review v1")
    await expect(row.locator(".badge.graph")).to_have_text("Graph")
    await row.click()
    # Opened from /graph/state: the node's prompt is what the reviewer reads.
    await expect(page.locator("#d-text")).to_contain_text("Analyse def f():")
    await expect(page.locator("#d-summary")).to_contain_text("approval node sign-off")
    await page.keyboard.press("a")
    await expect(page.locator("#result")).to_contain_text(f"{run_id}: approved")
    await eventually(lambda: graph_status(graph_team, run_id), lambda s: s == "COMPLETED", timeout=60)


async def test_x_then_A_batches_a_graph_run_beside_a_request(
    graph_team: Api, served: str, browser: Browser
) -> None:
    run_id = await waiting_run(graph_team)
    workflow_id = await submit(graph_team, FOLLOW_UP)
    await waiting(graph_team, workflow_id)
    page = await signed_in(browser, served, graph_team)
    await expect(page.locator("#items tbody tr")).to_have_count(2)
    for picked in (run_id, workflow_id):
        await page.locator(f'#items tr[data-id="{picked}"]').click()
        await page.keyboard.press("x")
    await expect(page.get_by_role("button", name="Approve selected (A) · 2")).to_be_visible()
    await page.keyboard.press("A")
    await expect(page.locator("#result")).to_contain_text("Approved 2 of 2")
    assert await state(graph_team, workflow_id) in ("APPROVED", "ACTION_EXECUTED")
    await eventually(lambda: graph_status(graph_team, run_id), lambda s: s == "COMPLETED", timeout=60)


async def test_r_rejects_a_graph_run_with_a_reason(graph_team: Api, served: str, browser: Browser) -> None:
    run_id = await waiting_run(graph_team)
    page = await signed_in(browser, served, graph_team)
    await page.locator(f'#items tr[data-id="{run_id}"]').click()
    await expect(page.locator("#d-text")).to_contain_text("Analyse def f():")
    # Nothing to edit on an approval node: `e` says so and opens no form.
    await page.keyboard.press("e")
    await expect(page.locator("#result")).to_contain_text("nothing to edit")
    await page.keyboard.press("r")
    dialog = page.get_by_role("dialog", name="Reject")
    await dialog.get_by_label("Reason (required)").fill("Not this sprint")
    await dialog.get_by_role("button", name="Reject").click()
    await expect(page.locator("#result")).to_contain_text(f"{run_id}: rejected")
    await eventually(lambda: graph_status(graph_team, run_id), lambda s: s == "REJECTED")

"""Links into the inbox (`/ui#/requests/{id}`, with `?decide=approve|reject` from a Teams card's buttons)
in a real browser against the real gateway, worker and Temporal dev server: the link opens the request and
puts the reviewer on the action, and nothing is decided until the signed-in reviewer confirms."""

from playwright.async_api import Browser, expect

from tests.api.conftest import Api
from tests.api.test_inbox_ui import browser, signed_in, state, team
from tests.api.test_workflows_api import FOLLOW_UP, submit, waiting
from tests.helpers import eventually

__all__ = ["browser", "team"]  # fixtures


async def channels(api: Api, workflow_id: str) -> list[str]:
    view = (await api.http.get(f"/workflows/{workflow_id}", headers=api.as_("manager"))).json()
    return [d["channel"] for step in view["chain"] for d in step["decisions"]]


async def test_a_link_opens_the_request_and_decides_nothing_until_confirmed(
    team: Api, served: str, browser: Browser
) -> None:
    first, second = await submit(team, FOLLOW_UP), await submit(team, FOLLOW_UP)
    await waiting(team, first)
    await waiting(team, second)
    page = await signed_in(browser, served, team)

    # Approve…: opened from outside (a new page load, through /ui's redirect to /ui/).
    await page.goto(f"http://{served}/ui#/requests/{first}?decide=approve&via=teams")
    await expect(page.locator("#detail-title")).to_have_text(first)
    await expect(page.locator("#approve")).to_be_focused()
    await expect(page.locator("#result")).to_contain_text("press Approve (a) to confirm")
    assert await state(team, first) == "WAITING_FOR_APPROVAL"  # opening the link decided nothing
    assert await page.evaluate("window.location.hash") == f"#/requests/{first}"  # a reload asks no more
    await page.keyboard.press("Enter")  # the reviewer confirms
    await eventually(lambda: state(team, first), lambda s: s != "WAITING_FOR_APPROVAL")
    assert await channels(team, first) == ["teams"]  # the card's button said where it came from

    # Reject…: followed in the open inbox (the hash changes), the reason dialog waits for the reviewer.
    await page.evaluate(f"window.location.hash = '#/requests/{second}?decide=reject'")
    await expect(page.locator("#reject-dialog")).to_be_visible()
    await expect(page.locator("#detail-title")).to_have_text(second)
    assert await state(team, second) == "WAITING_FOR_APPROVAL"
    await page.locator("#reason").fill("Not this quarter")
    await page.locator("#reject-form button[type=submit]").click()
    await eventually(lambda: state(team, second), lambda s: s == "REJECTED")
    assert await channels(team, second) == ["inbox"]  # a link from elsewhere: the inbox's own

    # A link with anything else in it opens the request and nothing more.
    await page.evaluate(f"window.location.hash = '#/requests/{first}?decide=yes'")
    await expect(page.locator("#detail-title")).to_have_text(first)
    await expect(page.locator("#reject-dialog")).to_be_hidden()

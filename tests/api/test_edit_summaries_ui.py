"""Issue 22, item 4, in the inbox at /ui (a real browser against the real gateway, worker and dev server):
a row and the detail pane show the current version's summary with whose words it is, and an edited
version shows Countersign's line about its args with the AI's summary of version 1 beside it, marked."""

from playwright.async_api import Browser, expect

from tests.api.conftest import Api
from tests.api.test_inbox_ui import browser, signed_in, team
from tests.api.test_workflows_api import FOLLOW_UP, submit, waiting

__all__ = ["browser", "team"]  # fixtures


async def test_an_edited_version_shows_its_own_summary_and_the_ais_of_version_1(
    team: Api, served: str, browser: Browser
) -> None:
    body: dict[str, object] = {**FOLLOW_UP}
    workflow_id = await submit(team, body)
    first = await waiting(team, workflow_id)
    proposal = first["proposal"]
    assert isinstance(proposal, dict)
    ai_words = proposal["summary"]
    page = await signed_in(browser, served, team)
    row = page.locator(f'#items tr[data-id="{workflow_id}"]')
    await expect(row.locator(".summary")).to_have_text(f"AI summary (unverified): {ai_words}")
    await row.click()
    await expect(page.locator("#d-summary")).to_have_text(ai_words)
    await expect(page.locator("#d-summary-by")).to_have_text("(the AI's words, unverified)")
    await expect(page.locator("#d-ai-summary")).to_be_hidden()

    edited = await team.http.post(
        f"/workflows/{workflow_id}/edit",
        json={"proposal_version": 1, "args": {**proposal["args"], "subject": "Pricing for Q3"}},
        headers=team.as_("manager"),
    )
    assert edited.status_code == 200, edited.text
    built = edited.json()["proposal"]["summary"]
    assert built.startswith("Email to sales@abclogistics.com: subject 'Pricing for Q3'")

    # The list refreshes on its own; the pane shows version 2 once opened again.
    await expect(row.locator(".summary")).to_have_text(
        f"Summary (from the edited arguments): {built}", timeout=15_000
    )
    await page.keyboard.press("Enter")
    await expect(page.locator("#d-version")).to_contain_text("version 2")
    await expect(page.locator("#d-summary")).to_have_text(built)
    await expect(page.locator("#d-summary-by")).to_have_text("(from the edited arguments)")
    await expect(page.locator("#d-ai-summary-term")).to_have_text("AI summary of v1 (unverified)")
    await expect(page.locator("#d-ai-summary")).to_have_text(ai_words)

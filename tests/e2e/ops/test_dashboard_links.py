"""The dashboard's record links view in a real headless Chromium."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.e2e.ops.test_dashboard import ARTIFACTS, browser, sign_in
from tests.support.service import AUTH, Service

__all__ = ["browser"]  # the fixture, shared with the dashboard's own test


async def test_a_records_links_linked_and_broken(service: Service, browser: Browser) -> None:
    broken = await service.client.post(
        "/api/v1/Agents/ErpSync/BreakActorLink",
        json={"ErpConnectionId": 2, "CrmRecordId": 1, "CrmActorType": "Contact"},
        headers=AUTH,
    )
    assert await broken.json() is True
    page = await browser.new_page(viewport={"width": 1280, "height": 700})
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    await page.goto(str(service.server.make_url("/ui/")))
    await sign_in(page)

    await page.get_by_role("link", name="Record links").click()
    await page.get_by_label("Record id").fill("1")
    await page.get_by_role("button", name="Show links").click()
    await expect(page.locator("#links-title")).to_have_text("Links of Contact 1")
    erp1 = page.locator('#links tr[data-connection-id="1"] td')
    await expect(erp1).to_have_text(
        [
            "ERP one (1)",
            "linked",
            "Customer E1-1",
            "name = Co 1, phone = 999, email = 1@crm, city = ∅",
        ]
    )
    erp2 = page.locator('#links tr[data-connection-id="2"] td')
    await expect(erp2.nth(1)).to_contain_text("broken by tje0")
    await expect(erp2.nth(2)).to_have_text("(Customer E2-1)")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "dashboard-links.png", full_page=True)
    # the one 401 is the session probe before signing in
    assert [e for e in console_errors if "401" not in e] == []

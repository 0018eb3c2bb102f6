"""The dashboard: the session + XSRF contract, and the page in a real headless Chromium."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, async_playwright, expect

from connectors.memory import MemoryStore
from engine.settings import NotificationSettings
from tests.support.ops import seed, settings_for, slow_push_settings
from tests.support.service import AUTH, Service
from tests.support.waiting import wait_for

# A shared 2-core machine can be slow; every expectation still waits on a condition.
expect.set_options(timeout=15_000)

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def records() -> int:
    return 6


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: apt-get install -y chromium"
    async with async_playwright() as playwright:
        # Playwright gives every launch a fresh temporary profile (--user-data-dir).
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        await launched.close()


async def sign_in(page: Page) -> None:
    await page.get_by_label("User name").fill("tje0")
    await page.get_by_label("Password").fill("Tje0")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#user")).to_have_text("tje0")


async def signed_in_page(service: Service, browser: Browser) -> tuple[Page, list[str]]:
    """A new page of the dashboard, signed in, and the console errors it logs from now on."""
    page = await browser.new_page(viewport={"width": 1280, "height": 860})
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    await page.goto(str(service.server.make_url("/ui/")))
    await sign_in(page)
    return page, console_errors


def unexpected(console_errors: list[str]) -> list[str]:
    """Console errors other than the 401 the first load gets before signing in."""
    return [e for e in console_errors if "status of 401" not in e]


async def refreshed(page: Page, times: int = 2) -> None:
    """Wait until the page's 1-s refresh has run ``times`` more times (it counts them)."""

    async def count() -> int:
        return int(await page.evaluate("Number(document.body.dataset.refreshes || 0)"))

    now = await count()
    await wait_for(count, lambda n: n >= now + times, timeout=15, what=f"{times} refreshes")


async def test_session_contract_guards_the_read_endpoints(service: Service) -> None:
    client = service.client
    tasks = "/api/v1/erpsync/tasks"
    wrong = await client.post("/api/session/login", json={"Username": "tje0", "Password": "x"})
    assert wrong.status == 401
    assert (await wrong.json())["Error"] is True
    assert (await client.get("/api/session")).status == 401

    login = await client.post("/api/session/login", json={"Username": "tje0", "Password": "Tje0"})
    assert login.status == 204
    session_cookie = login.cookies["erpsync_session"]
    assert session_cookie["httponly"]
    xsrf = login.cookies["XSRF-TOKEN"].value
    assert not login.cookies["XSRF-TOKEN"]["httponly"]
    assert await (await client.get("/api/session")).json() == {"User": "tje0"}

    assert (await client.get(tasks)).status == 401  # the cookie alone is not enough
    assert (await client.get(tasks, headers={"X-XSRF-TOKEN": "forged"})).status == 401
    assert (await client.get(tasks, headers={"X-XSRF-TOKEN": xsrf})).status == 200
    assert (await client.get(tasks, headers=AUTH)).status == 200  # Basic works as before

    assert (await client.post("/api/session/logout")).status == 401
    assert (await client.post("/api/session/logout", headers={"X-XSRF-TOKEN": xsrf})).status == 204
    assert (await client.get(tasks, headers={"X-XSRF-TOKEN": xsrf})).status == 401


async def test_dashboard_in_headless_chromium(service: Service, browser: Browser) -> None:
    failed = await service.finished(await service.resync(0, [2, 3, 4]))  # history to show
    assert failed["State"] == "Failed"
    ARTIFACTS.mkdir(exist_ok=True)
    page = await browser.new_page(viewport={"width": 1280, "height": 860})
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

    await page.goto(str(service.server.make_url("/ui/")))
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("User name").fill("tje0")
    await page.get_by_label("Password").fill("wrong")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#error")).to_have_text("Wrong user name or password.")
    await sign_in(page)
    assert "Tje0" not in await page.content()

    # Start a resync from the CRM for keys 1 and 2 through the form.
    await page.get_by_label("From").select_option(label="CRM (0)")
    await page.get_by_label("Internal key ids").fill("1, 2")
    await page.get_by_role("button", name="Start resync").click()
    await expect(page.locator("#resync-result")).to_have_text("Queued as task #2.")
    row = page.locator('tr[data-task-id="2"]')
    await expect(row.locator(".state")).to_have_text("Succeeded", timeout=30_000)
    await expect(row.locator(".progress")).to_contain_text("100%")
    await expect(page.locator('tr[data-task-id="1"] .state')).to_have_text("Failed")
    await page.screenshot(path=ARTIFACTS / "dashboard-tasks.png", full_page=True)

    # Its detail: outcomes per target and the field changes it made.
    await row.locator("td").nth(3).click()
    await expect(page.locator("#task-title")).to_contain_text("Task #2")
    await expect(page.locator("#task-state")).to_have_text("Succeeded")
    erp1 = page.locator('#targets tr[data-connection-id="1"]')
    await expect(erp1.locator("td")).to_have_text(["ERP one (1)", "2", "1", "1", "0", "0", "", "1"])
    await expect(page.locator("#failures-empty")).to_be_visible()
    # Key 2 was fixed by task 1 already; key 1 differed on both ERPs.
    await expect(page.locator("#changes tr")).to_have_count(2)
    await expect(page.locator("#changes")).to_contain_text("999")
    await page.screenshot(path=ARTIFACTS / "dashboard-task.png", full_page=True)

    # The failed task's detail names the failing record and the reason.
    await page.get_by_role("link", name="← All tasks").click()
    await page.locator('tr[data-task-id="1"] a').click()
    await expect(page.locator("#failures tr")).to_have_count(1)
    await expect(page.locator("#failures")).to_contain_text("rejected by configuration")
    await page.screenshot(path=ARTIFACTS / "dashboard-failed-task.png", full_page=True)

    # ERP two set inactive (ToggleErpConnectionActive): the Connections table says so.
    toggled = await service.client.post(
        "/api/v1/Agents/ErpSync/ToggleErpConnectionActive",
        json={"ErpConnectionId": 2, "Active": False},
        headers=AUTH,
    )
    assert toggled.status == 200, await toggled.text()
    await page.get_by_role("link", name="Connections").click()
    await expect(
        page.locator('#connections tr[data-connection-id="1"] .health').first
    ).to_have_text("ok")
    active = [page.locator(f'#connections tr[data-connection-id="{c}"] td').nth(3) for c in (1, 2)]
    await expect(active[0]).to_have_text("yes")
    await expect(active[1]).to_have_text("inactive")
    await expect(
        page.locator('#connections tr[data-connection-id="2"] .health').first
    ).to_have_text("degraded")
    await expect(
        page.locator('#connections tr[data-connection-id="2"] .health').nth(1)
    ).to_have_text("closed")
    # The continuous sync's panel: one row per connection (the engine is off in these settings).
    await expect(page.locator("#engine-connections tr")).to_have_count(3)
    await expect(page.locator("#engine-state")).to_contain_text("stopped")
    # GetEngineStatus's Workers: this service's own worker, which does not run the sync.
    await expect(page.locator("#engine-workers")).to_have_text(
        "1 worker alive, 0 running the continuous sync"
    )
    await expect(
        page.locator('#engine-connections tr[data-connection-id="1"] td').nth(2)
    ).to_have_text("yes")
    await page.screenshot(path=ARTIFACTS / "dashboard-connections.png", full_page=True)

    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    # 401s are expected (the session probe before login, the wrong password); nothing else.
    assert unexpected(console_errors) == []


async def test_errors_stay_unknown_tasks_show_alone_and_stop_stops(
    database: str,
    db: asyncpg.Connection,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    browser: Browser,
) -> None:
    await seed(db, stores, count=6)
    settings = slow_push_settings(database, broker_prefix, stores)  # Stop finds it running
    async with Service(settings) as service:
        page = await browser.new_page(viewport={"width": 1280, "height": 860})
        await page.goto(str(service.server.make_url("/ui/")))
        await sign_in(page)
        result = page.locator("#resync-result")

        # Stop stops a running task (StopBatchJob).
        await page.get_by_label("From").select_option(label="CRM (0)")
        await page.get_by_label("Internal key ids").fill("1 2 3 4 5 6")
        await page.get_by_role("button", name="Start resync").click()
        await expect(result).to_have_text("Queued as task #1.")
        await page.locator('tr[data-task-id="1"] a').click()
        await expect(page.locator("#task-state")).to_have_text("Started")
        await page.get_by_role("button", name="Stop").click()
        await expect(page.locator("#task-action")).to_contain_text("Stopped")
        await expect(page.locator("#task-state")).to_have_text("Failed")
        await expect(page.get_by_role("button", name="Stop")).to_be_hidden()
        info = await service.task(1)
        assert info["Statistics"]["Stopped"] is True and info["Statistics"]["StoppedBy"] == "tje0"

        # An unknown task id shows the error alone, not the previous task's page beneath it.
        await page.evaluate("location.hash = '#/tasks/999'")
        await expect(page.locator("#error")).to_contain_text("999 not found")
        await expect(page.locator("#task-view")).to_be_hidden()
        await refreshed(page)
        await expect(page.locator("#task-view")).to_be_hidden()
        await expect(page.locator("#error")).to_contain_text("999 not found")

        # A queued task's note, then a bad id list: the error replaces it and outlives the
        # refreshes, until the user's next action.
        await page.get_by_role("link", name="Batch tasks").click()
        await page.get_by_label("Internal key ids").fill("1")
        await page.get_by_role("button", name="Start resync").click()
        await expect(result).to_have_text("Queued as task #2.")
        await page.get_by_label("Internal key ids").fill("1, x")
        await page.get_by_role("button", name="Start resync").click()
        bad = "Not queued: internal key ids must be positive whole numbers."
        await expect(result).to_have_text(bad)
        await refreshed(page)
        await expect(result).to_have_text(bad)
        await expect(page.locator('tr[data-task-id="3"]')).to_have_count(0)  # nothing queued
        await page.get_by_label("Internal key ids").fill("1")  # the next action
        await expect(result).to_have_text("")
        await page.close()


async def test_retry_failed_from_a_task_page(service: Service, browser: Browser) -> None:
    failed = await service.finished(await service.resync(0, [2, 3, 4]))  # ERP 2 rejects key 3
    assert failed["State"] == "Failed"
    fine = await service.finished(await service.resync(0, [1]))
    assert fine["State"] == "Succeeded"
    page, console_errors = await signed_in_page(service, browser)

    await page.evaluate("location.hash = '#/tasks/2'")
    await expect(page.locator("#task-state")).to_have_text("Succeeded")
    await expect(page.get_by_role("button", name="Retry failed")).to_be_hidden()

    await page.evaluate("location.hash = '#/tasks/1'")
    await expect(page.locator("#task-state")).to_have_text("Failed")
    await page.get_by_role("button", name="Retry failed").click()
    await expect(page.locator("#task-action")).to_have_text(
        "Queued task #3 with the records that failed here."
    )
    await page.get_by_role("link", name="task #3").click()
    await expect(page.locator("#task-title")).to_contain_text("Task #3")
    await expect(page.locator("#task-state")).to_have_text("Failed", timeout=30_000)
    await expect(page.locator("#failures tr")).to_have_count(1)  # key 3 alone, on ERP 2 alone
    await expect(page.locator("#targets tr")).to_have_count(1)
    await page.screenshot(path=ARTIFACTS / "dashboard-retry-failed.png", full_page=True)
    assert unexpected(console_errors) == []


async def test_resend_a_given_up_webhook_delivery_from_a_task_page(
    database: str,
    db: asyncpg.Connection,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    browser: Browser,
) -> None:
    accepting = False
    posts: list[int] = []

    async def receiver(request: web.Request) -> web.Response:
        posts.append(orjson.loads(await request.read())["TaskId"])
        return web.Response(status=204 if accepting else 503)

    hook_app = web.Application()
    hook_app.router.add_post("/hook", receiver)
    await seed(db, stores, count=2)
    async with TestServer(hook_app, host="127.0.0.1") as hook_server:
        hook = {"name": "ops", "url": str(hook_server.make_url("/hook")), "secret": "s" * 24}
        settings = settings_for(database, broker_prefix, stores)
        notifications = NotificationSettings.model_validate(
            {"relay_interval": 0.1, "webhooks": [{**hook, "max_attempts": 1}]}
        )
        settings = settings.model_copy(update={"notifications": notifications})
        async with Service(settings) as service:
            task_id = await service.resync(0, [1])
            await service.finished(task_id)
            await wait_for(
                lambda: db.fetchval("SELECT gave_up_at FROM webhook_deliveries"),
                lambda gave_up: gave_up is not None,
                what="the delivery to be given up",
            )
            page, console_errors = await signed_in_page(service, browser)
            await page.evaluate(f"location.hash = '#/tasks/{task_id}'")
            row = page.locator("#deliveries tr")
            await expect(row).to_contain_text("given up")
            accepting = True
            await row.get_by_role("button", name="Resend").click()
            delivery_id = await db.fetchval("SELECT id FROM webhook_deliveries")
            await expect(page.locator("#task-action")).to_have_text(
                f"Delivery #{delivery_id} to ops is due again."
            )
            await expect(row).to_contain_text("delivered")  # the page's refresh shows it
            await expect(row.get_by_role("button", name="Resend")).to_have_count(0)
            assert posts == [task_id, task_id]
            await page.screenshot(path=ARTIFACTS / "dashboard-resend-delivery.png", full_page=True)
            assert unexpected(console_errors) == []

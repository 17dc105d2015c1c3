"""The console in a real headless Chromium, against a real `stockyard serve` (pytest -m browser;
`.ci/run` installs Debian's chromium and runs this group). Screenshots of every page visited
go to .artifacts/console/ (not committed).

One story, as the issue tells it: an owner signs in and adds a member; the member, in a second
browser context, records a receipt; the owner sees it in the stock table and the chart, then
deactivates the member, whose next click lands on the sign-in page; a support engineer traces
the receipt's request id and sees no SKU or quantity; a viewer sees no write forms and a forged
post gets 403; a form posted from another origin, or without its CSRF token, gets 403.
"""

from __future__ import annotations

import asyncio
import http.server
import re
import secrets
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from stockyard.core.settings import Settings
from tests.support.cli import run_cli
from tests.support.helpers import PASSWORD, bearer
from tests.support.serve import free_port, serve_env, start_serve
from tests.support.services import TestServices

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
SHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "console"


@pytest.fixture(scope="module")
async def server(
    services: TestServices, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = serve_env(services, public_url=base, log_level="WARNING")
    process = await start_serve(env, port=port, workers=1, cwd=tmp_path_factory.mktemp("serve"))
    try:
        yield base
    finally:
        process.terminate()
        await process.wait()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        pytest.fail("the browser group needs Chromium: apt-get install chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"], headless=True
        )
        yield launched
        await launched.close()


class OtherSite:
    """Another origin (same host, another port) serving one page: a form that posts into the
    console, as a malicious site's would. Lax cookies still go along (same site), so only the
    console's origin and token checks stand in the way."""

    def __init__(self) -> None:
        self.html = ""
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = site.html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture(scope="module")
def other_site() -> Iterator[OtherSite]:
    site = OtherSite()
    threading.Thread(target=site.httpd.serve_forever, daemon=True).start()
    try:
        yield site
    finally:
        site.httpd.shutdown()


async def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def _sign_in(page: Page, base: str, *, tenant: str, email: str) -> None:
    await page.goto(f"{base}/console/sign-in")
    await page.get_by_label("Tenant").fill(tenant)
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()


def _request_id(text: str) -> str:
    found = re.search(r"Request id ([0-9a-f]{32})", text)
    assert found, text
    return found.group(1)


async def test_the_console_story_in_a_real_browser(
    server: str, browser: Browser, settings: Settings, other_site: OtherSite
) -> None:
    slug = f"b-{secrets.token_hex(5)}"
    owner_email = f"owner@{slug}.example.com"
    async with httpx.AsyncClient(base_url=server) as api:
        created = await api.post(
            "/api/v1/tenants",
            json={
                "name": "Browser Co",
                "slug": slug,
                "owner_email": owner_email,
                "owner_password": PASSWORD,
            },
        )
        assert created.status_code == 201, created.text
        token = (
            await api.post(
                "/api/v1/auth/token",
                data={
                    "grant_type": "password",
                    "username": owner_email,
                    "password": PASSWORD,
                    "tenant": slug,
                },
            )
        ).json()["access_token"]
        sku = f"SKU-{secrets.token_hex(3).upper()}"
        for path, body in (
            ("/api/v1/products", {"sku": sku, "name": "Blue widget", "reorder_point": 3}),
            ("/api/v1/locations", {"code": "MAIN", "name": "Main store"}),
        ):
            assert (await api.post(path, json=body, headers=bearer(token))).status_code == 201
        viewer_email = f"viewer@{slug}.example.com"
        assert (
            await api.post(
                "/api/v1/users",
                json={"email": viewer_email, "role": "viewer", "password": PASSWORD},
                headers=bearer(token),
            )
        ).status_code == 201
    staff_email = f"support-{secrets.token_hex(4)}@stockyard.example.com"
    code, output = await run_cli(
        settings,
        "staff",
        "create",
        "--email",
        staff_email,
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert code == 0, output

    owner_context = await browser.new_context()
    member_context = await browser.new_context()
    try:
        owner = await owner_context.new_page()
        owner.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))

        # The owner signs in and adds a member.
        await _sign_in(owner, server, tenant=slug, email=owner_email)
        await expect(owner.get_by_role("heading", name="Stock", exact=True)).to_be_visible()
        await _shot(owner, "01-stock-empty")
        await owner.get_by_role("link", name="Users", exact=True).click()
        member_email = f"member@{slug}.example.com"
        await owner.get_by_label("Email", exact=True).fill(member_email)
        await owner.get_by_label("Role", exact=True).select_option("member")
        await owner.get_by_label("Initial password").fill(PASSWORD)
        await owner.get_by_role("button", name="Add user").click()
        await expect(owner.get_by_role("status")).to_contain_text(f"Added {member_email}")
        await _shot(owner, "02-users")

        # The member, in a browser context of their own, records a receipt.
        member = await member_context.new_page()
        await _sign_in(member, server, tenant=slug, email=member_email)
        await member.get_by_role("link", name="Record a movement").click()
        await member.get_by_label("Receipt (stock in)").check()
        await member.get_by_label("SKU").fill(sku)
        await member.locator("#m-location").fill("MAIN")
        await member.get_by_label("Quantity").fill("5")
        await member.get_by_label("Reference").fill("PO-77")
        await member.get_by_role("button", name="Record").click()
        recorded = member.locator("#recorded")
        await expect(recorded).to_contain_text("5 on hand")
        receipt_request_id = _request_id(await recorded.inner_text())
        await _shot(member, "03-receipt-recorded")

        # A clear 409 on the form: issuing more than is there.
        await member.get_by_label("Issue (stock out)").check()
        await member.get_by_label("SKU").fill(sku)
        await member.get_by_label("Quantity").fill("50")
        await member.get_by_role("button", name="Record").click()
        await expect(member.get_by_role("alert")).to_contain_text("Not enough stock")
        await _shot(member, "04-issue-refused")

        # The owner sees it in the stock table and on the product's chart.
        await owner.get_by_role("link", name="Stock", exact=True).click()
        row = owner.locator(f'tr[data-sku="{sku}"][data-location="MAIN"]')
        await expect(row.locator("[data-on-hand]")).to_have_text("5")
        await _shot(owner, "05-stock")
        await row.get_by_role("link", name=sku).click()
        await expect(owner.locator("svg.chart path.level")).to_have_count(1)
        levels = owner.locator("#levels tbody tr td.num")
        assert (await levels.all_text_contents())[-1] == "5"
        assert (await levels.all_text_contents())[0] == "0"
        await _shot(owner, "06-product-chart")

        # The owner deactivates the member: the member's next click is the sign-in page.
        await owner.get_by_role("link", name="Users", exact=True).click()
        await (
            owner.locator(f'tr[data-user="{member_email}"]')
            .get_by_role("button", name="Deactivate")
            .click()
        )
        await expect(owner.get_by_role("status")).to_contain_text("deactivated")
        await member.get_by_role("link", name="Stock", exact=True).click()
        await expect(member).to_have_url(re.compile(r"/console/sign-in"))
        await expect(member.get_by_role("heading", name="Sign in")).to_be_visible()
        await _shot(member, "07-member-signed-out")

        # A form posted from another origin, and one without its token, get 403 and change
        # nothing.
        await owner.get_by_role("link", name="Stock", exact=True).click()
        attack = f"""<!doctype html><form id=f method=post
            action="{server}/console/movements/new">
            <input name=kind value=receipt><input name=sku value="{sku}">
            <input name=location value=MAIN><input name=quantity value=1000></form>"""
        other_site.html = attack
        evil = await owner_context.new_page()
        await evil.goto(other_site.url)
        async with evil.expect_navigation():
            await evil.evaluate("document.getElementById('f').submit()")
        assert "Not allowed" in await evil.content()
        await _shot(evil, "08-cross-origin-refused")
        await owner.goto(f"{server}/console/movements/new?sku={sku}")
        await owner.evaluate("document.querySelector('main form input[name=csrf_token]').remove()")
        await owner.locator("#m-location").fill("MAIN")
        await owner.get_by_label("Quantity").fill("1000")
        await owner.get_by_role("button", name="Record").click()
        await expect(owner.get_by_role("alert")).to_contain_text("security token")
        assert await owner.get_by_role("heading", name="Not allowed").count() == 1
        await owner.goto(f"{server}/console/stock")
        await expect(row.locator("[data-on-hand]")).to_have_text("5")
        await _shot(owner, "09-stock-unchanged")
        for name in ("Audit log", "API clients", "Webhooks", "Tenant"):
            await owner.get_by_role("link", name=name).click()
            await _shot(owner, f"10-{name.lower().replace(' ', '-')}")
    finally:
        await owner_context.close()
        await member_context.close()

    # The support engineer traces the receipt's request id: what happened, no SKU, no quantity.
    staff_context = await browser.new_context()
    try:
        staff = await staff_context.new_page()
        await _sign_in(staff, server, tenant="", email=staff_email)
        await staff.get_by_label("Request id").fill(receipt_request_id)
        await staff.get_by_role("button", name="Trace").click()
        await expect(staff.locator("#trace-events")).to_contain_text("movement.create")
        main = await staff.locator("main").inner_text()
        assert sku not in main and "PO-77" not in main and slug in main
        assert not re.search(r"\b5\b", await staff.locator("#trace-events").inner_text())
        await _shot(staff, "11-support-trace")
    finally:
        await staff_context.close()

    # A viewer sees no write forms, and a forged post of one gets 403.
    viewer_context = await browser.new_context()
    try:
        viewer = await viewer_context.new_page()
        await _sign_in(viewer, server, tenant=slug, email=viewer_email)
        await expect(viewer.get_by_role("heading", name="Stock", exact=True)).to_be_visible()
        assert await viewer.get_by_role("link", name="Record a movement").count() == 0
        assert await viewer.get_by_role("link", name="Users", exact=True).count() == 0
        token_field = viewer.locator("input[name=csrf_token]").first
        csrf = await token_field.get_attribute("value")
        forged = await viewer_context.request.post(
            f"{server}/console/movements/new",
            form={
                "csrf_token": csrf or "",
                "kind": "receipt",
                "sku": sku,
                "location": "MAIN",
                "quantity": "1000",
            },
            headers={"Origin": server},
        )
        assert forged.status == 403, await forged.text()
        await viewer.goto(f"{server}/console/movements/new")
        await expect(viewer.get_by_role("heading", name="Not allowed")).to_be_visible()
        await _shot(viewer, "12-viewer-refused")
        await viewer.goto(f"{server}/console/stock")
        await expect(viewer.locator(f'tr[data-sku="{sku}"] [data-on-hand]')).to_have_text("5")
    finally:
        await viewer_context.close()

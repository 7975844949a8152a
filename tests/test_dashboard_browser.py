"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright.

Signing in from chat end to end, refused links, hostile text that stays inert, and a run event that
shows up live. Each page's screenshot is kept under pytest's base temp (`dashboard-screenshots/`).
`make test` installs the `chromium` package where apt-get can; without it these tests are skipped
and say why.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bot.tools.playground import VirtualWorld
from tests.harness.dashboard import allow, git_change, seed_hostile_run, serving
from tests.harness.discord import make_settings, reply_text, running_world

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="no Chromium: `make test` installs Debian's `chromium` package where apt-get is available",
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        # As root (CI) Chromium refuses its own sandbox; the pages it opens are the bot's, on 127.0.0.1.
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "dashboard-screenshots"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
async def hostile(tmp_path: Path) -> AsyncIterator[tuple[VirtualWorld, int]]:
    """A world whose repository holds a hostile change, and a run of it full of payloads."""
    repo = tmp_path / "repo"
    base, head = git_change(repo)
    async with running_world(make_settings(tmp_path / "data", repo_dir=repo), real_clock=True) as world:
        allow(world, 42, 43)  # the seeded run's requester and another developer
        yield world, await seed_hostile_run(world, base, head)


async def _link_from_chat(world: VirtualWorld, user: str) -> str:
    text = reply_text(await world.users[user].slash(world.dev, "dashboard"))
    match = re.search(r"http://\S+/signin\?\S+", text)
    assert match is not None, text
    return match.group(0)


async def _sign_in(page: Page, link: str) -> None:
    await page.goto(link)
    await page.click("#signin")
    await page.wait_for_selector("h1:has-text('Overview')")


async def test_sign_in_from_chat_and_every_page(
    hostile: tuple[VirtualWorld, int], browser: Browser, shots: Path
) -> None:
    """Alice asks /dashboard, opens her link, signs in, and reads every page (screenshots kept)."""
    world, run_id = hostile
    async with serving(world) as served:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await _sign_in(page, await _link_from_chat(world, "alice"))
        assert f"user {world.users['alice'].id}" in await page.inner_text("header")
        cookie = next(c for c in await page.context.cookies() if c["name"] == "mendbot_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert await page.evaluate("document.cookie") == ""  # HttpOnly: out of scripts' reach
        await page.screenshot(path=str(shots / "overview.png"), full_page=True)
        for path, heading, name in (
            ("/runs", "Runs", "runs"),
            (f"/runs/{run_id}", f"Run {run_id}", "run"),
            ("/incidents", "Incidents", "incidents"),
            ("/incidents/1", "Incident 1", "incident"),
            ("/actions", "Action explorer", "actions"),
            ("/audit", "Self-audit", "audit"),
        ):
            await page.goto(served.url + path)
            await page.wait_for_selector(f"h1:has-text('{heading}')")
            await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            if name == "run":
                assert await page.locator("#diff .add").count() >= 4  # the diff, highlighted


async def test_refused_links_and_users(hostile: tuple[VirtualWorld, int], browser: Browser) -> None:
    """A used link, an expired one and someone else's are refused; Mallory gets no link and no page."""
    world, _ = hostile
    async with serving(world) as served:
        alice_link = await _link_from_chat(world, "alice")
        first = await browser.new_page()
        await _sign_in(first, alice_link)

        reuse = await browser.new_page()  # another browser profile: no session of Alice's
        await reuse.goto(alice_link)
        assert "This link does not work" in await reuse.inner_text("h1")
        assert (await reuse.goto(served.url + "/")).status == 401  # type: ignore[union-attr]

        expired = await _link_from_chat(world, "alice")
        served.clock.skipped = served.signin.config.link_ttl_s + 1
        late = await browser.new_page()
        await late.goto(expired)
        assert "This link does not work" in await late.inner_text("h1")
        served.clock.skipped = 0

        bobs = await served.signin.link(43)  # another developer's link
        assert bobs is not None
        await first.goto(bobs)  # Alice's browser, someone else's link
        assert "someone else" in await first.inner_text("h1")

        refused = reply_text(await world.users["mallory"].slash(world.dev, "dashboard"))
        assert "Only allow-listed developers" in refused and "http" not in refused
        stranger = await browser.new_page()
        response = await stranger.goto(served.url + "/runs")
        assert response is not None and response.status == 401
        assert "Sign in first" in await stranger.inner_text("h1")


async def test_hostile_text_stays_inert(hostile: tuple[VirtualWorld, int], browser: Browser) -> None:
    """Scripts, onerror handlers and javascript: links in a run, its diff and its incident run nothing:
    no dialog, no global set, no link made; only the two vendored scripts are on the page."""
    world, run_id = hostile
    async with serving(world) as served:
        page = await browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        await _sign_in(page, await served.signin.link(42) or "")
        for path in (f"/runs/{run_id}", "/incidents/1", "/runs", "/incidents", "/"):
            await page.goto(served.url + path)
            await page.wait_for_load_state("networkidle")
            assert await page.evaluate("window.__pwned") is None, path
            assert await page.locator("a[href^='javascript:']").count() == 0, path
            assert await page.locator("main img, main svg, main script").count() == 0, path
            assert await page.locator("script").count() == 2, path
        await page.goto(f"{served.url}/runs/{run_id}")
        assert "<script>window.__pwned = 1; alert('xss')</script>" in await page.inner_text("#diff")
        await page.get_by_text("click me").first.click()  # text, not a link: nothing happens
        await asyncio.sleep(0.3)
        assert dialogs == [] and await page.evaluate("window.__pwned") is None


async def test_a_run_event_shows_up_live(hostile: tuple[VirtualWorld, int], browser: Browser) -> None:
    """With a run's page open, an event the run writes appears in its timeline within 2 s, unreloaded."""
    world, run_id = hostile
    async with serving(world) as served:
        page = await browser.new_page()
        await _sign_in(page, await served.signin.link(42) or "")
        await page.goto(f"{served.url}/runs/{run_id}")
        await page.wait_for_load_state("networkidle")
        await page.evaluate("window.__same_page = true")
        rows = await page.locator("#timeline tr").count()
        await world.bot.services.improve.runs.event(
            run_id, "progress", actor="pipeline", detail={"lines": ["verifying <b>now</b>"]}
        )
        # Pushed to the open page (no reload, no polling by the test): found well within the wait.
        await page.wait_for_selector("#timeline tr:has-text('verifying <b>now</b>')", timeout=15000)
        assert await page.locator("#timeline tr").count() == rows + 1
        assert await page.evaluate("window.__same_page") is True  # updated in place, not reloaded
        assert await page.locator("#timeline b").count() == 0  # the live row is escaped too
        detail = await page.locator("#timeline tr").last.locator("pre").text_content()
        assert detail is not None and '\n "lines": [' in detail  # a multi-line detail keeps its lines


@pytest.mark.cli
async def test_the_page_of_a_real_run(tmp_path: Path, browser: Browser, shots: Path) -> None:
    """A real fix run (the bundled CLI against the model double, checks in the sandbox) reads whole on
    its page: state, diagnosis, plan, the highlighted diff, checks, the proposal, model requests."""
    from tests.harness.model_double import ModelDouble
    from tests.test_improve_e2e import FIX, _announcement, _fix_script, _storm, improving_world

    async with ModelDouble() as model, improving_world(tmp_path, model) as world:
        model.script(*_fix_script(world.bot.services.settings))
        await _storm(world)
        await world.users["alice"].react(_announcement(world), "🛠")
        await world.quiesce()
        async with serving(world) as served:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await _sign_in(page, await _link_from_chat(world, "alice"))
            await page.goto(f"{served.url}/runs/1")
            await page.wait_for_load_state("networkidle")
            assert "awaiting_approval" in await page.inner_text("h1")
            body = await page.inner_text("main")
            for part in ("scale_for divides", '"risk": "low"', "local://proposals/1", "model_request"):
                assert part in body, part
            added = await page.locator("#diff .add").all_inner_texts()
            assert any(FIX in line for line in added), added
            await page.screenshot(path=str(shots / "run-real.png"), full_page=True)
            await page.goto(f"{served.url}/incidents/1")
            assert "Incident 1" in await page.inner_text("h1")
            await page.screenshot(path=str(shots / "incident-real.png"), full_page=True)


async def test_a_developer_taken_off_the_list_is_signed_out(
    hostile: tuple[VirtualWorld, int], browser: Browser
) -> None:
    """Alice reads the runs; taken off `access.allowed_user_ids`, her next page is "Sign in first" and
    the link she had not used yet does not sign her in again."""
    world, _ = hostile
    alice = world.users["alice"].id
    async with serving(world) as served:
        page = await browser.new_page()
        await _sign_in(page, await _link_from_chat(world, "alice"))
        spare = await _link_from_chat(world, "alice")
        await page.goto(served.url + "/runs")
        await page.wait_for_selector("h1:has-text('Runs')")
        world.bot.services.settings.access.allowed_user_ids.remove(alice)
        response = await page.goto(served.url + "/runs")
        assert response is not None and response.status == 401
        assert "Sign in first" in await page.inner_text("h1")
        await page.goto(spare)
        assert "This link does not work" in await page.inner_text("h1")


async def test_a_sign_in_from_another_site_is_refused(
    hostile: tuple[VirtualWorld, int], browser: Browser
) -> None:
    """A page on another origin posts a leaked link's form to the dashboard (login CSRF): the browser
    shows "Sign-in refused" and holds no session; the link still signs in from its own page."""
    from aiohttp import web

    world, _ = hostile
    async with serving(world) as served:
        link = await _link_from_chat(world, "alice")
        match = re.search(r"u=(\d+)&t=([\w-]+)", link)
        assert match is not None
        evil_html = (
            f'<form method="post" action="{served.url}/signin">'
            f'<input type="hidden" name="u" value="{match.group(1)}">'
            f'<input type="hidden" name="t" value="{match.group(2)}">'
            '<button id="go">Win a prize</button></form>'
        )

        async def evil(_: web.Request) -> web.Response:
            return web.Response(text=evil_html, content_type="text/html")

        app = web.Application()
        app.router.add_get("/", evil)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.click("#go")
            await page.wait_for_selector("h1:has-text('Sign-in refused')")
            assert "did not come from the dashboard" in await page.inner_text("main")
            assert not [c for c in await page.context.cookies() if c["name"] == "mendbot_session"]
            assert (await page.goto(served.url + "/")).status == 401  # type: ignore[union-attr]
            await _sign_in(page, link)  # unspent: it works from the dashboard's own page
        finally:
            await runner.cleanup()

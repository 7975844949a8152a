"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright.

Signing in from chat end to end, refused links, hostile text that stays inert, a run event that shows
up live, and the pages a person reads after the demo's whole loop (the overview, the run after its
rollback, its incident, the audit). Each page's screenshot is kept under pytest's base temp
(`dashboard-screenshots/`); with `MENDBOT_SCREENSHOTS=docs/screenshots` the demo's pages are written
there too, as the user guide shows them. `make test` installs the `chromium` package where apt-get can;
without it these tests are skipped and say why.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mendbot.tools.playground import VirtualWorld
from tests.harness.dashboard import allow, git_change, seed_hostile_run, serving
from tests.harness.discord import make_settings, reply_text, running_world
from tests.harness.sql import sql

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
        assert "alice · read-only" in await page.inner_text("header")  # by name, the id on hover
        assert await page.get_attribute("header .person", "title") == f"Discord id {world.users['alice'].id}"
        cookie = next(c for c in await page.context.cookies() if c["name"] == "mendbot_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert await page.evaluate("document.cookie") == ""  # HttpOnly: out of scripts' reach
        await page.screenshot(path=str(shots / "hostile-overview.png"), full_page=True)
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
            await page.screenshot(path=str(shots / f"hostile-{name}.png"), full_page=True)
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
            assert await page.locator("script").count() == 3, path  # htmx, its SSE extension, ours
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
        rows = await page.locator("#timeline > tr").count()
        await world.bot.services.improve.runs.event(
            run_id, "progress", actor="pipeline", detail={"lines": ["verifying <b>now</b>", "then proving"]}
        )
        # Pushed to the open page (no reload, no polling by the test): found well within the wait.
        await page.wait_for_selector("#timeline > tr:has-text('verifying <b>now</b>')", timeout=15000)
        assert await page.locator("#timeline > tr").count() == rows + 1
        assert await page.evaluate("window.__same_page") is True  # updated in place, not reloaded
        assert await page.locator("#timeline b").count() == 0  # the live row is escaped too
        detail = await page.locator("#timeline > tr").last.locator("table.kv td").text_content()
        assert detail == "verifying <b>now</b>\nthen proving"  # a multi-line detail keeps its lines


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
            assert "👀 awaiting approval" in await page.inner_text("h1")
            body = await page.inner_text("main")
            for part in (
                "Root cause",
                "scale_for divides",
                "Risk",
                "mendbot/1-",
                "model request to",
            ):
                assert part in body, part
            assert await page.locator("#plan .risk.low").count() == 1
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


async def _demo_world(tmp_path: Path) -> tuple[Path, str]:
    """The demo's whole loop, run as a newcomer runs it (`mendbot play --demo`): its data directory and
    what it printed."""
    dropped = ("MENDBOT_CONFIG", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "DISCORD_TOKEN")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["MENDBOT_CONFIG"] = os.devnull
    data = tmp_path / "demo"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mendbot", "play", "--demo", "--data-dir", str(data), cwd=tmp_path, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 600)
    assert process.returncode == 0, out.decode()[-3000:]
    return data, out.decode()


async def _shoot(page: Page, shots: Path, name: str) -> None:
    await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    kept = os.environ.get("MENDBOT_SCREENSHOTS")
    if kept:  # the user guide's pictures, written again on purpose (in 256 colours: a third of the bytes)
        png = await page.screenshot(full_page=True)
        await asyncio.to_thread(_keep, png, Path(kept) / f"{name}.png")


def _keep(png: bytes, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256).save(path, optimize=True)


async def _stages_agree_with_chat(world: VirtualWorld, stages: list[str]) -> None:
    """The run page's stages (their heading rows) took seconds of work, and `/run 1` in chat gives each
    the same duration: one clock, one way of telling it."""
    took = re.compile(r"^(\S+ [a-z ]+?) · (\d+\.\d s|\d+ s|\d+ min(?: \d+ s)?)", re.M)
    on_page = [took.search(stage.split("\t", 1)[-1].strip()) for stage in stages]
    page_stages = [(m.group(1), m.group(2)) for m in on_page if m is not None]
    assert len(page_stages) == len(stages), stages
    work = [
        t for name, t in page_stages if name.split(" ", 1)[1] in ("investigating", "editing", "verifying")
    ]
    assert any(t != "0.0 s" for t in work), page_stages
    run_in_chat = reply_text(await world.users["alice"].slash(world.dev, "run", run_id=1))
    chat_stages = took.findall(run_in_chat.split("**Stages:**", 1)[1])
    assert chat_stages == page_stages, (chat_stages, page_stages)


@pytest.mark.cli
async def test_the_pages_after_the_demo_read_as_content(
    tmp_path: Path, browser: Browser, shots: Path
) -> None:
    """After the demo's loop (a fix shipped, resolved, then rolled back, and the fault back): the overview
    says the process is OK in a status panel; the run reads ⏪ rolled back, its timeline grouped by stage
    with durations, its diagnosis and plan as prose, its checks ✅ with their output folded, its proof as
    the chat shows it and the evidence pack the agent was given; the incident counts the failure after the
    rollback, names who it hit and shows the pack too; the audit reads as a report. Screenshots kept."""
    data, told = await _demo_world(tmp_path)
    # The run took seconds of work on the playground's clock: its status says so (it said "· 0 s ·"), in
    # minutes and seconds on a machine slow enough for it to take a minute.
    status = re.search(
        r"🤖 \*\*Run #1\*\* · fix · 👀 awaiting approval · (?:(\d+) min )?(\d+) s · \$0\.\d+", told
    )
    assert status is not None and int(status.group(1) or 0) * 60 + int(status.group(2)) >= 1, told[:4000]
    settings = make_settings(data, repo_dir=data / "demo-repo")
    with sqlite3.connect(data / "mendbot.db") as db:
        (last,) = db.execute("SELECT max(ts) FROM run_events").fetchone()
    # The bot's clock where the demo's left it, a minute on: its `wait 61s` put it ahead of the wall's.
    async with running_world(settings, real_clock=True, playground=True) as world, serving(world) as served:
        await world.env.advance_time(max(0.0, last + 60 - world.env.now().timestamp()))
        context = await browser.new_context(
            viewport={"width": 1280, "height": 900}, timezone_id="Asia/Kolkata"
        )
        page = await context.new_page()
        await _sign_in(page, await _link_from_chat(world, "alice"))
        assert "✅ OK" in await page.inner_text("#status")
        assert await page.locator("#status.ok").count() == 1
        await _shoot(page, shots, "overview")

        await page.goto(f"{served.url}/runs/1")
        await page.wait_for_load_state("networkidle")
        assert "⏪ rolled back" in await page.inner_text("h1")
        stages = await page.locator("#timeline tr.stage").all_inner_texts()
        await _stages_agree_with_chat(world, stages)
        assert any("👁️ watching · 1 min" in stage for stage in stages), stages
        assert any("⏪ rolled back" in stage and "emergency rollback" in stage for stage in stages), stages
        assert "Root cause" in await page.inner_text("#diagnosis")
        assert await page.locator("#checks li.ok details").count() >= 2  # ✅, output folded
        assert not await page.locator("#checks details[open]").count()
        proof = await page.inner_text("#proof")
        assert "proven by replay" in proof and "✅ answered" in proof and "❌ error shown" in proof
        assert "# Evidence" in (await page.text_content("#evidence pre") or "")  # folded
        assert await page.locator("main time").count() > 10
        shown = await page.locator("main time").all_inner_texts()  # relative to the bot's clock
        assert all(re.fullmatch(r"(\d+ min )?\d+ s ago|\d+ min ago", when) for when in shown), shown
        assert len(set(shown)) > 3, shown  # the timeline's rows are as far apart as the work was
        starts = {when.split(" min")[0] for when in shown}
        assert {"1", "2"} <= starts, shown  # the rollback a minute ago, the run a minute (its watch) before
        title = await page.get_attribute("#timeline time", "title")  # the moment, in the viewer's zone
        assert title is not None and "GMT+5:30" in title, title
        await _shoot(page, shots, "run-rolled-back")

        await page.goto(f"{served.url}/incidents/1")
        text = await page.inner_text("main")
        assert "4 times" in text and "ZeroDivisionError" in text and "alice" in text, text
        assert "# Evidence" in await page.inner_text("main pre.evidence")
        await _shoot(page, shots, "incident")

        await page.goto(f"{served.url}/audit?period=7d")
        await page.wait_for_selector("h1:has-text('Self-audit')")
        await page.wait_for_load_state("networkidle")  # its charts
        await _shoot(page, shots, "audit")

        for path, name in (
            ("/runs", "runs"),
            ("/incidents", "incidents"),
            ("/actions?listeners=1", "actions"),
        ):
            await page.goto(served.url + path)
            main = await page.inner_text("main")
            # The bot by its name, kinds and states by theirs (the raw values on hover).
            assert "TestBot" not in main and "command:fortune" not in main and "rolled_back" not in main, main
            await page.screenshot(path=str(shots / f"demo-{name}.png"), full_page=True)


def _said(result: object) -> str:
    """Everything an interaction answered: its response and its followups."""
    messages = [getattr(result, "response", None), *getattr(result, "followups", [])]
    return "\n".join(message.content for message in messages if message is not None and message.content)


async def test_every_cost_figure_of_a_run_reads_the_same(
    hostile: tuple[VirtualWorld, int], browser: Browser
) -> None:
    """A run whose one model request cost $0.0123: `/run N`, `/runs`, the audit's Spend in chat, and the
    run's page, the runs list and the audit page all say $0.0123 (chat no longer rounds it to $0.01)."""
    world, run_id = hostile
    alice = world.users["alice"]
    chat = [
        reply_text(await alice.slash(world.dev, "run", run_id=run_id)),
        reply_text(await alice.slash(world.dev, "runs")),
        _said(await alice.slash(world.dev, "audit", period="24h")),
    ]
    for said in chat:
        assert "$0.0123" in said and "$0.01 " not in said and "$0.01)" not in said, said
    async with serving(world) as served:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await _sign_in(page, await _link_from_chat(world, "alice"))
        for path in (f"/runs/{run_id}", "/runs", "/audit?period=24h"):
            await page.goto(served.url + path)
            text = await page.inner_text("main")
            assert "$0.0123" in text and "$0.01 " not in text, (path, text)


async def _seed_actions(world: VirtualWorld) -> None:
    """What a busy bot records: forty messages its listeners read (listener:on_message, ok), a `!roll`
    that failed, and a `/budget` from two days ago."""
    recorder = world.bot.services.recorder
    alice = world.users["alice"].id
    for _ in range(40):
        recorder.record("listener:on_message", "Chat", ok=True, duration_ms=0.3, user_id=alice)
    recorder.record(
        "command:roll", "Dice", ok=False, duration_ms=2.0, error=ZeroDivisionError("x"), user_id=alice
    )
    recorder.record("app:budget", "Improve", ok=True, duration_ms=4.0, user_id=alice)
    await world.quiesce()
    two_days_ago = time.time() - 2 * 86400
    await sql(world.bot.services.db, "UPDATE actions SET ts = :ts WHERE kind = 'app:budget'", ts=two_days_ago)


async def test_the_pages_name_what_they_show(
    hostile: tuple[VirtualWorld, int], browser: Browser, shots: Path
) -> None:
    """Every id, state and kind a person reads is shown by name, the raw value a hover away: the sign-in
    page names the member; a run's state reads "awaiting approval" (no "awaiting_approva…" cut in the
    filter); kinds read "the `roll` command"; the timeline's actors are "the model gateway", "the coding
    agent"; an event's details read as key and value ("1.94 s", not 1.9410600000000002 in raw JSON)."""
    world, run_id = hostile
    await world.bot.services.improve.runs.event(
        run_id, "agent_session", actor="agent",
        detail={"outcome": "success", "turns": 2, "duration_s": 1.9410600000000002, "tools": ["Edit", "Bash"]},  # noqa: E501
    )  # fmt: skip
    await _seed_actions(world)
    alice = world.users["alice"].id
    async with serving(world) as served:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(await _link_from_chat(world, "alice"))
        intro = await page.inner_text("main")
        assert "made for alice" in intro and str(alice) not in intro, intro
        assert await page.get_attribute("main .person", "title") == f"Discord id {alice}"
        await page.screenshot(path=str(shots / "names-signin.png"), full_page=True)
        await page.click("#signin")
        await page.wait_for_selector("h1:has-text('Overview')")

        await page.goto(f"{served.url}/runs")
        text = await page.inner_text("main")
        assert "awaiting_approva" not in text and "👀 awaiting approval" in text, text
        assert await page.locator("select[name=state] option", has_text="rolled back").count() == 1
        assert await page.get_attribute("td .state", "title") == "awaiting_approval"
        await page.screenshot(path=str(shots / "names-runs.png"), full_page=True)

        for path in ("/", "/incidents", "/incidents/1"):
            await page.goto(served.url + path)
            main = await page.inner_text("main")
            assert "the roll command" in main and "command:roll" not in main, (path, main)
            assert await page.get_attribute("main .kind", "title") == "command:roll", path
        await page.screenshot(path=str(shots / "names-incident.png"), full_page=True)

        await page.goto(f"{served.url}/runs/{run_id}")
        who = await page.locator("#timeline > tr td:nth-child(4)").all_inner_texts()
        assert (
            "the model gateway" in who
            and "the coding agent" in who
            and "gateway" not in [w.strip() for w in who]
        )
        assert await page.get_attribute("#timeline .actor", "title") in ("agent", "gateway")
        session = page.locator("#timeline > tr", has_text="agent session: success, 2 turn(s)")
        await session.locator("summary").click()
        details = await session.locator("table.kv").inner_text()
        assert "duration s\t1.94 s" in details and "tools\tEdit\nBash" in details, details
        assert "1.9410600000000002" not in await page.inner_text("main") and '"outcome"' not in details
        await page.screenshot(path=str(shots / "names-run.png"), full_page=True)


async def test_the_audit_and_the_actions_say_what_they_do_not_understand(
    hostile: tuple[VirtualWorld, int], browser: Browser, shots: Path
) -> None:
    """An audit of a period that is not one answers with a clear error (not "Self-audit · last banana" with
    literal backticks); the action explorer reads `since=yesterday`, says what it cannot read, and is not
    drowned by the listeners' successes (every message the bot reads), which it shows when asked."""
    world, _ = hostile
    await _seed_actions(world)
    async with serving(world) as served:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await _sign_in(page, await _link_from_chat(world, "alice"))

        response = await page.goto(f"{served.url}/audit?period=banana")
        assert response is not None and response.status == 400
        assert (await page.inner_text("h1")).strip() == "Self-audit"
        said = await page.inner_text("main")
        assert "banana isn't a period I can audit" in said and "`" not in said, said
        await page.screenshot(path=str(shots / "audit-unknown-period.png"), full_page=True)

        await page.goto(f"{served.url}/actions")
        rows = await page.locator("tbody tr").all_inner_texts()
        assert any("the roll command" in row for row in rows), rows
        assert not any("on_message" in row for row in rows), rows
        assert "Successful listener calls — a row for every message the bot reads — are hidden" in (
            await page.inner_text("main")
        )
        await page.screenshot(path=str(shots / "actions-default.png"), full_page=True)
        await page.check("input[name=listeners]")
        await page.click("button[type=submit]")
        await page.wait_for_load_state("networkidle")
        assert await page.locator("tbody tr", has_text="the on_message listener").count() >= 40

        assert any("the /budget command" in row for row in rows), rows  # two days ago
        await page.goto(f"{served.url}/actions?since=yesterday")
        kinds = await page.locator("tbody tr").all_inner_texts()
        assert any("the roll command" in row for row in kinds), kinds
        assert not any("/budget" in row for row in kinds), kinds
        response = await page.goto(f"{served.url}/actions?since=banana")
        assert response is not None and response.status == 400
        said = await page.inner_text("main")
        assert "since" in said and "banana" in said and "yesterday" in said, said

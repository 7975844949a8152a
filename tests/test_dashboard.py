"""The dashboard over HTTP: nothing without a session, one-time links bound to a user, `/dashboard` in
chat, hostile text escaped under a strict CSP, keyset pages of action records, nothing that writes."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest

from mendbot.db import actions as action_queries
from mendbot.db import runs as run_queries
from mendbot.db.records import ActionRecord
from mendbot.tools.playground import VirtualWorld
from tests.harness.dashboard import DEVELOPERS, PAYLOADS, Served, allow, git_change, seed_hostile_run, serving
from tests.harness.discord import make_settings, reply_text, running_world
from tests.harness.playground import PlaygroundProcess
from tests.harness.sql import sql_value

REPO = Path(__file__).resolve().parent.parent
PAGES = (
    "/", "/runs", "/runs/1", "/runs/1/stream", "/incidents", "/incidents/1", "/actions", "/audit",
    "/audit/spend_per_day.png",
)  # fmt: skip


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[str, str]:
    """The world's repository, with a base commit and one adding hostile lines: (base, head)."""
    return git_change(tmp_path / "repo")


@pytest.fixture
async def dash_world(tmp_path: Path, seeded: tuple[str, str]) -> AsyncIterator[VirtualWorld]:
    settings = make_settings(tmp_path / "data", repo_dir=tmp_path / "repo")
    async with running_world(settings, real_clock=True) as world:
        allow(world, *DEVELOPERS)
        yield world


@pytest.fixture
async def served(dash_world: VirtualWorld) -> AsyncIterator[Served]:
    async with serving(dash_world) as served:
        yield served


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # 127.0.0.1 keeps its cookies


def _token(link: str) -> tuple[str, str]:
    match = re.search(r"[?&]u=(\d+)&t=([\w-]+)", link)
    assert match is not None, link
    return match.group(1), match.group(2)


async def _sign_in(client: aiohttp.ClientSession, served: Served, user_id: int) -> aiohttp.ClientResponse:
    link = await served.signin.link(user_id)
    assert link is not None and link.startswith(served.url + "/signin?")
    user, token = _token(link)
    return await client.post(f"{served.url}/signin", data={"u": user, "t": token}, allow_redirects=False)


async def test_every_page_is_401_without_a_session(served: Served) -> None:
    """No cookie, or a made-up one: every page answers 401 with how to sign in; the assets are public."""
    async with _session() as client:
        for path in PAGES:
            async with client.get(served.url + path) as response:
                assert response.status == 401, path
                assert "/dashboard" in await response.text()
        client.cookie_jar.update_cookies({"mendbot_session": "made-up"})
        async with client.get(served.url + "/") as response:
            assert response.status == 401
        async with client.get(served.url + "/static/htmx.min.js") as response:
            assert response.status == 200


async def test_a_link_signs_its_user_in_once(served: Served) -> None:
    """The link's page uses nothing up; its POST sets an HttpOnly, SameSite=Strict session cookie and
    redirects home; the same link a second time is refused."""
    link = await served.signin.link(4242)
    assert link is not None
    user, token = _token(link)
    async with _session() as client:
        for _ in range(2):  # a chat client's link preview fetching the page does not use the link
            async with client.get(link) as page:
                assert page.status == 200 and 'id="signin"' in await page.text()
        async with client.post(
            f"{served.url}/signin", data={"u": user, "t": token}, allow_redirects=False
        ) as response:
            assert response.status == 303 and response.headers["Location"] == "/"
            cookie = response.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        async with client.get(served.url + "/") as home:
            assert home.status == 200 and "user 4242" in await home.text()
    async with _session() as other:
        async with other.post(f"{served.url}/signin", data={"u": user, "t": token}) as again:
            assert again.status == 401 and "was used already" in await again.text()
        async with other.get(link) as page:
            assert page.status == 401


async def test_an_expired_link_is_refused(served: Served) -> None:
    """A link opened after `dashboard.link_ttl_s` signs nobody in."""
    link = await served.signin.link(4242)
    assert link is not None
    user, token = _token(link)
    served.clock.skipped = served.signin.config.link_ttl_s + 1
    async with _session() as client:
        async with client.get(link) as page:
            assert page.status == 401
        async with client.post(f"{served.url}/signin", data={"u": user, "t": token}) as response:
            assert response.status == 401
        async with client.get(served.url + "/") as home:
            assert home.status == 401


async def test_a_link_is_bound_to_its_user(served: Served) -> None:
    """Alice's token with Bob's id is refused; a browser signed in as Alice cannot use Bob's link."""
    link = await served.signin.link(1)
    assert link is not None
    _, token = _token(link)
    async with _session() as client:
        async with client.post(f"{served.url}/signin", data={"u": "2", "t": token}) as forged:
            assert forged.status == 401
        async with await _sign_in(client, served, 1) as signed:
            assert signed.status == 303
        bobs = await served.signin.link(2)
        assert bobs is not None
        bob, bob_token = _token(bobs)
        async with client.get(bobs) as page:
            assert page.status == 403 and "someone else" in await page.text()
        async with client.post(f"{served.url}/signin", data={"u": bob, "t": bob_token}) as response:
            assert response.status == 403
    # Refused above, so it still works for Bob.
    async with (
        _session() as bobs_browser,
        bobs_browser.post(
            f"{served.url}/signin", data={"u": bob, "t": bob_token}, allow_redirects=False
        ) as response,
    ):
        assert response.status == 303


async def test_session_cookie_is_secure_behind_tls(served: Served) -> None:
    """With an https `dashboard.public_url` the links name it and the cookie is Secure."""
    served.signin.config = msgspec.structs.replace(
        served.signin.config, public_url="https://dash.example.org"
    )
    link = await served.signin.link(7)
    assert link is not None and link.startswith("https://dash.example.org/signin?u=7&t=")
    user, token = _token(link)
    async with (
        _session() as client,
        client.post(f"{served.url}/signin", data={"u": user, "t": token}, allow_redirects=False) as response,
    ):
        assert "Secure" in response.headers["Set-Cookie"]


async def test_dashboard_command_answers_only_its_user(dash_world: VirtualWorld, served: Served) -> None:
    """/dashboard gives Alice her own link, ephemerally; Mallory is refused (and recorded); #general is
    redirected; with no dashboard served it says how to turn it on."""
    alice, mallory = dash_world.users["alice"], dash_world.users["mallory"]
    result = await alice.slash(dash_world.dev, "dashboard")
    assert result.response is not None and result.response.flags.ephemeral
    text = reply_text(result)
    assert f"{served.url}/signin?u={alice.id}&t=" in text
    user, token = _token(text)
    assert user == str(alice.id) and await served.signin.owner(alice.id, token)
    refused = await mallory.slash(dash_world.dev, "dashboard")
    assert "Only allow-listed developers" in reply_text(refused) and "signin" not in reply_text(refused)
    elsewhere = await alice.slash(dash_world.general, "dashboard")
    assert "dev channel" in reply_text(elsewhere) and "signin" not in reply_text(elsewhere)
    await dash_world.quiesce()
    refusals = "SELECT COUNT(*) FROM actions WHERE kind = 'access:refused' AND user_id = :user"
    assert await sql_value(dash_world.bot.services.db, refusals, user=mallory.id) == 1
    await served.server.stop()
    off = await alice.slash(dash_world.dev, "dashboard")
    assert "dashboard.enabled" in reply_text(off)


async def test_hostile_text_is_escaped_under_a_strict_csp(
    dash_world: VirtualWorld, served: Served, seeded: tuple[str, str]
) -> None:
    """Every page carries the CSP; a run's payloads (description, events, diagnosis, diff, incident)
    come out as text: no tag of theirs reaches the page."""
    base, head = seeded
    run_id = await seed_hostile_run(dash_world, base, head)
    async with _session() as client:
        async with await _sign_in(client, served, 42):
            pass
        for path in ("/", "/runs", f"/runs/{run_id}", "/incidents", "/incidents/1", "/actions"):
            async with client.get(served.url + path) as response:
                assert response.status == 200, path
                csp = response.headers["Content-Security-Policy"]
                assert "script-src 'self'" in csp and "default-src 'none'" in csp
                assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
                html = await response.text()
                assert "<script>window" not in html and "<img src=x" not in html and "<svg onload" not in html
                assert 'href="javascript:' not in html
        async with client.get(f"{served.url}/runs/{run_id}") as response:
            html = await response.text()
        assert "&lt;script&gt;window.__pwned = 1" in html
        assert '<span class="add">+# &lt;a href=&#34;javascript:' in html  # the diff, highlighted, as text
        assert "0.0123" in html  # the model request's cost
        assert "edited: &lt;script&gt;" in html  # who withdrew an approval, and why
        assert html.count("<script") == 3  # only the two vendored libraries and the dashboard's own
        assert all(payload not in html for payload in PAYLOADS)


async def test_action_explorer_pages_and_filters(dash_world: VirtualWorld, served: Served) -> None:
    """120 records: pages of 50 by keyset cover every matching record once, newest first; kind, user,
    fingerprint and time narrow them."""
    db = dash_world.bot.services.db
    records = [
        ActionRecord(
            ts=1_700_000_000.0 + (i // 2),  # two records share each second: the cursor must keep both
            kind="command:roll" if i % 3 else "command:remind",
            source="seed",
            ok=i % 4 != 0,
            duration_ms=float(i),
            user_id=100 + i % 5,
            fingerprint="fp-roll" if i % 4 == 0 else None,
        )
        for i in range(120)
    ]
    await action_queries.insert_many(db, records)

    async def ids(query: str) -> list[int]:
        found: list[int] = []
        url: str | None = f"{served.url}/actions?{query}"
        while url is not None:
            async with client.get(url) as response:
                html = await response.text()
            found += [int(n) for n in re.findall(r'<tr class="(?:ok|failed)"><td>(\d+)</td>', html)]
            after = re.search(r'class="next" href="([^"]+)"', html)
            url = served.url + after.group(1).replace("&amp;", "&") if after else None
        return found

    async with _session() as client:
        async with await _sign_in(client, served, 42):
            pass
        everything = await ids("kind=")
        seeded = [i for i in everything if i > 0]
        assert len(seeded) == len(set(seeded)) >= 120
        rolls = await ids("kind=command:roll")
        assert len(rolls) == sum(1 for r in records if r.kind == "command:roll") == 80
        assert rolls == sorted(rolls, reverse=True)
        assert len(await ids("user=101")) == 24
        assert len(await ids("fingerprint=fp-roll")) == 30
        assert len(await ids("kind=command:roll&since=1700000050&until=1700000059")) == 14


async def test_nothing_on_the_dashboard_writes(served: Served) -> None:
    """Pages take GET only: POST, PUT and DELETE on them are refused, signed in or not."""
    async with _session() as client:
        async with await _sign_in(client, served, 42):
            pass
        for path in ("/", "/runs", "/runs/1", "/actions"):
            for method in ("POST", "PUT", "DELETE"):
                async with client.request(method, served.url + path) as response:
                    assert response.status == 405, (method, path)


@pytest.mark.parametrize("port_taken", [False, True], ids=["free port", "configured port taken"])
async def test_the_playground_prints_a_link_that_signs_alice_in(tmp_path: Path, port_taken: bool) -> None:
    """`mendbot play` serves the dashboard and prints Alice's sign-in link; opening it signs her in —
    also when something else holds the configured port (a second playground, a test): the playground
    then serves on a port the system picks."""
    config = tmp_path / "config.yaml"
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1] if port_taken else 0
    config.write_text(f"health: {{enabled: false}}\ndashboard: {{port: {port}}}\n")
    playground = await PlaygroundProcess.start(config, code=REPO)
    try:
        match = await playground.expect(r"^dashboard: (http://127\.0\.0\.1:\d+)/signin\?u=(\d+)&t=([\w-]+)  ")
        url, user, token = match.groups()
        async with _session() as client:
            async with client.get(url + "/") as before:
                assert before.status == 401
            async with client.post(f"{url}/signin", data={"u": user, "t": token}) as signed:
                assert signed.status == 200 and f"user {user}" in await signed.text()
                assert "<h1>Overview</h1>" in await signed.text()
    finally:
        holder.close()
        assert await playground.finish() == 0


async def test_the_audit_page_and_its_charts(dash_world: VirtualWorld, served: Served) -> None:
    """/audit shows the self-audit and the spending per day, with its three PNG charts; a period it
    cannot audit is explained, and an unknown chart is a 404."""
    from tests.test_audit import seed

    await seed(dash_world.bot.services.db, dash_world.bot.services.clock().timestamp())
    async with _session() as client:
        async with await _sign_in(client, served, 42):
            pass
        async with client.get(f"{served.url}/audit?period=7d") as response:
            html = await response.text()
        assert response.status == 200 and "📋 <strong>Self-audit</strong> · last 7d" in html
        assert "<h2>Spending per day (UTC)</h2>" in html and "$1.00" in html
        charts = re.findall(r'<img src="(/audit/[a-z0-9_]+\.png\?period=7d)"', html)
        assert len(charts) == 3
        for chart in charts:
            async with client.get(served.url + chart) as png:
                assert png.status == 200 and png.content_type == "image/png"
                assert (await png.read()).startswith(b"\x89PNG")
        async with client.get(f"{served.url}/audit?period=soon") as bad:
            assert bad.status == 400 and "isn&#39;t a period I can audit" in await bad.text()
        async with client.get(f"{served.url}/audit/nothing.png") as missing:
            assert missing.status == 404


async def test_the_overview(dash_world: VirtualWorld, served: Served, seeded: tuple[str, str]) -> None:
    """The overview shows who executes each run in flight, the open incidents, today's spend against
    the daily budget, and this process's leadership and shards."""
    base, head = seeded
    run_id = await seed_hostile_run(dash_world, base, head)
    await dash_world.bot.services.improve.runs.event(
        run_id, "executor", actor="system", detail={"executor": "worker-a", "job_id": 3}
    )
    async with _session() as client:
        async with await _sign_in(client, served, 42):
            pass
        async with client.get(served.url + "/") as response:
            html = await response.text()
    assert "Executed by: <strong>worker-a</strong> (run 1)" in html
    assert '<p class="big">$0.0123</p>' in html and "of $20.00 a day" in html
    assert '<a href="/incidents/1">1</a>' in html and f'<a href="/runs/{run_id}">' in html
    assert "<dt>Leadership</dt><dd>leader (sole)</dd>" in html
    assert "<dt>Discord</dt><dd>1 of 1 shard(s) connected, 0 ms</dd>" in html


async def test_secrets_are_redacted_on_every_page(dash_world: VirtualWorld, served: Served) -> None:
    """A secret the bot knows, stored raw in a run, its event and an action record (as a row written
    before the bot knew it would be), shows only as [redacted] on the pages that show them."""
    secret = "hunter2-the-discord-token-value"
    services = dash_world.bot.services
    services.redactor.add(secret)
    now = services.clock().timestamp()
    leaked = await run_queries.insert(
        services.db,
        {"kind": "fix", "state": "failed", "requester_id": 42, "description": f"leak {secret}",
         "slug": "leak", "failure_reason": f"token {secret}", "created_at": now, "updated_at": now},
        actor="user:42",
        detail={"text": secret},
    )  # fmt: skip
    await action_queries.insert_many(
        services.db,
        [ActionRecord(ts=now, kind="command:roll", source="seed", ok=False, duration_ms=1.0,
                      error_type="ValueError", error_message=f"bad {secret}", fingerprint="fp-leak")],
    )  # fmt: skip
    async with _session() as client:
        async with await _sign_in(client, served, 42):
            pass
        for path in (f"/runs/{leaked}", "/runs", "/actions", "/actions?fingerprint=fp-leak"):
            async with client.get(served.url + path) as response:
                html = await response.text()
            assert secret not in html, path
            assert "[redacted]" in html, path


async def test_a_runs_page_reads_as_content_not_data(dash_world: VirtualWorld, served: Served) -> None:
    """A run's page: the diagnosis and plan as labelled prose and lists, the checks ✅/❌ with each
    output folded (a failing one open), the proof as the chat shows it, the timeline in stages with one
    sentence per event, the evidence pack the agent was given, and who asked by name — not JSON."""
    from mendbot.db import proofs as proof_queries
    from mendbot.improve.proof.verdict import ProofItem, Side

    runs = dash_world.bot.services.improve.runs
    alice = dash_world.users["alice"]
    await dash_world.users["alice"].send(dash_world.general, "hello")  # the bot has seen her name
    run = await runs.create("fix", alice.id, dash_world.dev.id, None, "the roll is broken")
    evidence = {"chars": 31, "suspects": ["cogs/dice.py:roll"], "text": "# Evidence\nthe pack"}
    diagnosis = {"root_cause": "sides - 6 divides by zero", "files": ["cogs/dice.py"]}
    plan = {"risk": "low", "changes": [{"file": "cogs/dice.py", "change": "guard the divisor"}]}
    failing = {
        "command": "pytest -q",
        "ok": False,
        "exit_code": 1,
        "duration_s": 2.5,
        "output": "E   ZeroDivisionError\n1 failed",
    }
    passing = {**failing, "command": "ruff check .", "ok": True, "exit_code": 0, "output": "All passed"}
    checks = {"ok": False, "sha": "a" * 40, "summary": "", "checks": [passing, failing]}
    for state, event, detail in (
        ("observing", "evidence", evidence),
        ("investigating", "diagnosis", diagnosis),
        ("planning", "plan", plan),
    ):
        await runs.transition(run.id, state, actor="pipeline")  # type: ignore[arg-type]
        await runs.event(run.id, event, actor="agent", detail=detail)
    await runs.event(run.id, "checks", actor="pipeline", detail=checks)
    before = Side(False, "error shown: ZeroDivisionError", 0.007)
    item = ProofItem("replay", "!roll 2d6", before, Side(True, "answered “🎲 2d6 → 7”", 0.005), "proves")
    await proof_queries.insert(
        dash_world.bot.services.db, run_id=run.id, stage="verify", sha="b" * 40, base_sha="c" * 40,
        verdict="proven", reason="gone on the branch", items=[item.to_dict()], overhead_s=1.0, now=1.0,
    )  # fmt: skip
    async with _session() as client:
        async with await _sign_in(client, served, 42):
            pass
        async with client.get(f"{served.url}/runs/{run.id}") as response:
            html = await response.text()
    assert '<h3>Root cause</h3><p class="text">sides - 6 divides by zero</p>' in html
    assert '<li class="text">cogs/dice.py — guard the divisor</li>' in html and 'class="risk low"' in html
    assert (
        "<details open><summary>❌ <code>pytest -q</code>" in html
        and "E   ZeroDivisionError\n1 failed" in html
    )
    assert "<details><summary>✅ <code>ruff check .</code>" in html  # a passing check's output folded
    assert "<strong>proven by replay</strong> — gone on the branch" in html
    assert '<td class="text">❌ error shown: ZeroDivisionError (7 ms)</td>' in html
    assert '<tr class="stage"' in html and "🧠 investigating" in html
    assert "gathered the evidence pack: 31 characters, 1 suspect(s)" in html
    assert "# Evidence\nthe pack" in html
    assert f'title="Discord id {alice.id}">alice</span>' in html
    outside_folds = re.sub(r"<pre class=\"detail\">.*?</pre>", "", html, flags=re.S)
    assert '"root_cause"' not in outside_folds and "{&#39;" not in outside_folds


async def test_the_overview_says_what_the_process_status_means(
    dash_world: VirtualWorld, served: Served
) -> None:
    """The overview's status panel says failing and why (an extension that did not load), its figures in
    words; no raw True, None or {} as the process table showed."""
    dash_world.bot.extension_failures["cogs.coin"] = "ImportError: no module named coins"
    async with _session() as client:
        async with await _sign_in(client, served, 42):
            pass
        async with client.get(served.url + "/") as response:
            html = await response.text()
    panel = html[html.index('<section class="status') : html.index("</section>")]
    assert '<section class="status failing"' in panel and "❌ Failing" in panel
    assert "<li>1 extension(s) failed to load and are not serving: cogs.coin</li>" in panel
    assert "<dt>Storage</dt><dd>writable</dd>" in panel
    assert not re.search(r">(True|False|None|\{\}|\[\])<", panel)

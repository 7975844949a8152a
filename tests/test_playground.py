"""The README's playground examples, run as written, and answers where silence used to be."""

from __future__ import annotations

import asyncio
import io
import re
import time
from pathlib import Path
from typing import Any

import pytest

from mendbot.kernel.settings import Settings
from mendbot.tools.playground import Playground, PlaygroundError, VirtualWorld
from tests.harness.discord import make_settings, reply_text, running_world
from tests.harness.sql import sql


async def _play(world: VirtualWorld, *lines: str) -> str:
    """Run lines through the playground as a user types them; what it printed."""
    out = io.StringIO()
    playground = Playground(world, out=out)
    for line in lines:
        try:
            await playground.execute(line)
        except PlaygroundError as exc:
            out.write(f"! {exc}\n")
    await world.quiesce()
    playground.print_changes()
    return out.getvalue()


async def _two_incidents(world: VirtualWorld) -> None:
    """Two failures never seen before: each opens a (notice) incident, #1 then #2."""
    for kind in ("command:first", "command:second"):
        world.bot.services.recorder.record(
            kind, "test", ok=False, duration_ms=1.0, error=RuntimeError(f"{kind} broke")
        )
    await world.quiesce()
    assert [i.id for i in world.bot.services.incidents.active()] != []


async def test_incident_state_change_in_the_positional_form(world: VirtualWorld) -> None:
    """`/incident <id> resolve` works as the README shows it, without `action=`."""
    await _two_incidents(world)
    out = await _play(world, "#dev", "/incident 1 resolve")
    assert "Incident #1 is now resolved." in out
    assert world.bot.services.incidents.get(1).state == "resolved"


async def test_incidents_lists_newest_first(world: VirtualWorld) -> None:
    """`/incidents` shows the newest incident first, even when an older one was seen again since."""
    await _two_incidents(world)
    await world.env.advance_time(5)
    world.bot.services.recorder.record(
        "command:first", "test", ok=False, duration_ms=1.0, error=RuntimeError("command:first broke")
    )
    await world.quiesce()
    assert world.bot.services.incidents.get(1).count == 2  # the same incident, seen again
    out = await _play(world, "/incidents")
    assert out.index("**#2**") < out.index("**#1**")


async def test_cancel_of_a_missing_run_is_a_reply_not_an_incident(world: VirtualWorld) -> None:
    """`@mendbot cancel run 3` with no run 3 is answered and recorded as a user's mistake, not a failure."""
    out = await _play(world, "#dev", "@mendbot cancel run 3")
    assert "mendbot (m1): There is no run #3." in out
    assert world.bot.services.incidents.active() == []
    rows = await sql(
        world.bot.services.db,
        "SELECT ok, extra FROM actions WHERE kind = 'listener:on_message' AND source = 'Improve'",
    )
    assert all(ok == 1 for ok, _ in rows)
    assert any("There is no run #3." in (extra or "") for _, extra in rows)


async def test_ship_it_with_nothing_to_ship_is_answered(world: VirtualWorld) -> None:
    """ "ship it" to the bot with no proposal in sight says there is nothing to ship and how it works."""
    out = await _play(world, "#dev", "@mendbot ship it")
    assert "There's nothing to ship here: reply **ship it** to a proposal's message" in out


async def test_rollback_of_a_missing_run_says_so(world: VirtualWorld) -> None:
    """`/rollback 1` with no run 1 says the run does not exist (not that a model key is missing)."""
    out = await _play(world, "#dev", "/rollback 1", "/rollback 1 now=true")
    assert out.count("There is no run #1.") == 2
    assert "ANTHROPIC_API_KEY" not in out


async def test_every_mention_without_a_model_key_gets_an_answer(world: VirtualWorld) -> None:
    """A second (and third) mention without a key is answered too, not typing… then nothing."""
    out = await _play(world, "@mendbot hi", "@mendbot are you there?", "@mendbot hello?")
    assert "(m1): I can't chat yet" in out
    assert "(m2): Still no model API key" in out
    assert "(m3): Still no model API key" in out


async def test_virtual_clock_starts_at_the_real_time(settings: Settings) -> None:
    """The playground's virtual clock starts now, not at a fixed date in the past."""
    async with running_world(settings, real_clock=True) as world:
        assert abs(world.env.now().timestamp() - time.time()) < 120


async def test_bad_choice_is_a_playground_error_naming_the_choices(world: VirtualWorld) -> None:
    """`/incident 1 action=bogus` is a reported line listing the allowed values."""
    out = await _play(world, "/incident 1 action=bogus")
    assert "! action must be one of show, acknowledge, mute, resolve, reopen, not 'bogus'" in out


async def test_an_option_written_as_discord_shows_it_is_understood(world: VirtualWorld) -> None:
    """`/run 1 action:resume`, as the bot's replies and Discord's client write it, fills the option."""
    out = await _play(world, "#dev", "/run 1 action:resume", "/incident 1 action:bogus")
    assert "There is no run #1." in out
    assert "! action must be one of show, acknowledge, mute, resolve, reopen, not 'bogus'" in out


@pytest.fixture
def readme_cog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The README's "Your own cog" example, as a module on the path; its name."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Your own cog", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "readme_coin.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "readme_coin"


async def test_readme_own_cog_example_loads_observes_and_answers(tmp_path: Path, readme_cog: str) -> None:
    """The README's "Your own cog" example works as written: loaded, answered, a UserError is a reply."""
    settings = make_settings(tmp_path / "data")
    async with running_world(settings, extra_extensions=[readme_cog]) as world:
        flips = await world.users["alice"].slash(world.general, "coin", times=3)
        too_many = await world.users["alice"].slash(world.general, "coin", times=50)
        help_text = reply_text(await world.users["alice"].slash(world.general, "help"))
        await world.quiesce()
        recorded = [
            ok
            for (ok,) in await sql(
                world.bot.services.db, "SELECT ok FROM actions WHERE kind = 'command:coin' ORDER BY id"
            )
        ]
    assert len(reply_text(flips).split()) == 3 and set(reply_text(flips).split()) <= {"H", "T"}
    assert reply_text(too_many) == "I can flip 1 to 20 coins."
    assert "`/coin [times]` — Flip coins." in help_text
    assert recorded == [1, 1]


async def test_playground_plays_one_shard_without_shard_settings(world: VirtualWorld) -> None:
    """With no shard_count the virtual Discord runs the one shard Discord recommends for a small bot."""
    assert world.bot.shard_count == 1 and world.bot.gateway_connected
    out = await _play(world, "!roll 2d6")
    assert "🎲 `2d6` →" in out


async def test_playground_runs_every_configured_shard(tmp_path: Path) -> None:
    """shard_count 2 in the playground runs both virtual shards, is connected on both and still answers."""
    settings = make_settings(tmp_path / "data", discord={"shard_count": 2})
    async with running_world(settings) as world:
        assert [(shard.id, shard.connected) for shard in world.bot.shard_states()] == [(0, True), (1, True)]
        out = await _play(world, "!roll 2d6")
        assert "🎲 `2d6` →" in out


async def test_runs_shows_each_state_with_its_own_icon(world: VirtualWorld) -> None:
    """/runs marks a resolved, a deployed, a watching and a rolled-back run each with its own icon (all
    four were ⏳) and its state by name, and /run N names who asked by name with the id beside it."""
    runs = world.bot.services.improve.runs
    path = ["observing", "investigating", "planning", "editing", "verifying", "proposing",
            "awaiting_approval", "merging", "deployed", "watching", "resolved"]  # fmt: skip
    for last in ("resolved", "deployed", "watching", "rolled_back"):
        run = await runs.create("fix", world.users["alice"].id, world.dev.id, None, f"ends {last}")
        for state in path[: path.index(last) + 1] if last != "rolled_back" else path:
            await runs.transition(run.id, state, actor="pipeline")  # type: ignore[arg-type]
        if last == "rolled_back":
            await runs.rolled_back(run.id, actor=f"user:{world.users['alice'].id}", detail={})
    out = await _play(world, "#dev", "/runs", "/run 4")
    for icon, number, state in (("✅", 1, "resolved"), ("🚀", 2, "deployed"), ("👁️", 3, "watching"),
                                ("⏪", 4, "rolled back")):  # fmt: skip
        assert f"**#{number}** fix {icon} {state} $" in out, out
    assert f"**Origin:** requested by @alice (id {world.users['alice'].id})" in out
    assert "⏪ rolled back · 0.0 s — alice: rollback: revert" in out and "user:" not in out


async def test_run_n_tells_its_stages_in_peoples_words(tmp_path: Path) -> None:
    """/run N lists the run's stages by name, each with how long it took by the bot's clock (the
    playground's), what it cost and who did it in people's words: no `model_request by gateway`,
    `agent_session by agent`, no raw `awaiting_approval` or `rolled_back`."""
    async with running_world(make_settings(tmp_path / "data"), playground=True) as world:
        runs = world.bot.services.improve.runs
        run = await runs.create("fix", world.users["alice"].id, world.dev.id, None, "the dice are broken")
        await world.env.advance_time(2)
        await runs.transition(run.id, "observing", actor="pipeline")
        await runs.transition(run.id, "investigating", actor="pipeline")
        await runs.event(run.id, "model_request", actor="gateway", cost_usd=0.0025, detail={"model": "m"})
        await runs.event(run.id, "agent_session", actor="agent", detail={"outcome": "success", "turns": 1})
        await world.env.advance_time(12)
        for state in ("planning", "editing", "verifying", "proposing", "awaiting_approval"):
            await runs.transition(run.id, state, actor="pipeline")
        out = await _play(world, "#dev", "/run 1")
    # At least the time advanced in each, and not the next one's: the bot's own short timers fire in real
    # time too, and each one that does moves the playground's clock on (a loaded machine gets to some).
    assert 2.0 <= _stage_s(out, "🕒 queued", "alice") < 12, out
    assert _stage_s(out, "🔎 observing", "mendbot") < 12, out
    assert 12 <= _stage_s(out, "🧠 investigating", "mendbot", cost="$0.0025") < 24, out
    assert _stage_s(out, "👀 awaiting approval", "mendbot", so_far=True) >= 0.0, out
    for raw in ("model_request", "agent_session", "by gateway", "by agent", "awaiting_approval", "`"):
        assert raw not in out.split("**Stages:**")[1], out


def _stage_s(out: str, stage: str, who: str, *, cost: str | None = None, so_far: bool = False) -> float:
    """The seconds `/run N` gives a stage's line ("🕒 queued · 2.0 s — alice"); fails when it has no such
    line."""
    pattern = rf"^{re.escape(stage)} · (\d+(?:\.\d)?) s{' so far' if so_far else ''}"
    pattern += (rf" · {re.escape(cost)}" if cost else "") + rf" — {re.escape(who)}$"
    found = re.search(pattern, out, re.MULTILINE)
    assert found is not None, (pattern, out)
    return float(found.group(1))


async def test_an_incident_names_whose_calls_failed(world: VirtualWorld) -> None:
    """/incident N lists its latest failures with the name of who hit each (it said "user 1456…")."""
    alice = world.users["alice"]
    await alice.send(world.general, "hello")  # the bot has seen her, by the name she goes by
    world.bot.services.recorder.record(
        "command:flaky", "test", ok=False, duration_ms=1.0, error=RuntimeError("broke"), user_id=alice.id
    )
    await world.quiesce()
    out = await _play(world, "#dev", "/incident 1")
    assert " · alice" in out and f"user {alice.id}" not in out, out


async def test_the_bot_in_the_playground_is_named_mendbot(world: VirtualWorld) -> None:
    """The virtual Discord's bot user is mendbot — the name its messages, mentions and records carry (the
    demo's dashboard showed "TestBot", the virtual Discord's default)."""
    assert world.bot.user is not None and world.bot.user.name == "mendbot"
    await world.users["alice"].send(world.general, "hello")
    await world.quiesce()
    assert world.bot.services.people.name(world.bot.user.id) == "mendbot"


async def test_a_deferred_answer_is_not_printed_empty(
    world: VirtualWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interactive playground prints what changed every half second: a slash command still "thinking"
    (deferred, nothing said yet) is not printed as an empty message before its answer, which is printed
    whole once it comes (the demo's `/rollback 1 now=true` showed `mendbot (m12):` and nothing)."""
    audit = world.bot.services.audit
    original = audit.report
    reached, gate = asyncio.Event(), asyncio.Event()

    async def held(*args: Any, **kwargs: Any) -> Any:
        reached.set()
        await gate.wait()
        return await original(*args, **kwargs)

    monkeypatch.setattr(audit, "report", held)
    out = io.StringIO()
    playground = Playground(world, out=out, echo=False, channel="dev")
    asking = asyncio.create_task(playground.execute("/audit 24h"))
    await reached.wait()
    playground.print_changes()  # as `_interactive` does while a line is answered
    gate.set()
    await asking
    await world.quiesce()
    playground.print_changes()
    printed = out.getvalue().splitlines()
    assert not any(re.fullmatch(r"\[#dev\] mendbot \(m\d+\):", line) for line in printed), printed
    assert any(line.startswith("[#dev] mendbot (m1): 📋 **Self-audit**") for line in printed), printed

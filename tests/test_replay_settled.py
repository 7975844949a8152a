"""The replay learns that nothing will answer a call as soon as the bot has done all the call made it do:
the launcher (`mendbot.trust.replay_launch`, in a process of its own, over a real unix socket) reports an
event settled only once every task made while handling it — and every task those made — has ended, and
never once a task factory of the bot's has replaced its own; the observer (`replay_calls.call`, against a
real discord.py bot on the loopback Discord) takes that report for "no answer" only for its own call,
and takes an answer that comes first."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import discord
import pytest

from mendbot.improve.proof import replay, replay_calls, replay_reports
from mendbot.improve.proof.replay_calls import MEMBER
from mendbot.improve.proof.replay_plan import ReplayCase
from mendbot.trust import replay_launch
from mendbot.trust.loopback_discord import DiscordDouble

# A bot's handling of two events as the launcher sees it: a handler that makes a task that makes a task
# (each says when it ends), and, for the second event, a bot that installs a task factory of its own.
SCRIPT = textwrap.dedent(
    """\
    import asyncio, socket, sys
    sys.path.insert(0, {launcher!r})
    import replay_launch

    watch = replay_launch._Watch({root!r}, socket.socket(socket.AF_UNIX))
    watch.sink.connect({sock!r})
    settling = replay_launch._Settling(watch)

    async def grandchild():
        await asyncio.sleep(0.05)
        watch.send({{"e": "mark", "what": "grandchild ended"}})

    async def child():
        await asyncio.sleep(0.05)
        asyncio.get_running_loop().create_task(grandchild())
        watch.send({{"e": "mark", "what": "child ended"}})

    async def handle(key):
        settling.begin(key)
        token = replay_launch._EVENT.set(key)
        try:
            asyncio.get_running_loop().create_task(child())
        finally:
            replay_launch._EVENT.reset(token)
            settling.end(key)

    async def main():
        loop = asyncio.get_running_loop()
        settling.install(loop)
        await handle("MESSAGE_CREATE:1")
        await asyncio.sleep(0.3)
        loop.set_task_factory(None)  # the bot's own factory from now on
        await handle("MESSAGE_CREATE:2")
        await asyncio.sleep(0.3)
        watch.send({{"e": "mark", "what": "over"}})

    asyncio.run(main())
    """
)


def test_an_event_is_settled_once_every_task_it_made_has_ended(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "watch.sock"))
    server.listen(1)
    script = SCRIPT.format(
        launcher=str(Path(replay_launch.__file__).parent),
        root=str(tmp_path),
        sock=str(tmp_path / "watch.sock"),
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)
    connection, _ = server.accept()
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    assert process.wait(timeout=60) == 0
    said = [
        event.get("what") or f"settled {event['k']}"
        for event in map(json.loads, received.decode().splitlines())
    ]
    assert said == [
        "child ended",
        "grandchild ended",
        "settled MESSAGE_CREATE:1",
        "child ended",
        "grandchild ended",
        "over",  # no report for the event handled under the bot's own factory: the observer waits it out
    ]


def test_only_a_members_message_interaction_or_reaction_is_followed() -> None:
    with socket.socket(socket.AF_UNIX) as sink:
        settling = replay_launch._Settling(replay_launch._Watch("/", sink))
    message = {"t": "MESSAGE_CREATE", "op": 0, "d": {"id": "11", "content": "!roll"}}
    reaction = {"t": "MESSAGE_REACTION_ADD", "op": 0, "d": {"message_id": "12", "emoji": {"name": "x"}}}
    assert settling.key(json.dumps(message).encode()) == "MESSAGE_CREATE:11"
    assert settling.key(json.dumps(reaction).encode()) == "MESSAGE_REACTION_ADD:12"
    assert settling.key(json.dumps({"t": "GUILD_CREATE", "op": 0, "d": {"id": "1"}}).encode()) is None
    assert settling.key(b'{"t": "MESSAGE_CREATE", "d": ') is None  # not JSON: not followed


@pytest.fixture
async def observer() -> AsyncIterator[DiscordDouble]:
    """A discord.py bot that answers `!echo` a moment after it reads it, and nothing else."""
    async with DiscordDouble() as double:
        with double.pointed_at():
            client = discord.Client(intents=discord.Intents.all(), guild_ready_timeout=0.05)

            @client.event
            async def on_message(message: discord.Message) -> None:
                if message.content.startswith("!echo"):
                    await asyncio.sleep(0.2)
                    await message.channel.send(message.content.removeprefix("!echo "))

            await client.login(double.token)
            task = asyncio.create_task(client.connect(reconnect=False))
            try:
                await asyncio.wait_for(client.wait_until_ready(), timeout=30)
                yield double
            finally:
                await client.close()
                await asyncio.wait_for(task, timeout=10)


def _case(text: str) -> ReplayCase:
    name = text.split(maxsplit=1)[0]
    return ReplayCase(
        key=text,
        kind=f"command:{name[1:]}",
        name=name,
        options={"text": text},
        fingerprint=None,
        recorded_ms=1,
    )


async def _replayed(
    observer: DiscordDouble, text: str, reports: replay_reports.Reports, timeout_s: float = 300.0
) -> replay.ReplayResult:
    general = observer.guild.channel("general")
    case = _case(text)
    seen = await replay_calls.call(observer, general, case, timeout_s, reports)
    return seen.result(case.key, observer, general, (), replay.Watch())


def _reporting(observer: DiscordDouble, reports: replay_reports.Reports, *, own: bool) -> asyncio.Task[None]:
    """The launcher's reports, as it would send them once the member's message is handled: another
    event's settling, and (`own`) this one's."""

    async def report() -> None:
        said = await observer.wait_for_message(lambda m: m["content"].startswith("!"), 60, author=MEMBER)
        reports._take({"e": "settled", "k": "MESSAGE_CREATE:1"})
        if own:
            reports._take({"e": "settled", "k": f"MESSAGE_CREATE:{said['id']}"})

    return asyncio.create_task(report())


async def test_a_call_the_bot_is_done_with_is_no_answer_without_waiting_out_its_time(
    observer: DiscordDouble,
) -> None:
    reports = replay_reports.Reports()
    reporting = _reporting(observer, reports, own=True)
    result = await asyncio.wait_for(_replayed(observer, "!nothing", reports), timeout=60)  # not its 300 s
    await reporting
    assert not result.answered
    assert result.shown() == "no answer (not answered: the bot finished with it without a word)"


async def test_another_events_settling_is_not_this_calls(observer: DiscordDouble) -> None:
    reports = replay_reports.Reports()
    reporting = _reporting(observer, reports, own=False)
    result = await _replayed(observer, "!nothing", reports, timeout_s=2.0)
    await reporting
    assert not result.answered and result.shown() == "no answer"  # its time ran out: no report of its own


async def test_an_answer_that_comes_before_the_report_is_the_answer(observer: DiscordDouble) -> None:
    reports = replay_reports.Reports()
    result = await asyncio.wait_for(_replayed(observer, "!echo hello", reports), timeout=60)
    assert result.answered and result.reply == "hello"


async def test_a_button_whose_view_nothing_shows_any_more_is_no_answer_saying_so(
    observer: DiscordDouble,
) -> None:
    reports = replay_reports.Reports()
    reporting = _reporting(observer, reports, own=True)
    shown_by = {"kind": "command:tab", "name": "!tab", "options": {"text": "!tab"}}
    case = ReplayCase(
        key="split", kind="view:Tab.split", name="Tab.split", options={"custom_id": "tab-split"},
        fingerprint=None, recorded_ms=1, shown_by=shown_by,
    )  # fmt: skip
    general = observer.guild.channel("general")
    seen = await asyncio.wait_for(replay_calls.call(observer, general, case, 300.0, reports), timeout=60)
    await reporting
    result = seen.result(case.key, observer, general, (), replay.Watch())
    assert result.shown() == "no answer (not answered: what showed it, `!tab`, was not answered)"

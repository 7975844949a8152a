"""The replay's first call finds the bot steady: the launcher (`mendbot.trust.replay_launch._Steady`, fed
gateway messages as discord.py's reader hands them over, reporting over a real unix socket) says
`steady` only once every guild READY named has been created and mendbot's own cogs — added to a bot it is
attached to once the bot has connected — are in; a call sent before could find the bot's cogs changing
under a command that walks them (a help command), and fail on one side of the proof only."""

from __future__ import annotations

import asyncio
import json
import socket

from mendbot.trust import replay_launch


def _message(kind: str, data: dict[str, object]) -> bytes:
    return json.dumps({"op": 0, "t": kind, "s": 1, "d": data}).encode()


def _reports(sink: socket.socket) -> list[str]:
    sink.setblocking(False)
    try:
        received = sink.recv(65536)
    except BlockingIOError:
        return []
    return [json.loads(line)["e"] for line in received.decode().splitlines()]


async def test_steady_once_every_guild_is_created_and_mendbots_cogs_are_in() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        cogs_added, asked = asyncio.Event(), asyncio.Event()
        asked_for: list[object] = []

        async def surfaced(client: object) -> None:
            asked_for.append(client)
            asked.set()
            await cogs_added.wait()

        class Connection:
            def _get_client(self) -> str:
                return "the bot"

        class Gateway:
            _connection = Connection()

        steady = replay_launch._Steady(replay_launch._Watch("/", ours), surfaced)
        ws = Gateway()
        steady.read(_message("GUILD_CREATE", {"id": "1"}), ws)  # before READY: not one READY named
        steady.read(_message("READY", {"guilds": [{"id": "1", "unavailable": True}, {"id": "2"}]}), ws)
        steady.read(_message("GUILD_CREATE", {"id": "1"}), ws)
        steady.read(_message("MESSAGE_CREATE", {"id": "2", "content": '"GUILD_CREATE"'}), ws)
        await asyncio.sleep(0)
        assert steady.task is None and asked_for == []  # guild 2 not created yet
        steady.read(_message("GUILD_CREATE", {"id": "2"}), ws)
        assert steady.task is not None
        await asked.wait()
        assert asked_for == ["the bot"] and _reports(theirs) == []  # mendbot's cogs still being added
        cogs_added.set()
        await steady.task
        assert _reports(theirs) == ["steady"]
        steady.read(_message("GUILD_CREATE", {"id": "3"}), ws)  # a guild joined later: said once only
        assert _reports(theirs) == []


async def test_a_bot_in_no_guild_with_nothing_attached_is_steady_at_ready() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        steady = replay_launch._Steady(replay_launch._Watch("/", ours), None)
        steady.read(_message("READY", {"guilds": []}), object())
        assert steady.task is not None
        await steady.task
        assert _reports(theirs) == ["steady"]


async def test_steady_is_said_even_when_asking_for_mendbots_cogs_fails() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:

        async def surfaced(client: object) -> None:
            raise RuntimeError("not attached the usual way")

        steady = replay_launch._Steady(replay_launch._Watch("/", ours), surfaced)
        steady.read(_message("READY", {"guilds": []}), object())  # no `_connection`: also an error
        assert steady.task is not None
        await steady.task
        assert _reports(theirs) == ["steady"]

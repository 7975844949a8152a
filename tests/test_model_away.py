"""A model that is away is an environment incident, not a bug and not an agent that did nothing: with a
key set and the model's API not listening, a real `mendbot run` on the loopback Discord says in the run's
status what it waits for, answers /runs and every line addressed to it within seconds meanwhile, ends
the run as "could not reach the model" (no stage logged a success), and names the incident once in
#dev. The gateway's side on its own: it waits for an API that refuses connections and gives up after
`wait_s`, goes on when the API comes back meanwhile, and a connection dropped without an answer is sent
again only by the agent, reserved anew."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anthropic
import pytest
from aiohttp import web

from mendbot.trust.gateway import ModelGateway
from mendbot.trust.loopback_discord import DiscordDouble
from mendbot.trust.loopback_discord_model import message_text
from tests.harness.live_bot import LiveBot, free_port, live_config
from tests.harness.repo import copy_of_bot

ANSWER_S = 5  # "within seconds": what a person waiting in the channel would call an answer


def _says(pattern: str) -> Callable[[dict[str, Any]], bool]:
    regex = re.compile(pattern, re.S)

    def says(message: dict[str, Any]) -> bool:
        return regex.search(message_text(message)) is not None

    return says


def _replying_to(message: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    def replies(candidate: dict[str, Any]) -> bool:
        reference = candidate.get("message_reference") or {}
        return str(reference.get("message_id")) == str(message["id"])

    return replies


@contextlib.asynccontextmanager
async def _not_listening() -> AsyncIterator[str]:
    """An address on 127.0.0.1 where nothing listens: every connection is refused."""
    yield f"http://127.0.0.1:{free_port()}"


@contextlib.asynccontextmanager
async def _dropping() -> AsyncIterator[str]:
    """A loopback server that takes every connection and closes it without a word."""

    async def drop(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.cli
async def test_a_run_whose_model_is_away_says_so_answers_meanwhile_and_ends_as_such(tmp_path: Path) -> None:
    """/fix with the model's API away: the run's status says it waits for the model; /runs and a
    mention are answered within seconds while it waits; the run fails "could not reach the model" (not
    "the agent made no change"), no agent session is logged a success, and #dev has one environment
    incident for the model, however many asked it."""
    repo = copy_of_bot(tmp_path / "repo")
    async with DiscordDouble() as discord_api, _not_listening() as model_url:
        dev = discord_api.guild.channel("dev")
        alice = int(discord_api.member("alice")["id"])
        home = tmp_path / "bot"
        config = live_config(
            discord_api,
            home,
            repo_dir=repo,
            access={"allowed_user_ids": [alice]},
            observe={"announce_new_fingerprints": False},
            improve={"checks": ["python -c pass"], "model_wait_s": 20},
        )
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model_url}
        async with await LiveBot.start(discord_api, config, home, code=repo, env=env) as bot:
            try:
                fix = await discord_api.slash(dev, "fix", description="the roll command is broken")
                await discord_api.acknowledged(fix, timeout=ANSWER_S)
                await discord_api.wait_for_message(
                    _says(r"^🤖 \*\*Run #1\*\*.*waiting for the model"), channel=dev, timeout=120
                )
                runs = await discord_api.slash(dev, "runs")
                listed = await discord_api.response_to(runs, timeout=ANSWER_S)
                assert "#1" in message_text(listed)
                said = await discord_api.mention(dev, "how is it going?", author="alice")
                await discord_api.wait_for_message(_replying_to(said), channel=dev, timeout=ANSWER_S)
                said = await discord_api.mention(dev, "tell me a joke", author="alice")
                answer = await discord_api.wait_for_message(_replying_to(said), channel=dev, timeout=ANSWER_S)
                # Said at once from what the runs' gateway knows, not after chat's own try at the API (the
                # keyless question, since no model can decide what the words ask for).
                assert "can't reach the model's API right now" in message_text(answer), message_text(answer)
                general = discord_api.guild.channel("general")  # chat, where no request is made
                said = await discord_api.mention(general, "tell me a joke", author="bob")
                answer = await discord_api.wait_for_message(
                    _replying_to(said), channel=general, timeout=ANSWER_S
                )
                assert "can't reach the model's API right now" in message_text(answer), message_text(answer)
                report = await discord_api.wait_for_message(
                    _says(r"Run #1 failed.*could not reach the model"), channel=dev, timeout=120
                )
                assert "made no change" not in message_text(report)
                incidents = [
                    message
                    for message in discord_api.bot_messages(dev)
                    if re.search(r"Environment incident.*model:unreachable", message_text(message), re.S)
                ]
                assert len(incidents) == 1
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n--- the bot said:\n{bot.output(60)}") from None
        with contextlib.closing(sqlite3.connect(home / "data" / "mendbot.db")) as db:
            (state, reason) = db.execute("SELECT state, failure_reason FROM runs WHERE id = 1").fetchone()
            sessions = [
                row[0]
                for row in db.execute(
                    "SELECT json_extract(detail, '$.outcome') FROM run_events"
                    " WHERE run_id = 1 AND event = 'agent_session'"
                )
            ]
    assert state == "failed" and reason.startswith("could not reach the model")
    assert sessions and "success" not in sessions


# -- the gateway on its own ---------------------------------------------------------------------------------

RUN = 7


class _Ledger:
    """A run cap and a day budget that never run out; what was charged."""

    def __init__(self) -> None:
        self.charged: list[float] = []

    async def remaining(self, run_id: int) -> tuple[float, float]:
        return 100.0 - sum(self.charged), 100.0 - sum(self.charged)

    async def charge(self, run_id: int, cost_usd: float, detail: dict[str, Any]) -> None:
        self.charged.append(cost_usd)


@contextlib.asynccontextmanager
async def _gateway(
    upstream: str, wait_s: float
) -> AsyncIterator[tuple[ModelGateway, str, list[Any], _Ledger]]:
    ledger = _Ledger()
    gateway = ModelGateway(upstream=upstream, api_key="real-key", ledger=ledger, wait_s=wait_s)
    told: list[Any] = []
    gateway.outage.waiting = lambda run_id, why: told.append((run_id, why))
    await gateway.start()
    try:
        yield gateway, gateway.open_session(RUN), told, ledger
    finally:
        await gateway.aclose()


async def _ask(gateway: ModelGateway, token: str) -> anthropic.types.Message:
    async with anthropic.AsyncAnthropic(base_url=gateway.base_url, api_key=token, max_retries=0) as client:
        message: anthropic.types.Message = await client.messages.create(
            model="claude-sonnet-5-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        )
    return message


async def test_a_model_api_that_refuses_connections_is_waited_for_then_given_up_on() -> None:
    """Nothing listening: the request waits (the run is told why) and, past `wait_s`, the agent gets an
    error it does not retry; the session keeps why, and nothing is charged (nothing was sent)."""
    async with _not_listening() as url, _gateway(url, wait_s=0.05) as (gateway, token, told, ledger):
        with pytest.raises(anthropic.InternalServerError) as failed:
            await _ask(gateway, token)
        assert failed.value.response.headers["x-should-retry"] == "false"
        why = gateway.outage.unreachable(token)
        assert why is not None and "cannot connect" in why and url in why
        assert told and told[0] == (RUN, why)
        assert sum(ledger.charged) == 0
        away = gateway.outage.away
        assert away is not None and away[1] == why


async def test_a_model_api_that_comes_back_while_waited_for_answers_the_request() -> None:
    """The API starts listening while a request waits for it: the request is answered, the run is told
    the wait is over, and nothing is kept as unreachable."""
    async with _not_listening() as url:
        port = int(url.rsplit(":", 1)[1])

        async def answer(request: web.Request) -> web.Response:
            if request.path.endswith("count_tokens"):
                return web.json_response({"input_tokens": 5}, content_type="application/json")
            message = {
                "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-5-5",
                "content": [{"type": "text", "text": "back"}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1},
            }  # fmt: skip
            return web.Response(body=json.dumps(message), content_type="application/json")

        app = web.Application()
        app.router.add_post("/{tail:.*}", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        async with _gateway(url, wait_s=60) as (gateway, token, told, _):
            serving = asyncio.Event()

            def waiting(run_id: int, why: str | None) -> None:
                told.append((run_id, why))
                if why is not None and not serving.is_set():
                    serving.set()  # the API comes back once the gateway waits for it
                    asyncio.get_running_loop().create_task(web.TCPSite(runner, "127.0.0.1", port).start())

            gateway.outage.waiting = waiting
            try:
                message = await _ask(gateway, token)
            finally:
                await runner.cleanup()
        assert message.content[0].text == "back"  # type: ignore[union-attr]
        assert told[0][1] is not None and told[-1] == (RUN, None)
        assert gateway.outage.unreachable(token) is None and gateway.outage.away is None


async def test_a_connection_dropped_without_an_answer_is_sent_again_only_by_the_agent() -> None:
    """A server that takes the connection and closes it: the request may have been read, so it is
    charged as sent and the agent is told to send it again (a new reservation), until the wait is over;
    then it is given up on."""
    async with _dropping() as url, _gateway(url, wait_s=60) as (gateway, token, told, ledger):
        with pytest.raises(anthropic.InternalServerError) as failed:
            await _ask(gateway, token)
        assert failed.value.response.headers["x-should-retry"] == "true"
        assert told and "dropped the connection" in str(told[0][1])
        assert gateway.outage.unreachable(token) is None and len(ledger.charged) == 1
    async with _dropping() as url, _gateway(url, wait_s=0) as (gateway, token, _, _):
        with pytest.raises(anthropic.InternalServerError) as failed:
            await _ask(gateway, token)
        assert failed.value.response.headers["x-should-retry"] == "false"
        assert "dropped the connection" in str(gateway.outage.unreachable(token))

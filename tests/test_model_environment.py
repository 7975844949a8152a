"""The model's API failing is the environment's problem, never the code's: a chat reply the model could
not give — unreachable, refusing the key, rate-limiting, overloaded — opens one environment incident
(no 🔍/🛠 offered) and the user gets one line saying what happened. Real anthropic client, real bot on
the virtual Discord, the model double answering the errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_settings, running_world
from tests.harness.model_double import ModelDouble, error


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _mention(world: VirtualWorld) -> list[str]:
    me = world.bot.user
    assert me is not None
    await world.users["alice"].send(world.general, f"{me.mention} hello")
    await world.quiesce()
    return [m.content for m in bot_messages(world, world.general)]


def _one_environment_incident(world: VirtualWorld, kind: str) -> None:
    incidents = world.bot.services.incidents.active()
    assert [(i.category, i.kind) for i in incidents] == [("environment", kind)]
    announcements = [m for m in bot_messages(world, world.dev) if m.embeds]
    assert len(announcements) == 1
    assert "Environment incident" in (announcements[0].embeds[0].title or "")
    assert announcements[0].components == [] and announcements[0].reactions == []


@pytest.mark.parametrize(
    ("status", "kind", "said"),
    [
        (401, "model:auth", "The model refused my credentials (401)"),
        (403, "model:auth", "The model refused my credentials (403)"),
        (429, "model:rate_limited", "The model is rate-limiting me (429)"),
        (529, "model:overloaded", "The model is overloaded right now (529)"),
        (500, "model:outage", "The model is having trouble right now (500)"),
    ],
)
async def test_a_refusing_model_is_one_environment_incident(
    tmp_path: Path, status: int, kind: str, said: str
) -> None:
    """401/403/429/529/500 on a chat reply: one answer naming it, one environment incident, no code one."""
    async with ModelDouble() as model:
        model.script(error(status, "some_error", "refused by the test"))
        settings = make_settings(tmp_path / "data", anthropic_api_key="k", anthropic_base_url=model.base_url)
        async with running_world(settings) as world:
            replies = await _mention(world)
            assert len(replies) == 1 and replies[0].startswith(said)
            _one_environment_incident(world, kind)


async def test_an_unreachable_model_is_one_environment_incident(tmp_path: Path) -> None:
    """Nothing listening at the model's address: one answer, one environment incident — not the two code
    incidents (`chat:reply` and `listener:on_message`) each offering 🛠 that it used to open."""
    settings = make_settings(
        tmp_path / "data", anthropic_api_key="k", anthropic_base_url=f"http://127.0.0.1:{_closed_port()}"
    )
    async with running_world(settings) as world:
        replies = await _mention(world)
        assert len(replies) == 1 and replies[0].startswith("I can't reach the model right now")
        _one_environment_incident(world, "model:unreachable")
